/**
 * The stub upstream DNS server (dns-stub.mjs) in a namespace of the test's: it answers far.example (203.0.113.9,
 * TTL 60) and prints a line per query it gets, so a test sees what reached the upstream.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type LineProcess, startLines } from "./line-process.ts";
import { inNetns } from "./netns.ts";

export const STUB_NAME = "far.example";
export const STUB_ANSWER = "203.0.113.9";

/** Started in netns `/run/netns/NAME` on `address`; resolves once it serves. */
export async function startDnsStub(netns: string, address: string): Promise<LineProcess> {
  const stub = startLines(
    inNetns(`/run/netns/${netns}`, [
      process.execPath,
      join(import.meta.dirname, "dns-stub.mjs"),
      address,
      JSON.stringify({ [STUB_NAME]: STUB_ANSWER }),
      "60",
    ]),
  );
  assert.equal(await stub.next(), "ready");
  return stub;
}
