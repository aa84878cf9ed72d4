/** netctx serve: run the resident engine in the foreground (systemd: contrib/netctx.service). */
import { readFileSync, rmSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import type { Command } from "commander";
import { AuditRuns } from "../api/audit-runs.ts";
import { hostPort, loadAssets, serveDashboard } from "../api/dashboard.ts";
import { EngineMetrics } from "../api/metrics.ts";
import { serve } from "../api/server.ts";
import { generateToken, WebAuth } from "../api/web-auth.ts";
import { type ListenAddress, parseListen, readTokenFile } from "../api/web-listen.ts";
import { ClusterMember } from "../cluster/member.ts";
import { DnsService } from "../dns/service.ts";
import { OverlayEngine } from "../engine/overlay.ts";
import { type GcReport, gc } from "../engine/reconcile/gc.ts";
import { errorLine, invalid } from "../errors.ts";
import { Host } from "../host.ts";
import { DnsNameSchema } from "../model/schemas.ts";
import { packageRoot } from "../package-root.ts";
import { type ClusterOptions, cliConfig, clusterOptions, withClusterOptions } from "./config.ts";
import { collect } from "./output.ts";

export function registerServe(program: Command): void {
  const serveCommand = program
    .command("serve")
    .description(
      "run the resident engine: a local HTTP API on a root-only unix socket, used by the CLI and CNI",
    )
    .option("--socket <path>", "unix socket path (default: netctx.sock in the state dir)")
    .option(
      "--block-grace <seconds>",
      "how long a gone node's address blocks stay leased before any engine frees them (overlay networks)",
      "3600",
    )
    .option(
      "--check-interval <seconds>",
      "compare the kernel with the records this often and repair the drift, logging each fix (0: never)",
      "60",
    )
    .option("--dns-domain <domain>", "contexts answer as NAME and NAME.NETWORK.DOMAIN", "netctx")
    .option(
      "--dns-resolv-conf <path>",
      "where the upstream resolvers for other names are read (nameserver lines)",
      "/etc/resolv.conf",
    )
    .option(
      "--host-dns <addr>",
      "also answer the host's own tools here: ADDR, ADDR:PORT or [ADDR6]:PORT (port 53 unless given; repeatable); " +
        "every network's names, other names forwarded, senders on this host only",
      collect,
      [],
    )
    .option("--no-dns", "serve no DNS on the networks' gateways")
    .option(
      "--listen <addr:port>",
      "also serve the dashboard and the read-only JSON API over TCP here (ADDR:PORT or [ADDR6]:PORT); " +
        "token auth, refused off loopback without --token-file",
    )
    .option("--token-file <file>", "the dashboard's token (one line; not readable by other users)");
  withClusterOptions(serveCommand, "join the netctx cluster whose state is in this etcd");
  serveCommand.action(
    async (
      o: {
        socket?: string;
        checkInterval: string;
        blockGrace: string;
        dns: boolean;
        dnsDomain: string;
        dnsResolvConf: string;
        hostDns: string[];
        listen?: string;
        tokenFile?: string;
      } & ClusterOptions,
    ) => {
      const interval = Number(o.checkInterval);
      if (!/^\d+$/.test(o.checkInterval.trim()) || interval > 86_400)
        throw invalid("check-interval", `"${o.checkInterval}" is not a number of seconds (0-86400)`);
      const graceSeconds = Number(o.blockGrace);
      if (!/^\d+$/.test(o.blockGrace.trim()) || graceSeconds > 30 * 86_400)
        throw invalid("block-grace", `"${o.blockGrace}" is not a number of seconds (0-2592000)`);
      const dnsDomain = checkedDomain(o.dnsDomain);
      const hostListen = o.hostDns.map(parseHostDns);
      if (hostListen.length > 0 && !o.dns)
        throw invalid("host-dns", "needs the engine's DNS server, which --no-dns turns off");
      const web = dashboardSettings(o.listen, o.tokenFile);
      const config = cliConfig({ socketPath: o.socket, dnsDomain, ...clusterOptions(o) });
      const { socketPath } = config;
      const host = Host.open(config);
      // Whatever a crashed run left half-done is finished or undone before the first request.
      logGc(gc(host));
      const log = (line: string) => console.log(line);
      // Membership never blocks the engine: an unreachable etcd is logged and retried (cluster/membership.ts).
      let overlay: OverlayEngine | undefined;
      const cluster = config.cluster
        ? await ClusterMember.join(config.cluster, {
            version: netctxVersion(),
            // The VXLAN devices' MAC (one per node, cluster/peers.ts vtepMacOf); "" until the first is made. The
            // underlay device's MAC: what peers' internal direct-routed networks let in (firewall/overlay-direct.ts).
            facts: () => ({
              contexts: host.store.listContexts().length,
              blocks: overlay?.blocks() ?? [],
              vtepMac: overlay?.vtepMac() ?? "",
              underlayMac: overlay?.underlayMac(),
            }),
            log,
          })
        : undefined;
      if (cluster) {
        overlay = new OverlayEngine(host, cluster, { graceSeconds, log });
        overlay.start();
      }
      // Its own thread: queries are answered while the main thread does kernel work (dns/worker.ts).
      const dns = o.dns
        ? await DnsService.start({
            domain: dnsDomain,
            port: 53,
            resolvConf: o.dnsResolvConf,
            hostListen,
            log,
          })
        : undefined;
      const metrics = new EngineMetrics(host, cluster);
      const server = await serve(host, socketPath, log, cluster, overlay, dns, metrics);
      const dashboard = web
        ? await serveDashboard({
            engine: { host, cluster, overlay, dns, metrics },
            listen: web.listen,
            auth: new WebAuth(web.token),
            assetsDir: web.assetsDir,
            audits: new AuditRuns(auditArgv(config.stateDir)),
            // The reach matrix (audit --reach): every ordered pair of contexts against the policies.
            reaches: new AuditRuns([...auditArgv(config.stateDir), "--reach"]),
            log,
          }).catch((err) => {
            server.close();
            rmSync(socketPath, { force: true });
            throw err;
          })
        : undefined;
      if (web?.generated)
        // Once, on stderr only (the log on stdout may be kept); whoever started the engine opens it.
        process.stderr.write(`dashboard: http://${hostPort(web.listen)}/?token=${web.token}\n`);
      // Drift (a device deleted by hand, `nft flush ruleset`) is found and put back without anyone asking. Node runs
      // one thing at a time: the check never interleaves with a request of this engine.
      const check = () => {
        try {
          logGc(gc(host));
        } catch (err) {
          console.log(`gc failed: ${errorLine(err)}`);
        }
      };
      const checks = interval > 0 ? setInterval(check, interval * 1000) : undefined;
      console.log(`netctx engine (pid ${process.pid}) serving on ${socketPath}`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          clearInterval(checks);
          dashboard?.close();
          server.close(() => resolve());
        };
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
      });
      rmSync(socketPath, { force: true });
      await dns?.stop();
      await overlay?.stop();
      await cluster?.close();
      host.close();
    },
  );
}

