/**
 * A cluster of test "hosts" inside the caller's throwaway namespace (a test file's, or the bench's: both import it,
 * test/utils/cluster.ts re-exports it) (src/sandbox.ts, test/run.ts): each host is
 * its own network and mount namespace, made by the same sandbox command (private tmpfs on /run/netns and
 * /run/netctx, lo up), held open by a `sleep` and entered with nsenter. Each has its own state dir and its own cgroup
 * parent under the test's NETCTX_CGROUP_PARENT, and one veth (eth0 inside) to an underlay bridge `ubr` in the test
 * namespace: host N is 192.168.77.N/24 and fd77::N/64; the test namespace itself is .254 / fd77::fe on the bridge.
 *
 * etcd runs as one member in each of the hosts named in `etcdHosts` (none: the hosts and their underlay alone), on their underlay addresses, data in the
 * test's scratch dir. Every process started here is remembered by PID and ended by stopCluster() (an after() hook):
 * nothing outlives the test, and everything in the kernel vanishes with its namespace.
 *
 *   const c = await startCluster({ hosts: 3, etcdHosts: [1, 2, 3] });
 *   const e = await c.host(1).startEngine("--node-ttl", "3");   // serve --etcd <all members> --node h1
 *   c.host(2).netctx("cluster", "status", "--json");
 *   await c.stopEtcd(1); await c.startEtcd(1);
 *   after(() => stopCluster());
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sandboxArgv } from "../src/sandbox.ts";

/** The real CLI, as a user runs it. */
export const NETCTX = join(import.meta.dirname, "..", "bin", "netctx");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `cond` every 20 ms until it holds or `timeoutMs` passed. */
async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await sleep(20);
}

/** A shell script in this namespace, stopped at its first failing command; throws on failure. */
function sh(script: string): void {
  execFileSync("sh", ["-ec", script], { encoding: "utf8" });
}

export const UNDERLAY_BRIDGE = "ubr";

