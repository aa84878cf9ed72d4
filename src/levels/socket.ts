/**
 * socket (Linux-VServer bind filtering): the host's stack, devices and routes are shared; the context's
 * processes may bind and connect only with its addresses.
 */
import type { LevelDriver } from "./driver.ts";
import { specOf } from "./driver.ts";
import {
  addressPolicy,
  confineContext,
  declareSharedStack,
  releaseContext,
  sharedStackAnchor,
  sharedStackSandbox,
} from "./shared-stack.ts";

export const socketLevel: LevelDriver = {
  level: "socket",
  sharedStack: true,
  ownTable: false,
  create(host, _name, spec) {
    confineContext(host, spec);
  },
  teardown(host, _name, spec) {
    releaseContext(host, spec);
  },
  execSandbox: sharedStackSandbox,
  anchorMissing: sharedStackAnchor,
  declare(host, record, own) {
    const spec = specOf(record);
    declareSharedStack(host, spec, own, () => addressPolicy(spec));
  },
};
