import { invalid } from "../errors.ts";
import { bridgeDriver } from "./bridge.ts";
import type { NetworkDriver } from "./driver.ts";
import { hostDriver } from "./host-net.ts";
import { routedDriver } from "./routed.ts";

const drivers = new Map<string, NetworkDriver>(
  [bridgeDriver, routedDriver, hostDriver].map((d) => [d.name, d]),
);

export function networkDriver(name: string): NetworkDriver {
  const driver = drivers.get(name);
  if (!driver) throw invalid("driver", `unknown driver "${name}" (known: ${[...drivers.keys()].join(", ")})`);
  return driver;
}
