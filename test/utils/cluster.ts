/** The test cluster harness (hosts on an underlay bridge, etcd, an engine per host) lives beside the bench, which uses it too. */
export * from "../../bench/cluster-hosts.ts";
