/**
 * Podman 4.3 (CNI backend) as the real client: containers on a netctx network through the installed plugin.
 * Recipe from ../shared/peers (adapted into fixtures/): tmpfs on /run, /dev/shm and /var/lib, pure cgroup2 for
 * crun, cgroups disabled, a busybox-static rootfs imported as the image. All inside this file's throwaway namespace.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Store } from "../../src/state/store.ts";
import { inCgroupArgv } from "../utils/cgroup.ts";
import { netctxJson, netctxOk, startEngine } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { links } from "../utils/kernel-oracle.ts";
import { addVethNetns } from "../utils/netns.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");
const SCRATCH = join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "podman");
const IMAGE = "localhost/ncbox:latest";
const CGROUP_PARENT = (process.env.NETCTX_CGROUP_PARENT ?? "/nonexistent").replace(
  /^\/sys\/fs\/cgroup\/unified\//,
  "/sys/fs/cgroup/",
);
const havePodman = spawnSync("podman", ["--version"]).status === 0;
const skip = havePodman ? false : "podman is not installed (scripts/setup.sh installs it)";

function sh(argv: string[], input?: string): { code: number; out: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: "utf8",
    timeout: 60_000,
    ...(input === undefined ? {} : { input }),
    env: {
      ...process.env,
      CONTAINERS_CONF: join(SCRATCH, "containers.conf"),
      CONTAINERS_STORAGE_CONF: join(SCRATCH, "storage.conf"),
    },
  });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function must(argv: string[]): string {
  const r = sh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.out}`);
  return r.out;
}

function podman(...args: string[]): { code: number; out: string } {
  return sh(["podman", ...args]);
}

function fromFixture(name: string, to: string): void {
  writeFileSync(to, readFileSync(join(FIXTURES, name), "utf8").replaceAll("@SCRATCH@", SCRATCH));
}

/** busybox-static with relative applet links (absolute ones break inside the container), as a tar to import. */
function busyboxImage(): string {
  const root = join(SCRATCH, "rootfs");
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(join(root, "www"), { recursive: true });
  copyFileSync("/bin/busybox", join(root, "bin", "busybox"));
  for (const applet of must(["/bin/busybox", "--list"]).split("\n").filter(Boolean))
    if (applet !== "busybox") symlinkSync("busybox", join(root, "bin", applet));
  writeFileSync(join(root, "www", "index.html"), "hello from netctx\n");
  writeFileSync(join(root, "etc", "passwd"), "root:x:0:0:root:/:/bin/sh\n");
  const tar = join(SCRATCH, "rootfs.tar");
  must(["tar", "-C", root, "-cf", tar, "."]);
  return tar;
}

before(() => {
  if (!havePodman) return;
  mkdirSync(join(SCRATCH, "cni.d"), { recursive: true });
  // Podman's runtime state must not reach the machine: these mounts live in this file's private mount namespace.
  must(["mount", "-t", "tmpfs", "tmpfs", "/run"]);
  mkdirSync("/run/netns");
  must(["mount", "-t", "tmpfs", "tmpfs", "/dev/shm"]);
  must(["mount", "-t", "tmpfs", "tmpfs", "/var/lib"]);
  // crun 1.8 refuses this VM's hybrid cgroup v1+v2 layout; cgroups are disabled in containers.conf anyway.
  must(["mount", "-t", "cgroup2", "none", "/sys/fs/cgroup"]);
  // The same cgroup2 hierarchy, now at /sys/fs/cgroup: the test's private parent (loopback publish programs
  // attach there) is reached by its new path, and the runner still removes it by the old one.
  process.env.NETCTX_CGROUP_PARENT = CGROUP_PARENT;
  fromFixture("containers.conf", join(SCRATCH, "containers.conf"));
  fromFixture("storage.conf", join(SCRATCH, "storage.conf"));
  fromFixture("ncpod.conflist", join(SCRATCH, "cni.d", "ncpod.conflist"));
  netctxOk("cni", "install", join(SCRATCH, "cni-bin"));
  must(["podman", "import", "-q", busyboxImage(), IMAGE]);
  // The "outside": a namespace with no route back to the containers' subnet, so only NAT'd traffic gets answers.
  addVethNetns({
    name: "outside",
    hostIfname: "ncout0",
    hostAddresses: ["198.51.100.1/24"],
    addresses: ["198.51.100.2/24"],
  });
});

after(() => {
  if (havePodman) podman("rm", "-f", "-t", "0", "-a");
});

/** An HTTP GET with busybox nc from the host (optionally from inside `cgroup`); "" when nothing answers. */
function httpGet(cgroup: string | undefined, ip: string, port: number, attempts = 10): string {
  const get = `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 ${ip} ${port}`;
  const argv = inCgroupArgv(cgroup, ["sh", "-c", get]);
  for (let i = 0; i < attempts; i++) {
    const r = sh(argv);
    if (r.code === 0 && r.out.includes("hello")) return r.out;
    spawnSync("sleep", ["0.3"]);
  }
  return "";
}

function ctxLinks(): string[] {
  return links()
    .map((l) => l.ifname)
    .filter((n) => /^nc-c[0-9a-f]{11}$/.test(n));
}

