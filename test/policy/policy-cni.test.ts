/** CNI: the pod's namespace and name (CNI_ARGS) and the config's `labels` become the context's labels, which policies select. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { contextNameFor } from "../../src/cni/verbs.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { cni, cniOk } from "../utils/cni-runtime.ts";
import { addNetns, delNetns } from "../utils/netns.ts";

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "cnipol",
  type: "netctx",
  subnets: ["10.74.0.0/24"],
  ...extra,
});

interface ContextView {
  name: string;
  labels?: Record<string, string>;
}

const labelsOf = (name: string) => netctxJson<ContextView[]>("ls").find((c) => c.name === name)?.labels;

test("ADD: K8S_POD_NAMESPACE and K8S_POD_NAME become k8s.namespace and k8s.pod, the config's labels join them", () => {
  const ns = addNetns("podns1");
  try {
    cniOk("ADD", conf({ labels: { app: "web", "example.com/team": "a" } }), {
      id: "pod1",
      netns: ns,
      args: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d9f;K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=1234",
    });
    assert.deepEqual(labelsOf(contextNameFor("pod1", "eth0")), {
      app: "web",
      "example.com/team": "a",
      "k8s.namespace": "shop",
      "k8s.pod": "web-7d9f",
      "cni.containerId": "pod1",
      "cni.ifname": "eth0",
      "cni.config": "cnipol",
    });
    // A policy selects the pod by its namespace label as a NetworkPolicy's namespaceSelector would.
    netctxOk("policy", "add", "shop-in", "--to", "k8s.namespace=shop", "--from", "app=web");
    netctxOk("policy", "rm", "shop-in");
    cniOk("DEL", conf(), { id: "pod1", netns: ns });
  } finally {
    delNetns("podns1");
  }
});

test("ADD refuses netctx's own keys in the config's labels (code 7) and makes nothing", () => {
  const ns = addNetns("podns2");
  try {
    for (const [labels, message] of [
      [{ "cni.containerId": "forged" }, /labels: key "cni\.containerId" is netctx's own/],
      [{ "k8s.namespace": "kube-system" }, /labels: key "k8s\.namespace" is netctx's own/],
      [{ app: "not valid" }, /labels: value "not valid" of "app"/],
    ] as const) {
      const r = cni("ADD", conf({ labels }), { id: "pod2", netns: ns });
      assert.equal(r.code, 1, r.stdout);
      assert.equal(r.json?.code, 7);
      assert.match(String(r.json?.msg), message);
    }
    assert.equal(labelsOf(contextNameFor("pod2", "eth0")), undefined);
    assert.equal(
      netctxJson<ContextView[]>("ls").some((c) => c.name === contextNameFor("pod2", "eth0")),
      false,
    );
  } finally {
    delNetns("podns2");
  }
});
