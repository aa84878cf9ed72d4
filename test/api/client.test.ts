/**
 * callEngine's HTTP/1.1 over node:net (src/api/client.ts): the replies node's HTTP server sends, with
 * Content-Length, chunked (a reply written in parts, or after writeHead without a length: the engine's 403), an
 * error reply as the engine's NetctxError, and no engine (no socket file, or a file nobody listens on) as undefined.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { callEngine } from "../../src/api/client.ts";
import { NetctxError } from "../../src/errors.ts";

const SCRATCH = process.env.NETCTX_TEST_SCRATCH!;
const SOCKET = join(SCRATCH, "fake-engine.sock");
let server: Server;
const seen: { method: string; url: string; body: string }[] = [];

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      seen.push({ method: req.method!, url: req.url!, body });
      if (req.url === "/length") {
        const text = JSON.stringify({ name: "é", n: 1 });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
      } else if (req.url === "/parts") {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"parts": [1, ');
        res.end('2, 3], "big": "' + "x".repeat(70_000) + '"}');
      } else {
        res.writeHead(403, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: "forbidden", message: "refused: a context's process" } }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(SOCKET, resolve));
});
after(() => server.close());

test("a reply with Content-Length, and the request's method, path and body as sent", async () => {
  assert.deepEqual(await callEngine(SOCKET, "POST", "/length", { name: "ä" }), { name: "é", n: 1 });
  assert.deepEqual(seen.at(-1), { method: "POST", url: "/length", body: '{"name":"ä"}' });
});

test("a chunked reply (written in parts, larger than one read)", async () => {
  const reply = await callEngine<{ parts: number[]; big: string }>(SOCKET, "GET", "/parts");
  assert.deepEqual(reply?.parts, [1, 2, 3]);
  assert.equal(reply?.big.length, 70_000);
});

test("an error reply is the engine's NetctxError, with its code", async () => {
  await assert.rejects(callEngine(SOCKET, "GET", "/refuse"), (err: unknown) => {
    assert.ok(err instanceof NetctxError);
    assert.equal(err.code, "forbidden");
    assert.equal(err.message, "refused: a context's process");
    return true;
  });
});

test("no engine: no socket file, or a file nobody listens on", async () => {
  assert.equal(await callEngine(join(SCRATCH, "absent.sock"), "GET", "/length"), undefined);
  const stale = join(SCRATCH, "stale.sock");
  writeFileSync(stale, "");
  assert.equal(await callEngine(stale, "GET", "/length"), undefined);
});
