/**
 * In-process nft transactions under a storm of signals. libnftables gives up on a netlink receive that a signal
 * interrupts (EINTR) and reports the transaction failed, whether or not the kernel committed it; node receives
 * signals of its own (SIGCHLD of every child, a profiler's SIGPROF). Every transaction here must succeed.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { libnftablesAvailable } from "../../src/firewall/libnftables.ts";
import { Nft } from "../../src/firewall/nft.ts";

const TABLE = "inet nctx_signal_test";

before(() => new Nft().apply(`add table ${TABLE}\nadd set ${TABLE} s { type ifname; }`));
after(() => new Nft().apply(`delete table ${TABLE}`));

test("transactions succeed while signals keep arriving", { skip: !libnftablesAvailable() }, async () => {
  let received = 0;
  const count = () => {
    received++;
  };
  process.on("SIGUSR2", count);
  // A shell of ours that signals this process as fast as it can until it is ended (by its PID, below).
  const storm = spawn("sh", ["-c", `while kill -USR2 ${process.pid}; do :; done`], { stdio: "ignore" });
  try {
    await new Promise((r) => setTimeout(r, 200));
    const nft = new Nft();
    const failed: number[] = [];
    for (let i = 0; i < 300; i++) {
      const verb = i % 2 ? "delete" : "create";
      if (!nft.tryApply(`${verb} element ${TABLE} s { "sig${i >> 1}" }`)) failed.push(i);
    }
    // Let the held-back signals in before counting them.
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(received > 100, `only ${received} signals arrived: the storm did not run`);
    assert.deepEqual(failed, [], "transactions that failed");
    assert.deepEqual(nft.list(["set", ...TABLE.split(" "), "s"])?.length, 1);
  } finally {
    storm.kill("SIGKILL");
    process.off("SIGUSR2", count);
  }
});
