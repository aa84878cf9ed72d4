/**
 * netnsProcs (its C walk and its JavaScript one) finds a namespace's processes as `ip netns pids` does, by every task: a process entirely inside, and
 * one that moved only a non-leader thread in (setns() moves one thread), while its leader stays outside.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, test } from "node:test";
import { createNetns, deleteNetns, netnsPath } from "../../src/kernel/netns.ts";
import {
  killNetnsProcs,
  netnsProcs,
  netnsProcsInJs,
  residentNetnsProcs,
} from "../../src/kernel/netns-procs.ts";
import { waitFor } from "../utils/wait.ts";

const NAME = "nsprocs";
const started: ChildProcess[] = [];
createNetns(NAME);
const path = netnsPath(NAME);

after(() => {
  for (const c of started) c.kill("SIGKILL");
  deleteNetns(NAME);
});

/** python3 with one extra thread that enters the namespace (or not) and prints "in" when it is there. */
function threadInside(enter: boolean): ChildProcess {
  const script = `
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def worker():
    if ${enter ? "True" : "False"}:
        fd = os.open(${JSON.stringify(path)}, os.O_RDONLY)
        assert libc.setns(fd, 0x40000000) == 0
    print("in", flush=True)
    time.sleep(60)
threading.Thread(target=worker, daemon=True).start()
time.sleep(60)
`;
  const child = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  started.push(child);
  return child;
}

async function ready(child: ChildProcess): Promise<void> {
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await waitFor(() => out.includes("in"), 5000);
}

test("a process with only a non-leader thread in the namespace is one of its processes", async () => {
  const outside = threadInside(false);
  const inside = threadInside(true);
  await Promise.all([ready(outside), ready(inside)]);
  // The C walk (dist/libnetctx-procs.so, built before the tests) and the JavaScript one without a compiler.
  for (const scan of [netnsProcs, netnsProcsInJs]) {
    const pids = scan(path);
    assert.ok(pids.includes(inside.pid!), `${scan.name}: ${inside.pid} in ${pids}`);
    assert.ok(!pids.includes(outside.pid!), `${scan.name}: a thread that stayed out does not count`);
    assert.ok(!pids.includes(process.pid), `${scan.name}: neither does the test`);
  }
});

test("a process whose leader is inside is one of them; a missing namespace has none", async () => {
  const child = spawn("ip", ["netns", "exec", NAME, "sleep", "60"], { stdio: "ignore" });
  started.push(child);
  await waitFor(() => netnsProcs(path).includes(child.pid!), 5000);
  assert.ok(netnsProcsInJs(path).includes(child.pid!));
  assert.deepEqual(netnsProcs("/run/netns/no-such-namespace"), []);
  assert.deepEqual(netnsProcsInJs("/run/netns/no-such-namespace"), []);
});

/** python3 whose second thread hops into the namespace for 1-3 ms and out for 3-7 ms (a setns window's visit). */
function visitor(): ChildProcess {
  const script = `
import ctypes, os, random, threading, time
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
there = os.open(${JSON.stringify(path)}, os.O_RDONLY)
def worker():
    first = True
    while True:
        assert libc.setns(there, 0x40000000) == 0
        if first:
            print("in", flush=True)
            first = False
        time.sleep(random.uniform(0.001, 0.003))
        assert libc.setns(home, 0x40000000) == 0
        time.sleep(random.uniform(0.003, 0.007))
threading.Thread(target=worker, daemon=True).start()
time.sleep(60)
`;
  const child = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  started.push(child);
  return child;
}

test("a thread that visits is no resident: residentNetnsProcs leaves it out, killNetnsProcs leaves it alive", async () => {
  // Ten rounds: a listing meets a visitor inside about one time in three, so a kill by netnsProcs would end one.
  for (let round = 0; round < 10; round++) {
    const resident = spawn("ip", ["netns", "exec", NAME, "sleep", "60"], { stdio: "ignore" });
    started.push(resident);
    const guest = visitor();
    await ready(guest);
    await waitFor(() => netnsProcs(path).includes(resident.pid!), 5000);
    const residents = residentNetnsProcs(path);
    assert.ok(residents.includes(resident.pid!), `round ${round}: the resident is one`);
    assert.ok(!residents.includes(guest.pid!), `round ${round}: the visitor is not`);
    assert.deepEqual(killNetnsProcs(path), [], `round ${round}: nothing left`);
    // Its exit, had it been killed, reaches this process as an event: give it the time to arrive.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(guest.exitCode ?? guest.signalCode, null, `round ${round}: the visitor lives`);
    await waitFor(() => resident.exitCode !== null || resident.signalCode !== null, 5000);
    guest.kill("SIGKILL");
  }
});
