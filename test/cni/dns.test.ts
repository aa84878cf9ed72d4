/**
 * Names for CNI containers (issue 20): an ADD's result carries `dns` (the network's gateways, NETWORK.DOMAIN to
 * search) for the runtime to write into the container's resolv.conf; a resolv.conf written from it, as podman and
 * containerd write theirs, lets glibc in the container find another container by its K8S_POD_NAME and by an alias
 * of the `aliases` capability, through the engine's server on the gateway. A `--no-dns` network's result names no
 * server, and a `dns` the config gives itself wins.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { type CniResult, cniOk } from "../utils/cni-runtime.ts";
import { addNetns, delNetns, inNetns } from "../utils/netns.ts";

const scratch = process.env.NETCTX_TEST_SCRATCH ?? "/tmp";
let engine: RunningEngine;

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "cdns",
  type: "netctx",
  subnets: ["10.74.0.0/24", "fd74::/64"],
  capabilities: { aliases: true },
  ...extra,
});

interface DnsResult extends CniResult {
  dns: { nameservers?: string[]; search?: string[]; options?: string[] };
}

function add(id: string, netns: string, extra: Record<string, unknown> = {}, args?: string): DnsResult {
  return cniOk("ADD", conf(extra), { id, netns, ...(args ? { args } : {}) }) as unknown as DnsResult;
}

/** What a runtime writes from a result's dns (podman's and containerd's resolv.conf). */
function resolvConfOf(dns: DnsResult["dns"]): string {
  return [
    ...(dns.nameservers ?? []).map((n) => `nameserver ${n}`),
    ...(dns.search?.length ? [`search ${dns.search.join(" ")}`] : []),
    "",
  ].join("\n");
}

/** argv run in `netns` with `conf` over /etc/resolv.conf, in a mount namespace of its own as a container has. */
function withResolvConf(netns: string, conf: string, script: string): { code: number | null; out: string } {
  const file = join(scratch, `resolv-${Math.random().toString(16).slice(2)}.conf`);
  writeFileSync(file, conf);
  const [cmd, ...args] = inNetns(netns, [
    "unshare",
    "--mount",
    "sh",
    "-c",
    `mount --bind ${file} /etc/resolv.conf && ${script}`,
  ]);
  const r = spawnSync(cmd!, args, { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

before(async () => {
  engine = await startEngine();
});

after(async () => {
  await engine?.stop();
});

test("ADD's result names the network's gateways; glibc in the container finds the others by pod name and alias", () => {
  const nsA = addNetns("dnsa");
  const nsB = addNetns("dnsb");
  const a = add(
    "aaaa",
    nsA,
    { runtimeConfig: { aliases: { cdns: ["api", "not_a_dns_name"] } } },
    "K8S_POD_NAME=web",
  );
  const b = add("bbbb", nsB, {}, "IgnoreUnknown=1;K8S_POD_NAME=db");
  assert.deepEqual(a.dns, { nameservers: ["10.74.0.1", "fd74::1"], search: ["cdns.netctx"] });
  assert.deepEqual(b.dns, a.dns);
  const webV4 = a.ips.find((ip) => !ip.address.includes(":"))!.address.split("/")[0]!;
  const webV6 = a.ips.find((ip) => ip.address.includes(":"))!.address.split("/")[0]!;
  const r = withResolvConf(
    nsB,
    resolvConfOf(b.dns),
    "getent ahostsv4 web && getent hosts api && busybox nslookup web.cdns.netctx 10.74.0.1",
  );
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`^${webV4.replace(/\./g, "\\.")}\\s+STREAM web`, "m"));
  assert.match(r.out, new RegExp(`^${webV6}\\s+api`, "m"), "the aliases capability's name answers");
  // Without the result's resolv.conf the same lookup has no server to ask: the dns field is what wires it.
  const bare = withResolvConf(
    nsB,
    "nameserver 192.0.2.250\noptions timeout:1 attempts:1\n",
    "getent hosts web",
  );
  assert.notEqual(bare.code, 0, bare.out);
  cniOk("DEL", conf(), { id: "aaaa", netns: nsA });
  cniOk("DEL", conf(), { id: "bbbb", netns: nsB });
  delNetns("dnsa");
  delNetns("dnsb");
});

test("a --no-dns network's result names no server; a config's own dns wins", () => {
  netctxOk("network", "create", "cquiet", "--subnet", "10.75.0.0/24", "--no-dns");
  const ns = addNetns("dnsq");
  const quiet = add("qqqq", ns, { name: "cquiet", subnets: undefined });
  assert.deepEqual(quiet.dns, {});
  const nsOwn = addNetns("dnso");
  const own = add("oooo", nsOwn, { dns: { nameservers: ["192.0.2.53"], search: ["corp.example"] } });
  assert.deepEqual(own.dns, { nameservers: ["192.0.2.53"], search: ["corp.example"] });
  cniOk("DEL", conf({ name: "cquiet", subnets: undefined }), { id: "qqqq", netns: ns });
  cniOk("DEL", conf(), { id: "oooo", netns: nsOwn });
  delNetns("dnsq");
  delNetns("dnso");
});
