/**
 * A host process's thread that visits an l2 context's namespace (a setns window: netctx's own engine reading it
 * while another netctx process works on the same store) is not a process of the context: rm does not refuse over it
 * and rm --force does not kill it. What stays in the namespace still is one: rm refuses naming it, --force kills it.
 * The visitor here hops in for 1-3 ms and out for 3-7 ms, over and over; without the grace (kernel/netns-procs.ts
 * residentNetnsProcs) an rm met it inside about one time in three, so ten rms in a row all pass only by chance.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, test } from "node:test";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { inside, netnsThread, type ThreadMode } from "../utils/netns-thread.ts";
import { waitFor } from "../utils/wait.ts";

const NETWORK = "visits";
const started: ChildProcess[] = [];

after(() => {
  for (const c of started) c.kill("SIGKILL");
  for (let i = 0; i < 12; i++) netctx("rm", "-f", `v${i}`);
  netctx("network", "rm", NETWORK);
});

function thread(netns: string, mode: ThreadMode): ChildProcess {
  const child = netnsThread(netns, mode);
  started.push(child);
  return child;
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

function context(name: string): string {
  netctxOk("create", name, "--level", "l2", "--network", NETWORK);
  return netctxJson<{ netns: string }>("inspect", name).netns;
}

test("a visiting thread of a host process neither holds up rm nor is killed by rm --force", async () => {
  netctxOk("network", "create", NETWORK, "--driver", "bridge", "--subnet", "10.93.0.0/24");
  for (let i = 0; i < 10; i++) {
    const name = `v${i}`;
    const visitor = thread(context(name), "visit");
    await inside(visitor);
    const force = i % 2 === 1;
    const r = netctx("rm", ...(force ? ["--force"] : []), name);
    assert.equal(r.code, 0, `rm ${force ? "--force " : ""}${name} with a visitor: ${r.stderr}`);
    // Its exit, had rm killed it, reaches this process as an event (rm ran synchronously): give it the time.
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(alive(visitor), `the visitor of ${name} is alive after rm${force ? " --force" : ""}`);
    visitor.kill("SIGKILL");
  }
});

test("a thread that stays is one of the context's processes: rm refuses naming it, --force kills it", async () => {
  const resident = thread(context("v10"), "stay");
  await inside(resident);
  const r = netctx("rm", "v10");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`processes ${resident.pid} .*still run in "v10"`));
  netctxOk("rm", "--force", "v10");
  await waitFor(() => !alive(resident), 5000);
});
