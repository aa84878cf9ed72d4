/**
 * The DNS server in its worker thread, on real sockets of this file's throwaway namespace (loopback): it answers
 * while the main thread is blocked, survives a fuzz of ten thousand bad packets, says nothing to a sender it does
 * not serve, forwards with a cache that honours TTLs, and has no gap while its tables change.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { decode, type RecordType } from "dns-packet";
import { type DnsSnapshot, EMPTY_SNAPSHOT, snapshotChanges } from "../../src/dns/feed.ts";
import { Forwarder, MAX_IN_FLIGHT } from "../../src/dns/forwarder.ts";
import { DnsService } from "../../src/dns/service.ts";
import { dataOf, query, queryBytes, sendTcp, sendUdp } from "../utils/dns-client.ts";
import { type LineProcess, startLines } from "../utils/line-process.ts";
import { must } from "../utils/shell.ts";
import { sleep, waitFor } from "../utils/wait.ts";

const SERVER = "127.0.0.1";
const STUB = "127.0.0.53";
/** An address of this namespace outside every served subnet: a stranger. */
const STRANGER = "192.0.2.1";
const STUB_TTL_S = 2;
const scratch = process.env.NETCTX_TEST_SCRATCH ?? "/tmp";
const resolvConf = join(scratch, "resolv.conf");

let dns: DnsService;
let stub: LineProcess;
const logs: string[] = [];

let last: DnsSnapshot = EMPTY_SNAPSHOT;
/** Tell the server the names are now these: the changes from what it was told last. */
function serve(contexts: DnsSnapshot["contexts"]): Promise<void> {
  const next = { networks: [{ name: "loop", subnets: ["127.0.0.0/8"], listen: [SERVER] }], contexts };
  const updates = snapshotChanges(last, next);
  last = next;
  return dns.update(updates);
}
const web = { name: "web", aliases: ["www"], attachments: [{ network: "loop", addresses: ["127.0.0.2"] }] };

before(async () => {
  must(["ip", "link", "set", "lo", "up"]);
  must(["ip", "addr", "add", `${STRANGER}/32`, "dev", "lo"]);
  writeFileSync(resolvConf, `# written by the test\nnameserver ${STUB}\n`);
  stub = startLines([
    process.execPath,
    join(import.meta.dirname, "..", "utils", "dns-stub.mjs"),
    STUB,
    JSON.stringify({
      "example.org": "198.51.100.7",
      "cached.example.org": "198.51.100.8",
      "kept.example.org": "198.51.100.9",
      "burst.example.org": "198.51.100.10",
    }),
    String(STUB_TTL_S),
  ]);
  assert.equal(await stub.next(), "ready");
  dns = await DnsService.start({ domain: "netctx", port: 53, resolvConf, log: (l) => logs.push(l) });
  await serve([web]);
  let listening: string[] = [];
  for (let i = 0; i < 100 && !listening.includes(SERVER); i++) {
    listening = await dns.listening();
    await sleep(20);
  }
  assert.deepEqual(listening, [SERVER], logs.join("\n"));
});

after(async () => {
  await dns?.stop();
  await stub?.stop();
});

test("names answer over UDP and TCP", async () => {
  assert.deepEqual(dataOf(await query(SERVER, "www")), ["127.0.0.2"]);
  assert.deepEqual(dataOf(await query(SERVER, "web.loop.netctx", { tcp: true })), ["127.0.0.2"]);
});

/**
 * A burst from 16 sockets of one address, sent at once: the server reads most of it a batch at a time (recvmmsg) and
 * answers a batch at a time (sendmmsg), from its memo for all but the first of each question. Every socket gets back
 * exactly its own queries, each with its own id and the right answer: a reply sent to another socket of the batch,
 * or with another asker's id, fails it.
 */
