import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetctxError } from "../../src/errors.ts";
import type { NetworkRecord } from "../../src/model/records.ts";

/** `fn` throws a NetctxError with exactly this code and message. */
export function fails(fn: () => unknown, code: string, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NetctxError, String(err));
    assert.equal(err.message, message);
    assert.equal(err.code, code);
    return true;
  });
}

/** A state directory of its own for one test, inside the runner's scratch dir. */
export function freshDir(tag: string): string {
  return join(mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? tmpdir(), `${tag}-`)), "state");
}

export function network(
  name: string,
  subnets: NetworkRecord["subnets"],
  extra: Partial<NetworkRecord> = {},
): NetworkRecord {
  return { name, driver: "bridge", subnets, nat: true, internal: false, mtu: 1500, options: {}, ...extra };
}
