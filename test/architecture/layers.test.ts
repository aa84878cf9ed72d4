/**
 * The layers of src/ point down only (issue 16): every import, type imports and re-exports included, goes to the
 * same layer or a lower one, and no files import each other in a circle. Read from the source text, so a new
 * file lands in a layer by its folder and the test names the import that breaks the order.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";

const SRC = resolve(import.meta.dirname, "..", "..", "src");

/**
 * Lowest first. The Host carries the store, the netlink socket and the firewall, and the firewall's parts take the
 * Host: they share a layer until the firewall owns its tables behind one interface.
 */
const LAYERS: readonly (readonly string[])[] = [
  [
    "errors.ts",
    "pause.ts",
    "config.ts",
    "text-table.ts",
    "package-root.ts",
    "sleep-sync.ts",
    "sandbox.ts",
    "net",
  ],
  ["kernel"],
  ["model", "state", "cluster", "dns"],
  ["firewall", "host.ts"],
  ["networks"],
  ["levels"],
  ["engine"],
  ["api", "cni", "audit", "demo", "exec"],
  ["cli"],
];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

function layerOf(file: string): number {
  const top = relative(SRC, file).split("/")[0]!;
  const layer = LAYERS.findIndex((names) => names.includes(top));
  assert.ok(layer >= 0, `${relative(SRC, file)} is in no layer: add its folder to LAYERS`);
  return layer;
}

/** Relative imports and re-exports of a file, resolved to paths (`import type` and `export ... from` too). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+"(\.{1,2}\/[^"]+)"/gms))
    out.push(resolve(dirname(file), m[1]!));
  return out;
}

const files = sources(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test("every import in src/ points to the same layer or a lower one", () => {
  const upward: string[] = [];
  for (const [file, targets] of graph)
    for (const target of targets)
      if (layerOf(target) > layerOf(file)) upward.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
  assert.deepEqual(upward, []);
});

test("no files in src/ import each other in a circle", () => {
  const state = new Map<string, "open" | "done">();
  const circles: string[] = [];
  const visit = (file: string, path: string[]): void => {
    state.set(file, "open");
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === "open")
        circles.push([...path.slice(path.indexOf(target)), target].map((f) => relative(SRC, f)).join(" -> "));
      else if (!state.has(target)) visit(target, [...path, target]);
    }
    state.set(file, "done");
  };
  for (const file of files) if (!state.has(file)) visit(file, [file]);
  assert.deepEqual(circles, []);
});

/**
 * Settings come from the environment only where a process enters netctx: the CLI (serve included) and the CNI
 * plugin's entry build the Config (config.ts) there, and everything below takes it from the Host or a parameter.
 */
const ENV_READERS = (file: string) => file.startsWith("cli/") || file === "cni/entry.ts";

/** Files that name process.env outside a comment (a `//` line or a JSDoc/block comment line). */
function envReaders(): string[] {
  return files
    .map((f) => relative(SRC, f))
    .filter((rel) =>
      readFileSync(join(SRC, rel), "utf8")
        .split("\n")
        .some((line) => !/^\s*(\/\/|\*|\/\*)/.test(line) && /\bprocess\.env\b/.test(line)),
    );
}

test("nothing below cli/ reads process.env", () => {
  assert.deepEqual(
    envReaders().filter((rel) => !ENV_READERS(rel)),
    [],
  );
});

test("the import reader sees type imports, re-exports and multi-line imports", () => {
  const store = join(SRC, "state", "store.ts");
  const seen = importsOf(store).map((f) => relative(SRC, f));
  assert.ok(seen.includes("state/ipam.ts"), "store.ts's multi-part import of ipam.ts");
  const driver = importsOf(join(SRC, "networks", "driver.ts")).map((f) => relative(SRC, f));
  assert.ok(driver.includes("model/attachment.ts"), "networks/driver.ts's type import");
  assert.ok(driver.includes("host.ts"));
});

/**
 * What differs between network drivers or between levels lives in the driver, behind its interface
 * (networks/driver.ts, levels/driver.ts): no code compares a record's driver or level with a name, switches on one
 * or looks one up in a set of names. Adding a driver is then one file and a line in its registry.
 */
const NAME_COMPARISONS: readonly RegExp[] = [
  /\b(driver|level)\s*[!=]==?\s*["'`]/,
  /["'`]\s*[!=]==?\s*[\w.?]*\b(driver|level)\b/,
  /\bswitch\s*\([^)]*\b(driver|level)\s*\)/,
  /\.has\(\s*[\w.?]*\b(driver|level)\s*\)/,
];

function nameComparisons(sources: readonly string[]): string[] {
  return sources.flatMap((file) =>
    readFileSync(file, "utf8")
      .split("\n")
      .flatMap((line, i) =>
        !/^\s*(\/\/|\*|\/\*)/.test(line) && NAME_COMPARISONS.some((re) => re.test(line))
          ? [`${relative(SRC, file)}:${i + 1}: ${line.trim()}`]
          : [],
      ),
  );
}

test("no driver or level name is compared outside its driver", () => {
  assert.deepEqual(nameComparisons(files), []);
});

test("the name check sees the comparisons gc made before drivers declared what they own", () => {
  const probe = join(tmpdir(), `netctx-names-${process.pid}.ts`);
  writeFileSync(
    probe,
    [
      'if (net.driver === "bridge") relink();',
      'const shared = record.level !== "l2";',
      "if (BRIDGED.has(n.driver)) ifaces.add(n);",
      "switch (c.level) {}",
      '// a comment may say net.driver === "bridge"',
    ].join("\n"),
  );
  try {
    assert.equal(nameComparisons([probe]).length, 4);
  } finally {
    rmSync(probe);
  }
});
