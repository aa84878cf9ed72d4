/**
 * Waiting for the kernel or a process to get somewhere. `eventually` blocks (for synchronous tests: the kernel does
 * its work without our event loop); `waitFor` yields, for when what it waits on arrives through the event loop
 * (a child's output, a listener in this process).
 */

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wait until the kernel agrees: rm deletes a context's netns and the kernel removes its veth pair a moment later
 * (asynchronously, in its netns cleanup work). Returns the last value read, for the caller to assert on.
 */
export function eventually<T>(read: () => T, expected: T, timeoutMs = 5000): T {
  const deadline = Date.now() + timeoutMs;
  let value = read();
  while (JSON.stringify(value) !== JSON.stringify(expected) && Date.now() < deadline) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    value = read();
  }
  return value;
}

/** Poll `cond` every 20 ms until it holds or `timeoutMs` passed; the caller asserts on what it waited for. */
export async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await sleep(20);
}

/** `p`, or a rejection naming `what` once `ms` passed without it. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
