/**
 * The settings netctx code runs with inside a test: read from the environment the runner gives each test file
 * (NETCTX_STATE_DIR, NETCTX_CGROUP_PARENT, ...), as the CLI reads them, with the test's own choices over them.
 */
import { type Config, readConfig } from "../../src/config.ts";

export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...readConfig(process.env), ...overrides };
}