/** A DNS domain: labels of letters, digits and inner hyphens; a trailing dot is dropped. */
function checkedDomain(text: string): string {
  const domain = text.replace(/\.$/, "").toLowerCase();
  const parsed = DnsNameSchema.safeParse(domain);
  if (!parsed.success) throw invalid("dns-domain", `"${text}" ${parsed.error.issues[0]!.message}`);
  return domain;
}

/** ADDR, ADDR:PORT (IPv4) or [ADDR]:PORT (IPv6); the port is 53 unless given. */
function parseHostDns(text: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const address = m ? m[1]! : text;
  const port = m ? Number(m[2]) : 53;
  if (!isIP(address))
    throw invalid("host-dns", `"${text}" is not ADDR, ADDR:PORT or [ADDR6]:PORT with an IP address`);
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw invalid("host-dns", `"${text}" has no port 1-65535`);
  return { address, port };
}

interface DashboardSettings {
  listen: ListenAddress;
  token: string;
  /** The token was made here (loopback without --token-file): serve prints the address to open once. */
  generated: boolean;
  assetsDir: string;
}

/**
 * --listen and --token-file, checked before anything opens. Off loopback a token file is required: a generated token
 * printed on a terminal is fine for a listener only this host reaches, not for one on the network.
 */
function dashboardSettings(
  listen: string | undefined,
  tokenFile: string | undefined,
): DashboardSettings | undefined {
  if (listen === undefined) {
    if (tokenFile !== undefined) throw invalid("token-file", "only with --listen");
    return undefined;
  }
  const address = parseListen(listen);
  if (tokenFile === undefined && !address.loopback)
    throw invalid(
      "token-file",
      `--listen ${listen} is not a loopback address: give the token in --token-file (or listen on 127.0.0.1 and use an SSH tunnel)`,
    );
  const token = tokenFile === undefined ? generateToken() : readTokenFile(tokenFile);
  const assetsDir = join(packageRoot(), "dist", "web");
  loadAssets(assetsDir);
  return { listen: address, token, generated: tokenFile === undefined, assetsDir };
}

function netctxVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version?: string };
  return pkg.version ?? "unknown";
}

function logGc(report: GcReport): void {
  for (const a of report.actions)
    console.log(`gc: ${a.action} ${a.object} (${a.reason})${a.error ? `: ${a.error}` : ""}`);
}

/** `netctx audit --json` as this command would run it: the same node, state dir and environment. */
function auditArgv(stateDir: string): string[] {
  return [process.execPath, process.argv[1]!, "--state-dir", stateDir, "audit", "--json"];
}
