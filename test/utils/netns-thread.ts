/**
 * A host process (python3) with a second thread in a network namespace, as setns() puts one there: "stay" enters
 * and stays, "visit" hops in for 1-3 ms and out for 3-7 ms over and over (a setns window, as netctx's engine reads
 * a namespace), "out" never enters. inside() resolves once the thread has been in (for "out": once it runs).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { waitFor } from "./wait.ts";

export type ThreadMode = "stay" | "visit" | "out";

export function netnsThread(netns: string, mode: ThreadMode): ChildProcess {
  const script = `
import ctypes, os, random, threading, time
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
there = os.open(${JSON.stringify(netns)}, os.O_RDONLY)
mode = ${JSON.stringify(mode)}
def worker():
    if mode != "out":
        assert libc.setns(there, 0x40000000) == 0
    print("in", flush=True)
    while mode == "visit":
        time.sleep(random.uniform(0.001, 0.003))
        assert libc.setns(home, 0x40000000) == 0
        time.sleep(random.uniform(0.003, 0.007))
        assert libc.setns(there, 0x40000000) == 0
    time.sleep(60)
threading.Thread(target=worker, daemon=True).start()
time.sleep(60)
`;
  return spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
}

export async function inside(child: ChildProcess): Promise<void> {
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await waitFor(() => out.includes("in"), 5000);
}
