/**
 * Which store made a kernel object (issue 17: a store owns only what it marked). Every store directory holds a random
 * id, written once when the store is first opened and never changed; netctx writes it on what it makes (a link's
 * alias, a context netns's loopback alias, a cgroup's xattr), so gc, repair and failure cleanup can leave another
 * store's objects alone, and name that store's directory where the mark carries it.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NetctxError } from "../errors.ts";

const FILE = "store-id";
const ID = /^[0-9a-f]{16}$/;

/** The store's id, made on first use. Two processes making it at once: the file's first writer wins for both. */
export function storeIdOf(dir: string): string {
  const path = join(dir, FILE);
  const read = () => readFileSync(path, "utf8").trim();
  try {
    writeFileSync(path, `${randomBytes(8).toString("hex")}\n`, { flag: "wx", mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const id = read();
  if (!ID.test(id))
    throw new NetctxError("internal", `state store at ${dir}: ${FILE} holds no store id ("${id}")`);
  return id;
}
