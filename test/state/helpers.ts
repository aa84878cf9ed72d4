import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NetworkRecord } from "../../src/state/store.ts";

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
