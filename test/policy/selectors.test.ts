/** Selectors, ports and labels as the user writes them (src/model/policy.ts, src/model/labels.ts): parsed or refused naming the field. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LABEL_CONFIG, LABEL_CONTAINER, LABEL_IFNAME } from "../../src/cni/verbs.ts";
import { NetctxError } from "../../src/errors.ts";
import {
  checkRecordedLabels,
  checkUserLabels,
  isReservedLabel,
  K8S_LABELS,
  labelsFromArgs,
} from "../../src/model/labels.ts";
import { formatSelector, parsePortArg, parseSelector, policyRecordOf } from "../../src/model/policy.ts";
import { SCENE_LABEL } from "../../src/model/records.ts";

const refused = (fn: () => unknown, field: string, message: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NetctxError);
    assert.equal(err.field, field);
    assert.match(err.message, message);
    assert.ok(!err.message.includes("\n"));
    return true;
  });

test("every selector form parses to its kind and writes back the one way", () => {
  const cases: [string, string, string][] = [
    ["web", "context", "web"],
    ["context:host", "context", "context:host"],
    ["app=db,tier=back", "labels", "app=db,tier=back"],
    ["example.com/team=a", "labels", "example.com/team=a"],
    ["network:front", "network", "network:front"],
    ["host", "host", "host"],
    ["world", "world", "world"],
    ["10.0.0.0/8", "cidr", "10.0.0.0/8"],
    ["FD00::/8", "cidr", "fd00::/8"],
    ["192.0.2.7", "cidr", "192.0.2.7/32"],
    ["2001:db8::1", "cidr", "2001:db8::1/128"],
    ["app=", "labels", "app="],
  ];
  for (const [text, kind, canonical] of cases) {
    const s = parseSelector("to", text);
    assert.equal(s.kind, kind, text);
    assert.equal(formatSelector(s), canonical, text);
  }
});

test("a selector that is none of the forms is refused naming the field", () => {
  refused(() => parseSelector("to", "Web Server"), "to", /is neither a context name, KEY=VALUE/);
  refused(() => parseSelector("from", ""), "from", /selector is required/);
  refused(
    () => parseSelector("from", "10.0.0.1/8"),
    "from",
    /host bits set \(the network is 10\.0\.0\.0\/8\)/,
  );
  refused(() => parseSelector("from", "10.0.0.0/33"), "from", /invalid prefix/);
  refused(() => parseSelector("to", "network:Bad!"), "to", /may only contain/);
  refused(() => parseSelector("to", "app=a,app=b"), "to", /given twice/);
  refused(() => parseSelector("to", "app=a,=b"), "to", /not KEY=VALUE/);
  refused(() => parseSelector("to", "-app=x"), "to", /start and end with a letter or digit/);
  refused(() => parseSelector("to", `app=${"v".repeat(64)}`), "to", /longer than 63/);
});

test("ports: TCP by default, ranges up to 1024 ports, 1-65535 only", () => {
  assert.deepEqual(parsePortArg("port", "80"), { proto: "tcp", port: 80 });
  assert.deepEqual(parsePortArg("port", 53), { proto: "tcp", port: 53 });
  assert.deepEqual(parsePortArg("port", "53/UDP"), { proto: "udp", port: 53 });
  assert.deepEqual(parsePortArg("port", "8000-8100/tcp"), { proto: "tcp", port: 8000, end: 8100 });
  assert.deepEqual(parsePortArg("port", "7-7"), { proto: "tcp", port: 7 });
  assert.deepEqual(parsePortArg("port", "1-1024"), { proto: "tcp", port: 1, end: 1024 });
  refused(() => parsePortArg("port", "0"), "port", /port 0 is outside 1-65535/);
  refused(() => parsePortArg("port", "70000"), "port", /port 70000 is outside 1-65535/);
  refused(() => parsePortArg("port", "1-1025"), "port", /holds 1025 ports; at most 1024/);
  refused(() => parsePortArg("port", "90-80"), "port", /ends before it starts/);
  refused(() => parsePortArg("port", "80/sctp"), "port", /protocol "sctp" is not tcp or udp/);
  refused(() => parsePortArg("port", "http"), "port", /is not N, N-M/);
});

test("a policy record names the field of its bad part", () => {
  refused(
    () => policyRecordOf({ name: "p", to: "db", from: "web", ports: ["80", "0"] }, "policies[3]."),
    "policies[3].ports[1]",
    /port 0/,
  );
  refused(() => policyRecordOf({ name: "Bad Name", to: "db", from: "web" }), "name", /may only contain/);
  assert.deepEqual(policyRecordOf({ name: "p", to: "10.1.0.0/16", from: "web", egress: true }), {
    name: "p",
    to: "10.1.0.0/16",
    from: "web",
    ports: [],
    egress: true,
  });
});

test("netctx's own marks are reserved: the scene, the CNI owner marks and the pod labels", () => {
  for (const key of [
    SCENE_LABEL,
    LABEL_CONTAINER,
    LABEL_IFNAME,
    LABEL_CONFIG,
    ...Object.values(K8S_LABELS),
  ]) {
    assert.ok(isReservedLabel(key), key);
    refused(() => checkUserLabels("label", { [key]: "x" }), "label", /is netctx's own/);
  }
  assert.ok(!isReservedLabel("app"));
  // A 64-hex container id is longer than a label value may be: marks are held to a bound, not to label syntax.
  checkRecordedLabels("labels", { [LABEL_CONTAINER]: "a".repeat(64), app: "web" });
  refused(() => checkRecordedLabels("labels", { app: "a".repeat(64) }), "labels", /longer than 63/);
});

test("--label KEY=VALUE: Kubernetes syntax, a key once", () => {
  assert.deepEqual(labelsFromArgs("label", ["app=web", "example.com/tier=front", "empty="]), {
    app: "web",
    "example.com/tier": "front",
    empty: "",
  });
  refused(() => labelsFromArgs("label", ["app"]), "label", /is not KEY=VALUE/);
  refused(() => labelsFromArgs("label", ["app=a", "app=b"]), "label", /given twice/);
  refused(() => labelsFromArgs("label", ["a b=c"]), "label", /may only contain/);
  refused(() => labelsFromArgs("label", ["Ex_ample/x=y"]), "label", /invalid prefix/);
  refused(() => labelsFromArgs("label", ["app=no spaces"]), "label", /may only contain/);
});
