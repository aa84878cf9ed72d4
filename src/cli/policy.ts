/** netctx policy add|ls|rm: who may reach whom (issue 19). */
import type { Command } from "commander";
import { callEngine } from "../api/client.ts";
import { addPolicy, type PolicyView, policyView, removePolicy } from "../engine/policies.ts";
import { notFound } from "../errors.ts";
import { cliConfig } from "./config.ts";
import { withHost } from "./host.ts";
import { collect, forEachName, printJson, printTable, removedNames } from "./output.ts";

interface AddOptions {
  to: string;
  from: string;
  port: string[];
  egress?: boolean;
  json?: boolean;
}

const SELECTORS =
  "a context name (or context:NAME), KEY=VALUE[,KEY=VALUE], network:NAME, host, world, or a CIDR";

export function registerPolicy(program: Command): void {
  const policy = program
    .command("policy")
    .description(
      "who may reach whom, as Kubernetes NetworkPolicy: selected contexts accept (or send) only what a policy allows",
    );

  policy
    .command("add")
    .description(
      "add a policy: without --egress it selects the --to contexts and allows from --from; with --egress it selects the --from contexts and allows to --to",
    )
    .argument("<name>")
    .requiredOption("--to <selector>", SELECTORS)
    .requiredOption("--from <selector>", SELECTORS)
    .option(
      "--port <port>",
      "allowed port: N, N-M, with /tcp or /udp (default tcp; repeatable; none: every port)",
      collect,
      [],
    )
    .option("--egress", "select the --from contexts (what they may send) instead of the --to ones")
    .option("--json", "print the policy as JSON")
    .action(async (name: string, o: AddOptions) => {
      const input = { name, to: o.to, from: o.from, ports: o.port, egress: o.egress === true };
      const view =
        (await callEngine<PolicyView>(cliConfig().socketPath, "POST", "/v1/policies", input)) ??
        withHost((host) => policyView(addPolicy(host, input)));
      if (o.json) printJson(view);
      else console.log(view.name);
    });

  policy
    .command("ls")
    .description("list policies (in bit order: by name)")
    .option("--json", "JSON output")
    .action((o: { json?: boolean }) => {
      withHost((host) => {
        const views = host.store.listPolicies().map(policyView);
        if (o.json) return printJson(views);
        printTable(
          ["NAME", "DIRECTION", "SELECTS", "ALLOWS", "PORTS"],
          views.map((v) => [
            v.name,
            v.egress ? "egress" : "ingress",
            v.egress ? v.from : v.to,
            v.egress ? `to ${v.to}` : `from ${v.from}`,
            v.ports.join(",") || "any",
          ]),
        );
      });
    });

  policy
    .command("rm")
    .description("remove policies; a missing one is reported, the others go")
    .argument("<name...>")
    .option("-i, --ignore", "a missing policy is a note, not an error")
    .option("--json", 'print {"removed": [NAME...]} once all are done')
    .action(async (names: string[], o: { ignore?: boolean; json?: boolean }) => {
      const out = removedNames(o.json);
      await forEachName(names, async (name) => {
        const remote = await callEngine<{ removed: boolean }>(
          cliConfig().socketPath,
          "DELETE",
          `/v1/policies/${encodeURIComponent(name)}`,
        );
        const removed = remote ? remote.removed : withHost((host) => removePolicy(host, name) !== undefined);
        if (removed) out.removed(name);
        else if (o.ignore) console.error(`note: policy "${name}" does not exist; nothing to remove`);
        else throw notFound("policy", name);
      });
      out.end();
    });
}
