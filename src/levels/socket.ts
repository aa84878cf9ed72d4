/**
 * socket (Linux-VServer bind filtering): the host's stack, devices and routes are shared; the context's
 * processes may bind and connect only with its addresses.
 */
import type { LevelDriver } from "./driver.ts";
import { confineContext, releaseContext, sharedStackSandbox } from "./shared-stack.ts";

export const socketLevel: LevelDriver = {
  level: "socket",
  create(host, _name, spec) {
    confineContext(host, spec);
  },
  teardown(host, _name, spec) {
    releaseContext(host, spec);
  },
  execSandbox: sharedStackSandbox,
};