test("podman run: two containers on a netctx network reach each other and the outside; rm leaves nothing", {
  skip,
}, () => {
  const net = podman("network", "ls", "--format", "{{.Name}} {{.Driver}}");
  assert.match(net.out, /ncpod netctx/, net.out);

  const a = podman(
    "run",
    "-d",
    "--name",
    "a",
    "--network",
    "ncpod",
    "--ip",
    "10.97.0.10",
    "-p",
    "8080:80",
    IMAGE,
    "httpd",
    "-f",
    "-p",
    "80",
    "-h",
    "/www",
  );
  assert.equal(a.code, 0, a.out);
  const b = podman("run", "-d", "--name", "b", "--network", "ncpod", IMAGE, "sleep", "600");
  assert.equal(b.code, 0, b.out);

  const ipA = must([
    "podman",
    "inspect",
    "a",
    "--format",
    '{{(index .NetworkSettings.Networks "ncpod").IPAddress}}',
  ]).trim();
  assert.equal(ipA, "10.97.0.10", "--ip reached the plugin as CNI_ARGS IP=");
  const ipB = must([
    "podman",
    "inspect",
    "b",
    "--format",
    '{{(index .NetworkSettings.Networks "ncpod").IPAddress}}',
  ]).trim();
  assert.match(ipB, /^10\.97\.0\.\d+$/);
  assert.equal(netctxJson<unknown[]>("ls").length, 2, "one netctx context per container");
  assert.equal(ctxLinks().length, 2);

  // b -> a: ICMP and HTTP (busybox nc; retry while httpd starts).
  assert.equal(podman("exec", "b", "ping", "-c", "1", "-W", "2", ipA).code, 0, "b pings a");
  const http = podman(
    "exec",
    "b",
    "sh",
    "-c",
    `for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ipA} 80 && exit 0; sleep 0.3; done; exit 1`,
  );
  assert.match(http.out, /hello from netctx/, http.out);
  // a -> outside: answered only because the network masquerades (outside has no route to 10.97.0.0/24).
  const out = podman("exec", "a", "ping", "-c", "1", "-W", "2", "198.51.100.2");
  assert.equal(out.code, 0, `a reaches the outside through NAT: ${out.out}`);

  // -p 8080:80 answers from the host: on the host's own address, and on 127.0.0.1 for a client in the cgroup
  // where the loopback programs attach (tests never attach at the machine's root cgroup).
  assert.match(
    httpGet(undefined, "198.51.100.1", 8080),
    /hello from netctx/,
    "published port on a host address",
  );
  const client = join(CGROUP_PARENT, "client");
  mkdirSync(client, { recursive: true });
  try {
    assert.match(httpGet(client, "127.0.0.1", 8080), /hello from netctx/, "published port on 127.0.0.1");
  } finally {
    rmdirSync(client);
  }
  assert.doesNotMatch(
    httpGet(undefined, "127.0.0.1", 8080, 1),
    /hello/,
    "outside that cgroup 127.0.0.1 stays local",
  );

  const rm = podman("rm", "-f", "-t", "0", "a", "b");
  assert.equal(rm.code, 0, rm.out);
  assert.deepEqual(netctxJson<unknown[]>("ls"), [], "no context left");
  assert.doesNotMatch(httpGet(undefined, "198.51.100.1", 8080, 1), /hello/, "the published port is gone");
  assert.doesNotMatch(must(["nft", "list", "ruleset"]), /8080/, "no publish element left");
  assert.deepEqual(ctxLinks(), [], "no host veth left");
  assert.deepEqual(
    readdirSync("/run/netns").filter((n) => n !== "outside"),
    [],
    "podman's netns are gone",
  );
  const store = Store.open(testConfig().stateDir);
  try {
    assert.deepEqual(store.leases({ network: "ncpod" }), [], "every address lease released");
  } finally {
    store.close();
  }
});

test("podman writes the result's dns: the container's resolv.conf names the gateway, and names answer there", {
  skip,
}, async () => {
  const engine = await startEngine();
  try {
    const a = podman("run", "-d", "--name", "named", "--network", "ncpod", IMAGE, "sleep", "600");
    assert.equal(a.code, 0, a.out);
    const ipA = must([
      "podman",
      "inspect",
      "named",
      "--format",
      '{{(index .NetworkSettings.Networks "ncpod").IPAddress}}',
    ]).trim();
    // busybox nslookup asks the first nameserver of /etc/resolv.conf: the gateway podman wrote from the result.
    const b = podman(
      "run",
      "--rm",
      "--network",
      "ncpod",
      IMAGE,
      "sh",
      "-c",
      "cat /etc/resolv.conf; nslookup named",
    );
    assert.equal(b.code, 0, b.out);
    assert.match(b.out, /^nameserver 10\.97\.0\.1$/m, b.out);
    assert.match(b.out, /^search .*ncpod\.netctx/m, b.out);
    assert.ok(b.out.includes(ipA), `the container name (K8S_POD_NAME) answers: ${b.out}`);
  } finally {
    podman("rm", "-f", "-t", "0", "named");
    await engine.stop();
  }
});
