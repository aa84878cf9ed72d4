/**
 * A separate netctx process for the concurrency tests. argv: MODE DIR NETWORK OWNER [ARG]
 *   alloc      open the store, print "ready", wait for a line on stdin, allocate, print one JSON result line
 *   open-late  wait for stdin first, then open (racing the creation of the store) and insert network OWNER/ARG
 *   hold       open, take the write lock, print "locked", keep it ARG ms, commit
 *   hang       commit one lease for OWNER, then inside a second transaction write ~24 MB and a lease for
 *              OWNER-2, print "inside" and block until killed
 */
import { writeSync } from "node:fs";
import { NetctxError } from "../../src/errors.ts";
import { Store } from "../../src/state/store.ts";

const [mode, dir, network, owner, arg] = process.argv.slice(2) as [string, string, string, string, string?];

function say(line: string): void {
  // fs.writeSync: the parent must see the line before this process blocks or is killed.
  writeSync(1, `${line}\n`);
}

function result(fn: () => unknown): void {
  try {
    say(JSON.stringify({ ok: true, value: fn() }));
  } catch (err) {
    const code = err instanceof NetctxError ? err.code : "crash";
    say(JSON.stringify({ ok: false, code, message: (err as Error).message }));
  }
}

function waitForGo(): Promise<void> {
  return new Promise((resolve) => process.stdin.once("data", () => resolve()));
}

const blocker = new Int32Array(new SharedArrayBuffer(4));

if (mode === "alloc") {
  const store = Store.open(dir);
  say("ready");
  await waitForGo();
  result(() => store.allocate(network, owner));
  store.close();
} else if (mode === "open-late") {
  say("ready");
  await waitForGo();
  result(() => {
    const store = Store.open(dir);
    store.insertNetwork({
      name: network,
      driver: "bridge",
      subnets: [{ cidr: arg! }],
      nat: false,
      internal: false,
      mtu: 1500,
      options: {},
    });
    store.close();
    return network;
  });
} else if (mode === "hold") {
  const store = Store.open(dir);
  store.transaction(() => {
    store.insertContext({ name: owner, level: "l2", status: "creating", spec: { attachments: [] } });
    say("locked");
    Atomics.wait(blocker, 0, 0, Number(arg));
  });
  store.close();
  say("released");
} else if (mode === "hang") {
  const store = Store.open(dir);
  store.allocate(network, owner);
  store.transaction(() => {
    // better-sqlite3 builds SQLite with a 16 MB page cache; more than that must spill into the WAL.
    for (let i = 0; i < 6; i++)
      store.insertContext({
        name: `bulk-${i}`,
        level: "l2",
        status: "creating",
        spec: { attachments: [], labels: { blob: "x".repeat(4 << 20) } },
      });
    store.allocate(network, `${owner}-2`);
    say("inside");
    Atomics.wait(blocker, 0, 0);
  });
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.exit(0);