export interface HostEngine {
  child: ChildProcess;
  pid: number;
  /** Its stdout so far (requests, cluster lines). */
  log(): string;
  exited(): boolean;
  /** SIGKILL: the engine gets no chance to say goodbye (its lease must run out). */
  kill9(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
}

export interface TestHost {
  index: number;
  name: string;
  /** PID of the process holding the host's namespaces. */
  pid: number;
  address4: string;
  address6: string;
  stateDir: string;
  cgroupParent: string;
  /** The environment netctx runs with in this host. */
  env: NodeJS.ProcessEnv;
  /** argv that runs `argv` inside this host. */
  argv(argv: readonly string[]): string[];
  /** Run a command inside the host and wait (blocks the event loop: not while an engine's log must flow). */
  run(argv: readonly string[], timeoutMs?: number): CliResult;
  /** `netctx ARGS` in this host, without blocking the event loop. */
  netctx(...args: string[]): Promise<CliResult>;
  /** `netctx serve` in this host; `--etcd <the cluster's members> --node hN` unless args give their own. */
  startEngine(...args: string[]): Promise<HostEngine>;
  engine: HostEngine | undefined;
}

export interface EtcdMember {
  host: TestHost;
  name: string;
  clientUrl: string;
  child: ChildProcess | undefined;
}

export interface TestCluster {
  hosts: TestHost[];
  host(index: number): TestHost;
  members: EtcdMember[];
  /** All members' client URLs, comma-separated (the --etcd value). */
  etcdUrls: string;
  scratch: string;
  /** SIGTERM one member (by host index) and wait for it to end. */
  stopEtcd(hostIndex: number): Promise<void>;
  /** Start it again on its data dir. */
  startEtcd(hostIndex: number): Promise<void>;
  /** Wait until every running member reports healthy. */
  etcdHealthy(timeoutMs?: number): Promise<void>;
  /** Processes started beside the cluster's own (a TLS etcd...), ended with it. */
  adopt(child: ChildProcess): void;
}

const owned: ChildProcess[] = [];

function ended(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function endProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (ended(child)) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  await gone;
}

function runSync(argv: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): CliResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", env, timeout: timeoutMs });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

export function runAsync(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The namespaces of a new host: the sandbox's set-up, held open by sleep. Resolves once the set-up has run. */
async function holdHost(): Promise<ChildProcess> {
  const child = spawn(...splitArgv(sandboxArgv(["sleep", "infinity"])), { stdio: "ignore" });
  owned.push(child);
  // unshare execs sh, which execs sleep once the mounts are made: the same PID throughout.
  await waitFor(() => {
    try {
      return readFileSync(`/proc/${child.pid}/comm`, "utf8").trim() === "sleep";
    } catch {
      return false;
    }
  }, 5000);
  if (ended(child)) throw new Error("a test host's namespaces could not be made");
  return child;
}

function splitArgv(argv: string[]): [string, string[]] {
  return [argv[0]!, argv.slice(1)];
}

function makeHost(index: number, pid: number, scratch: string, cluster: () => TestCluster): TestHost {
  const name = `h${index}`;
  const stateDir = join(scratch, name, "state");
  const cgroupParent = join(process.env.NETCTX_CGROUP_PARENT!, name);
  mkdirSync(stateDir, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NETCTX_STATE_DIR: stateDir,
    NETCTX_CGROUP_PARENT: cgroupParent,
  };
  delete env.NETCTX_SOCKET;
  delete env.NETCTX_PUBLISH_CGROUP;
  const argv = (cmd: readonly string[]) => ["nsenter", "-t", String(pid), "-n", "-m", "--", ...cmd];
  const host: TestHost = {
    index,
    name,
    pid,
    address4: `192.168.77.${index}`,
    address6: `fd77::${index}`,
    stateDir,
    cgroupParent,
    env,
    argv,
    run: (cmd, timeoutMs) => runSync(argv(cmd), env, timeoutMs),
    netctx: (...args) => runAsync(argv([NETCTX, ...args]), env),
    async startEngine(...args) {
      const own = (flag: string) => args.includes(flag);
      const full = [
        "serve",
        ...(own("--etcd") ? [] : ["--etcd", cluster().etcdUrls]),
        ...(own("--node") ? [] : ["--node", name]),
        ...args,
      ];
      // nsenter without --fork execs the command: the child's PID is the engine's.
      const child = spawn("nsenter", argv([NETCTX, ...full]).slice(1), {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      owned.push(child);
      let log = "";
      child.stdout!.on("data", (d) => {
        log += d;
      });
      child.stderr!.on("data", (d) => {
        log += d;
      });
      await waitFor(() => log.includes("serving on") || ended(child), 15_000);
      if (ended(child)) throw new Error(`engine of ${name} ended: ${log}`);
      const engine: HostEngine = {
        child,
        pid: child.pid!,
        log: () => log,
        exited: () => ended(child),
        kill9: () => endProcess(child, "SIGKILL"),
        stop: () => endProcess(child, "SIGTERM"),
      };
      host.engine = engine;
      return engine;
    },
    engine: undefined,
  };
  return host;
}

export async function startCluster(opts: { hosts: number; etcdHosts: number[] }): Promise<TestCluster> {
  const scratch = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "cluster-"));
  sh(
    `ip link add ${UNDERLAY_BRIDGE} type bridge && ip link set ${UNDERLAY_BRIDGE} up
     ip addr add 192.168.77.254/24 dev ${UNDERLAY_BRIDGE}
     ip addr add fd77::fe/64 dev ${UNDERLAY_BRIDGE} nodad`,
  );
  const holders = await Promise.all(Array.from({ length: opts.hosts }, () => holdHost()));
  let cluster: TestCluster | undefined;
  const hosts = holders.map((h, i) => makeHost(i + 1, h.pid!, scratch, () => cluster!));
  for (const h of hosts) {
    sh(
      `ip link add u-${h.name} type veth peer name eth0 netns ${h.pid}
       ip link set u-${h.name} master ${UNDERLAY_BRIDGE} up`,
    );
    const inside = h.run([
      "sh",
      "-ec",
      `ip addr add ${h.address4}/24 dev eth0; ip addr add ${h.address6}/64 dev eth0 nodad; ip link set eth0 up`,
    ]);
    if (inside.code !== 0) throw new Error(`underlay of ${h.name}: ${inside.stderr}`);
  }
  const members: EtcdMember[] = opts.etcdHosts.map((i) => ({
    host: hosts[i - 1]!,
    name: `e${i}`,
    clientUrl: `http://192.168.77.${i}:2379`,
    child: undefined,
  }));
  const initialCluster = members.map((m) => `${m.name}=http://${m.host.address4}:2380`).join(",");
  const memberOf = (hostIndex: number): EtcdMember => {
    const m = members.find((x) => x.host.index === hostIndex);
    if (!m) throw new Error(`no etcd member on h${hostIndex}`);
    return m;
  };
  const startMember = (m: EtcdMember): void => {
    const a = m.host.address4;
    const logFd = openSync(join(scratch, `${m.name}.log`), "a");
    // Short heartbeats: a stopped member's peers elect a new leader in well under a second.
    const child = spawn(
      "nsenter",
      m.host
        .argv([
          "etcd",
          "--name",
          m.name,
          "--data-dir",
          join(scratch, `${m.name}.etcd`),
          "--listen-client-urls",
          `http://${a}:2379`,
          "--advertise-client-urls",
          `http://${a}:2379`,
          "--listen-peer-urls",
          `http://${a}:2380`,
          "--initial-advertise-peer-urls",
          `http://${a}:2380`,
          "--initial-cluster",
          initialCluster,
          "--initial-cluster-token",
          "netctx-test",
          "--heartbeat-interval",
          "50",
          "--election-timeout",
          "500",
        ])
        .slice(1),
      { stdio: ["ignore", logFd, logFd] },
    );
    owned.push(child);
    m.child = child;
  };
  const etcdHealthy = async (timeoutMs = 15_000): Promise<void> => {
    const urls = members.filter((m) => m.child && !ended(m.child)).map((m) => m.clientUrl);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = spawnSync(
        "etcdctl",
        [
          "--endpoints",
          urls.join(","),
          "--dial-timeout",
          "1s",
          "--command-timeout",
          "2s",
          "endpoint",
          "health",
        ],
        { encoding: "utf8" },
      );
      if (r.status === 0) return;
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy: ${r.stdout}${r.stderr}`);
      await sleep(200);
    }
  };
  for (const m of members) startMember(m);
  cluster = {
    hosts,
    host: (i) => hosts[i - 1]!,
    members,
    etcdUrls: members.map((m) => m.clientUrl).join(","),
    scratch,
    async stopEtcd(i) {
      const m = memberOf(i);
      if (m.child) await endProcess(m.child, "SIGTERM");
      m.child = undefined;
    },
    async startEtcd(i) {
      const m = memberOf(i);
      if (m.child && !ended(m.child)) return;
      startMember(m);
    },
    etcdHealthy,
    adopt(child) {
      owned.push(child);
    },
  };
  // Without members the hosts alone: a data-path test needs their namespaces and underlay, not etcd.
  if (members.length > 0) await etcdHealthy();
  return cluster;
}

/** Ends every process the cluster started (engines first, then etcd, then the hosts' holders), by PID. */
export async function stopCluster(): Promise<void> {
  const all = owned.splice(0).reverse();
  await Promise.all(all.map((c) => endProcess(c, "SIGKILL")));
}