test("a burst from many sockets: each gets its own answers, with its own ids", async () => {
  const { createSocket } = await import("node:dgram");
  // burst.example.org: forwarded, its answer sent when the upstream's comes, after the batch it came in.
  const names = ["web", "www", "burst.example.org"];
  const want: Record<string, string> = {
    web: "127.0.0.2",
    www: "127.0.0.2",
    "burst.example.org": "198.51.100.10",
  };
  const sockets = await Promise.all(
    Array.from({ length: 16 }, async () => {
      const socket = createSocket("udp4");
      await new Promise<void>((resolve) => socket.bind({ address: SERVER, port: 0 }, resolve));
      return socket;
    }),
  );
  const problems: string[] = [];
  const base = Math.floor(Math.random() * 65536);
  /** Which socket asked each id of the burst. */
  const askedBy = new Map<number, number>();
  const pending = sockets.map((socket, s) => {
    const asked = new Map<number, string>();
    for (let q = 0; q < 12; q++) {
      const id = (base + s * 12 + q) % 65536;
      askedBy.set(id, s);
      const name = names[q % names.length]!;
      const bytes = queryBytes(name);
      bytes.writeUInt16BE(id, 0);
      asked.set(id, name);
      socket.send(bytes, 53, SERVER);
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        problems.push(`socket ${s}: no answer for ids ${[...asked.keys()].join(",")}`);
        resolve();
      }, 3000);
      socket.on("message", (msg) => {
        const answer = decode(msg);
        const name = asked.get(answer.id ?? -1);
        // An id of no socket of the burst: a late answer to an earlier test's query on a port used again.
        if (name === undefined && askedBy.has(answer.id ?? -1))
          problems.push(
            `socket ${s}: an answer with id ${answer.id} (socket ${askedBy.get(answer.id ?? -1)} asked it), not one it waits for`,
          );
        else if (name === undefined) return;
        else if (answer.questions?.[0]?.name !== name || dataOf(answer)[0] !== want[name])
          problems.push(
            `socket ${s}: id ${answer.id} asked ${name}, got ${answer.questions?.[0]?.name} ${dataOf(answer)}`,
          );
        asked.delete(answer.id ?? -1);
        if (asked.size === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  });
  await Promise.all(pending);
  for (const socket of sockets) socket.close();
  assert.deepEqual(problems, []);
});

/**
 * A child process asks every 10 ms while this thread spins for 2 s (as the engine does in a bulk apply): every
 * query answers, and none waits for the main thread.
 */
test("queries answer in a few ms while the main thread is blocked for 2 s", async () => {
  const probe = `
    const dgram = require("node:dgram");
    const q = Buffer.from(process.argv[1], "hex");
    const s = dgram.createSocket("udp4");
    const sent = new Map();
    let n = 0;
    s.on("message", (m) => { const t = sent.get(m.readUInt16BE(0)); if (t !== undefined) console.log("rtt " + (performance.now() - t).toFixed(2)); });
    console.log("started");
    const timer = setInterval(() => {
      if (n++ >= 250) { clearInterval(timer); setTimeout(() => process.exit(0), 300); return; }
      const id = n; q.writeUInt16BE(id, 0); sent.set(id, performance.now()); s.send(q, 53, "${SERVER}");
    }, 10);`;
  const child = spawn(process.execPath, ["-e", probe, queryBytes("web").toString("hex")]);
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  await waitFor(() => out.includes("started"), 5000);
  await sleep(200);
  const start = performance.now();
  while (performance.now() - start < 2000) {
    // the main thread is busy: no timer, no I/O callback of this thread runs
  }
  await new Promise((resolve) => child.on("close", resolve));
  const rtts = [...out.matchAll(/rtt ([\d.]+)/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  const p50 = rtts[Math.floor(rtts.length / 2)]!;
  const max = rtts[rtts.length - 1]!;
  console.log(`# ${rtts.length} queries during and around a 2 s block: p50 ${p50} ms, max ${max} ms`);
  assert.ok(rtts.length >= 240, `only ${rtts.length} of 250 answered`);
  // Bounds far above what it takes (p50 ~0.5 ms here) and far below the 2 s block: the machine is shared and noisy.
  assert.ok(p50 < 20, `the median answer took ${p50} ms`);
  assert.ok(max < 250, `the slowest answer took ${max} ms: it waited for the main thread`);
});

/** A valid query, mutated: bits flipped, cut short, counts and label lengths changed, pointers planted. */
function mutated(): Buffer {
  const base = queryBytes(
    ["web", "www", "example.org", "web.loop.netctx", "2.0.0.127.in-addr.arpa"][
      Math.floor(Math.random() * 5)
    ]!,
    {
      type: (["A", "AAAA", "PTR", "ANY", "AXFR", "MX"] as RecordType[])[Math.floor(Math.random() * 6)]!,
      edns: Math.random() < 0.3,
    },
  );
  const b = Buffer.from(base);
  const pick = Math.floor(Math.random() * 6);
  if (pick === 0)
    for (let i = 0; i < 3; i++)
      b[Math.floor(Math.random() * b.length)]! ^= 1 << Math.floor(Math.random() * 8);
  if (pick === 1) return b.subarray(0, Math.floor(Math.random() * b.length));
  if (pick === 2) b.writeUInt16BE(Math.floor(Math.random() * 65536), 4 + 2 * Math.floor(Math.random() * 4));
  if (pick === 3) b[12] = Math.floor(Math.random() * 256);
  if (pick === 4) {
    // a compression pointer at the name, pointing at itself or anywhere
    b[12] = 0xc0;
    b[13] = Math.random() < 0.5 ? 12 : Math.floor(Math.random() * 256);
  }
  if (pick === 5) return Buffer.concat([b, randomBytes(Math.floor(Math.random() * 3000))]);
  return b;
}

test("a fuzz of 12,000 random and mutated packets (UDP and TCP) leaves the server answering", async () => {
  let sent = 0;
  const udp = (await import("node:dgram")).createSocket("udp4");
  udp.on("message", () => {});
  for (let round = 0; round < 60; round++) {
    for (let i = 0; i < 100; i++) {
      const packet = i % 2 ? mutated() : randomBytes(Math.floor(Math.random() * 700));
      udp.send(packet, 53, SERVER);
      sent++;
    }
    await sleep(5);
  }
  udp.close();
  // TCP: garbage frames, a length prefix promising more than ever comes, a frame split in two.
  const tcpRounds: Promise<unknown>[] = [];
  for (let i = 0; i < 200; i++)
    tcpRounds.push(sendTcp(SERVER, i % 2 ? mutated() : randomBytes(1 + (i % 300)), { timeoutMs: 300 }));
  await Promise.all(tcpRounds);
  sent += 200;
  const { connect } = await import("node:net");
  const hanging = connect({ host: SERVER, port: 53 });
  hanging.on("error", () => {});
  hanging.write(Buffer.from([0xff, 0xff, 1, 2, 3]));
  // The rest of the 12,000 through single sends with an answer awaited now and then.
  while (sent < 12_000) {
    await sendUdp(SERVER, mutated(), { timeoutMs: 20 });
    sent++;
    if (sent % 1000 === 0) await sleep(1);
  }
  hanging.destroy();
  assert.ok(sent >= 10_000);
  assert.deepEqual(dataOf(await query(SERVER, "web")), ["127.0.0.2"], "a normal query still answers");
  assert.deepEqual(dataOf(await query(SERVER, "web", { tcp: true })), ["127.0.0.2"]);
  assert.deepEqual(await dns.listening(), [SERVER], "the worker is alive and still listening");
  assert.deepEqual(
    logs.filter((l) => /failed/.test(l)),
    [],
    "no query made the server fail",
  );
});

test("a sender outside every served subnet gets nothing back, valid query or not, UDP or TCP", async () => {
  for (const bytes of [
    queryBytes("web"),
    queryBytes("example.org"),
    queryBytes("web", { type: "AXFR" }),
    mutated(),
  ])
    assert.equal(await sendUdp(SERVER, bytes, { source: STRANGER, timeoutMs: 300 }), undefined);
  assert.equal(await sendTcp(SERVER, queryBytes("web"), { source: STRANGER, timeoutMs: 300 }), undefined);
  assert.deepEqual(dataOf(await query(SERVER, "web")), ["127.0.0.2"], "while a served sender is answered");
});

test("other names go to the upstream of resolv.conf, and its answer is cached for its TTL", async () => {
  // A name the fuzz never asked for, so every query the stub saw for it is this test's.
  const asked = () => stub.lines.filter((l) => /^query cached\.example\.org /i.test(l)).length;
  assert.deepEqual(dataOf(await query(SERVER, "cached.example.org")), ["198.51.100.8"]);
  assert.equal(asked(), 1);
  const again = await query(SERVER, "CACHED.example.org");
  assert.deepEqual(dataOf(again), ["198.51.100.8"]);
  assert.equal(asked(), 1, "the second answer came from the cache");
  await sleep(STUB_TTL_S * 1000 + 100);
  assert.deepEqual(dataOf(await query(SERVER, "cached.example.org")), ["198.51.100.8"]);
  assert.equal(asked(), 2, "asked again once the TTL ran out");
  const missing = await query(SERVER, "nosuch.example.org");
  assert.equal((missing as { rcode?: string }).rcode, "NXDOMAIN");
});

/**
 * The server keeps finished UDP answers by sender and query bytes (src/dns/answer-memo.ts): the very same bytes,
 * asked again after the tables changed, get the tables' new answer; a forwarded answer's TTL still counts down.
 */
test("the same query bytes again: a changed name answers anew, a forwarded TTL counts down", async () => {
  const bytes = queryBytes("kept");
  const ask = async () => {
    const answer = await sendUdp(SERVER, bytes);
    assert.ok(answer, "answered");
    const packet = decode(answer);
    assert.equal(packet.id, bytes.readUInt16BE(0));
    return packet;
  };
  const kept = (address: string) => ({
    ...web,
    name: "kept",
    aliases: [],
    attachments: [{ network: "loop", addresses: [address] }],
  });
  await serve([web, kept("127.0.0.9")]);
  assert.deepEqual(dataOf(await ask()), ["127.0.0.9"]);
  assert.deepEqual(dataOf(await ask()), ["127.0.0.9"]);
  await serve([web, kept("127.0.0.10")]);
  assert.deepEqual(dataOf(await ask()), ["127.0.0.10"], "the moved name's new address");
  await serve([web]);
  assert.equal(((await ask()) as { rcode?: string }).rcode, "NXDOMAIN", "the removed name is gone");

  const forwarded = queryBytes("kept.example.org");
  const ttl = async () => {
    const answer = await sendUdp(SERVER, forwarded);
    const a = answer && decode(answer).answers?.[0];
    assert.ok(a, "answered");
    return (a as { ttl: number }).ttl;
  };
  assert.equal(await ttl(), STUB_TTL_S);
  assert.equal(await ttl(), STUB_TTL_S);
  await sleep(1100);
  assert.equal(await ttl(), STUB_TTL_S - 1, "kept one second: its TTL one less");
});

/**
 * A big batch of changes (an apply of many contexts) is applied in slices (worker.ts): a query sent just after the
 * batch is answered before the batch is through, instead of waiting behind all of it.
 */
test("a query sent during a batch of 10,000 changes is answered before the batch is applied", async () => {
  const many = Array.from({ length: 10_000 }, (_, i) => ({
    name: `bulk${i}`,
    aliases: [],
    attachments: [{ network: "loop", addresses: [`127.1.${i >> 8}.${(i & 255) + 1}`] }],
  }));
  const events: string[] = [];
  const started = performance.now();
  const applied = serve([web, ...many]).then(() =>
    events.push(`applied ${Math.round(performance.now() - started)} ms`),
  );
  const answered = sendUdp(SERVER, queryBytes("www")).then((a) => {
    events.push(`answered ${Math.round(performance.now() - started)} ms`);
    return a;
  });
  const answer = await answered;
  await applied;
  assert.ok(answer, "answered");
  assert.match(events[0]!, /^answered/, events.join(", "));
  await serve([web]);
});

test("no gap while the tables change: a client asking all along is always answered", async () => {
  let answered = 0;
  let failed = 0;
  let running = true;
  const client = (async () => {
    while (running) {
      const p = await query(SERVER, "web", { timeoutMs: 500 });
      if (dataOf(p).join() === "127.0.0.2") answered++;
      else failed++;
    }
  })();
  for (let i = 0; i < 300; i++) {
    const others = Array.from({ length: 20 }, (_, j) => ({
      name: `c${(i + j) % 50}`,
      aliases: [`a${i}`],
      attachments: [{ network: "loop", addresses: [`127.0.1.${(i + j) % 50}`] }],
    }));
    await serve([{ ...web, aliases: [`www${i % 3}`] }, ...others]);
  }
  running = false;
  await client;
  console.log(`# ${answered} answers during 300 table changes, ${failed} failures`);
  assert.ok(answered > 0);
  assert.equal(failed, 0);
});

test("an upstream that never answers holds at most MAX_IN_FLIGHT queries; past that, SERVFAIL at once", async () => {
  const silent = (await import("node:dgram")).createSocket("udp4");
  await new Promise<void>((resolve) => silent.bind({ address: "127.0.0.54", port: 53 }, resolve));
  const forwarder = new Forwarder(["127.0.0.54"]);
  const ask = (i: number) => {
    const raw = queryBytes(`n${i}.example.net`);
    return forwarder.forward({
      raw,
      id: raw.readUInt16BE(0),
      key: `n${i}.example.net|A|IN`,
      limit: 512,
      transport: "udp",
      fail: (rcode) => Buffer.from([0, 0, 0x81, 0x80 | rcode, 0, 0, 0, 0, 0, 0, 0, 0]),
      truncated: () => Buffer.alloc(12),
    });
  };
  const held = Array.from({ length: MAX_IN_FLIGHT }, (_, i) => ask(i));
  const t0 = performance.now();
  const over = await ask(MAX_IN_FLIGHT);
  assert.equal(over[3]! & 0xf, 2, "SERVFAIL");
  assert.ok(performance.now() - t0 < 100, "at once, not after the upstream timeout");
  const all = await Promise.all(held);
  assert.ok(
    all.every((b) => (b[3]! & 0xf) === 2),
    "the held ones time out as SERVFAIL",
  );
  silent.close();
});
