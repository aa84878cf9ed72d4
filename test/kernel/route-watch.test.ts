/**
 * RouteWatch sees every IPv6 route its netns's kernel installs, including one removed again before anybody could
 * list it (the audit's rogue-ra probe relies on that), and nothing of IPv4; netnsSnmp6 reads that netns's own MIB.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";
import { netnsSnmp6 } from "../../src/kernel/proc-net.ts";
import { RouteWatch } from "../../src/kernel/route-watch.ts";
import { ipj } from "../utils/kernel-oracle.ts";
import { addNetns, delNetns } from "../utils/netns.ts";

let netns: string;
const ipIn = (...args: string[]) => execFileSync("ip", ["-n", "rw1", ...args]);

before(() => {
  netns = addNetns("rw1");
  // A bridge without ports: no dummy driver on this kernel.
  ipIn("link", "add", "rw0", "type", "bridge");
  ipIn("link", "set", "rw0", "up");
  ipIn("addr", "add", "fd70::2/64", "dev", "rw0", "nodad");
  ipIn("addr", "add", "10.70.0.2/24", "dev", "rw0");
});

after(() => delNetns("rw1"));

test("a route installed and removed again before any listing is still seen; IPv4 routes are not", () => {
  const watch = RouteWatch.open(netns);
  try {
    ipIn("-6", "route", "add", "default", "via", "fd70::1", "dev", "rw0", "metric", "1024");
    ipIn("-6", "route", "del", "default", "via", "fd70::1", "dev", "rw0", "metric", "1024");
    ipIn("-4", "route", "add", "10.71.0.0/24", "via", "10.70.0.1");
    assert.deepEqual(
      ipj<{ dst: string; gateway?: string }>(["-6", "route", "show", "table", "all"], netns).filter(
        (r) => r.gateway === "fd70::1",
      ),
      [],
      "ip no longer lists the route",
    );
    const seen = watch.routes();
    assert.ok(seen, `notifications lost: ${watch.lostReason}`);
    assert.deepEqual(
      seen.filter((r) => r.gateway !== undefined).map((r) => [r.family, r.dst, r.gateway, r.table, r.metric]),
      [[6, "default", "fd70::1", 254, 1024]],
    );
    // Read again: what was seen stays, nothing new came.
    assert.equal(watch.routes()?.length, seen.length);
  } finally {
    watch.close();
  }
});

test("netnsSnmp6 reads the namespace's own IPv6 MIB, as its /proc/net/snmp6 shows it", () => {
  execFileSync("ip", ["netns", "exec", "rw1", "ping", "-6", "-c", "2", "-i", "0.2", "-q", "fd70::2"]);
  const oracle = execFileSync("ip", ["netns", "exec", "rw1", "cat", "/proc/net/snmp6"], { encoding: "utf8" });
  const want = (name: string) => Number(oracle.match(new RegExp(`^${name}\\s+(\\d+)$`, "m"))?.[1]);
  const mib = netnsSnmp6(netns);
  assert.equal(mib.get("Icmp6OutEchos"), 2);
  assert.equal(mib.get("Icmp6OutEchos"), want("Icmp6OutEchos"));
  assert.equal(mib.get("Icmp6InRouterAdvertisements"), want("Icmp6InRouterAdvertisements"));
});
