import { invalid } from "../errors.ts";
import type { PortKind } from "../firewall/antispoof.ts";
import type { NetworkRecord } from "../model/records.ts";
import { shown } from "../net/ifname.ts";
import { bridgeDriver } from "./bridge.ts";
import { guardKindOf } from "./common.ts";
import type { NetworkDriver } from "./driver.ts";
import { hostDriver } from "./host-net.ts";
import { macvlanDriver } from "./macvlan.ts";
import { overlayDriver } from "./overlay.ts";
import { routedDriver } from "./routed.ts";

const drivers = new Map<string, NetworkDriver>(
  [bridgeDriver, routedDriver, hostDriver, macvlanDriver, overlayDriver].map((d) => [d.name, d]),
);

export function networkDriver(name: string): NetworkDriver {
  const driver = drivers.get(name);
  if (!driver) throw invalid("driver", `unknown driver "${name}" (known: ${[...drivers.keys()].join(", ")})`);
  return driver;
}

/** How a network guards its contexts' ports (its driver's kind of anti-spoofing); undefined when it guards none. */
export function portGuardOf(net: NetworkRecord): PortKind | undefined {
  return guardKindOf(networkDriver(net.driver), net);
}

/** The networks whose driver cannot enforce a policy on their contexts, with the reason (compilePolicies). */
export function policyUnenforceable(networks: readonly NetworkRecord[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const net of networks) {
    const why = networkDriver(net.driver).policyUnenforceable?.(net);
    if (why) out.set(net.name, why);
  }
  return out;
}

/** The host devices the networks' drivers want the policy program on (NetworkDriver.policyDevices), once each. */
export function policyDevices(networks: readonly NetworkRecord[]): string[] {
  return [...new Set(networks.flatMap((n) => networkDriver(n.driver).policyDevices?.(n) ?? []))];
}

/** Refuse an option `driver` does not declare, naming it and the ones it takes. */
export function checkDriverOptions(driver: NetworkDriver, options: Readonly<Record<string, unknown>>): void {
  const accepted = Object.keys(driver.options);
  for (const key of Object.keys(options))
    if (!Object.hasOwn(driver.options, key))
      throw invalid(
        "options",
        `the ${driver.name} driver takes no option ${shown(key)} (it takes: ${accepted.join(", ") || "none"})`,
      );
}

/** The drivers that take options, with their keys ("macvlan: parent"), for help texts. */
export function networkDriverOptionKeys(): string[] {
  return [...drivers.values()].flatMap((d) =>
    Object.keys(d.options).length ? [`${d.name}: ${Object.keys(d.options).join(", ")}`] : [],
  );
}

/** The registered drivers' names, for help texts. */
export function networkDriverNames(): string[] {
  return [...drivers.keys()];
}
