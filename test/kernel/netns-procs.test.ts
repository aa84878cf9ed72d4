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
import { inside, netnsThread, type ThreadMode } from "../utils/netns-thread.ts";
import { waitFor } from "../utils/wait.ts";

const NAME = "nsprocs";
const started: ChildProcess[] = [];
createNetns(NAME);
const path = netnsPath(NAME);

after(() => {
  for (const c of started) c.kill("SIGKILL");
  deleteNetns(NAME);
});

const thread = (mode: ThreadMode) => {
  const child = netnsThread(path, mode);
  started.push(child);
  return child;
};

test("a process with only a non-leader thread in the namespace is one of its processes", async () => {
  const outside = thread("out");
  const stays = thread("stay");
  await Promise.all([inside(outside), inside(stays)]);
  // The C walk (dist/libnetctx-procs.so, built before the tests) and the JavaScript one without a compiler.
  for (const scan of [netnsProcs, netnsProcsInJs]) {
    const pids = scan(path);
    assert.ok(pids.includes(stays.pid!), `${scan.name}: ${stays.pid} in ${pids}`);
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

test("a thread that visits is no resident: residentNetnsProcs leaves it out, killNetnsProcs leaves it alive", async () => {
  // Ten rounds: a listing meets a visitor inside about one time in three, so a kill by netnsProcs would end one.
  for (let round = 0; round < 10; round++) {
    const resident = spawn("ip", ["netns", "exec", NAME, "sleep", "60"], { stdio: "ignore" });
    started.push(resident);
    const guest = thread("visit");
    await inside(guest);
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
