/**
 * An "upstream" router for the shared-stack level tests: a namespace hanging off a host network's bridge by a veth,
 * with an address in the host subnet and the far addresses on its lo, answering TCP on them with its name and the
 * source it saw, so the upstream a connection reached shows which table routed it.
 */
import { addVethNetns, delVethNetns } from "./netns.ts";
import { startServing } from "./socket-probe.ts";

export interface Upstream {
  name: string;
  stop(): void;
}

export async function startUpstream(opts: {
  name: string;
  bridge: string;
  addresses: string[];
  far: string[];
  port: number;
}): Promise<Upstream> {
  const { name } = opts;
  const veth = { name, hostIfname: `${name}-h` };
  const netns = addVethNetns({
    ...veth,
    master: opts.bridge,
    addresses: opts.addresses,
    loAddresses: opts.far,
  });
  const server = await startServing(
    {
      op: "serve",
      proto: "tcp",
      port: opts.port,
      hosts: opts.far.map((a) => a.split("/")[0]!),
      answer: `${name} `,
    },
    { netns },
  );
  return {
    name,
    stop() {
      server.child.kill();
      delVethNetns(veth);
    },
  };
}
