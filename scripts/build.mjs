// Bundle the CLI into dist/ so a command starts in node's own time instead of paying for a TypeScript loader
// on every run (~0.15 s instead of ~0.5 s). Native modules (koffi, better-sqlite3) stay in node_modules.
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";
import { build } from "esbuild";

const common = {
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  // Pure-JS dependencies go into the bundle (one file loads faster than hundreds); native ones cannot.
  // etcd3 loads its .proto files from beside its own sources (__dirname): it stays in node_modules too.
  external: ["koffi", "better-sqlite3", "etcd3"],
  sourcemap: "linked",
  // Bundled CommonJS dependencies (commander) require node builtins; ESM output needs a require to give them.
  banner: {
    js: 'import { createRequire as __netctxRequire } from "node:module"; const require = __netctxRequire(import.meta.url);',
  },
  logLevel: "warning",
};

/**
 * Write a build's files by rename, chunks before entries: tests and runtimes may be starting the previous build at
 * this moment, and a half-written bundle would fail them with a syntax error.
 */
async function bundle(options) {
  const result = await build({ ...options, write: false });
  const entriesLast = [...result.outputFiles].sort(
    (a, b) => Number(!/\/run-/.test(a.path)) - Number(!/\/run-/.test(b.path)),
  );
  for (const file of entriesLast) {
    mkdirSync(dirname(file.path), { recursive: true });
    const tmp = `${file.path}.tmp-${process.pid}`;
    writeFileSync(tmp, file.contents);
    renameSync(tmp, file.path);
  }
  return result;
}

await bundle({ ...common, entryPoints: { netctx: "src/cli/main.ts" } });
// The fast client bin/netctx tries first (src/cli/fast-path.ts): create, rm, ls, inspect through a running engine
// and --version, in about node's own start time. Node built-ins only: a package in it (commander alone costs ~10 ms
// of a ~65 ms budget) is refused here, and its input list lets bin/netctx tell whether it is older than a source.
// CommonJS, as bin/netctx is: required without starting node's ESM loader (~9% of a node start).
const fast = await bundle({
  ...common,
  entryPoints: { "netctx-fast": "src/cli/fast-path.ts" },
  format: "cjs",
  outExtension: { ".js": ".cjs" },
  external: [],
  define: { "import.meta.url": "__netctxModuleUrl" },
  banner: { js: 'const __netctxModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
  metafile: true,
});
const fastInputs = Object.keys(fast.metafile.inputs);
const packages = fastInputs.filter((f) => f.includes("node_modules/"));
if (packages.length) {
  const named = packages.slice(0, 3).join(", ") + (packages.length > 3 ? ` and ${packages.length - 3} more` : "");
  console.error(`build: the fast client (src/cli/fast-path.ts) must not bundle packages: ${named}`);
  process.exit(1);
}
writeFileSync(`dist/netctx-fast.inputs.json.tmp-${process.pid}`, `${JSON.stringify(fastInputs, null, 2)}\n`);
renameSync(`dist/netctx-fast.inputs.json.tmp-${process.pid}`, "dist/netctx-fast.inputs.json");
// The DNS server's worker thread (src/dns/service.ts starts it from beside the CLI's bundle).
await bundle({ ...common, entryPoints: { "netctx-dns": "src/dns/worker.ts" } });
// The CNI plugin a container runtime execs per verb: its own entry with the engine in a lazily imported chunk, so
// VERSION (three calls per `podman run`) starts in node's own time (measured: 0.22 s -> 0.09-0.15 s).
await bundle({
  ...common,
  entryPoints: { "netctx-cni": "src/cni/entry.ts" },
  outdir: "dist/cni",
  splitting: true,
});
// Each build names its lazily imported chunk anew; drop the ones the fresh entry no longer imports.
const entry = readFileSync("dist/cni/netctx-cni.mjs", "utf8");
for (const f of readdirSync("dist/cni"))
  if (/^run-.*\.mjs(\.map)?$/.test(f) && !entry.includes(f.replace(/\.map$/, ""))) rmSync(`dist/cni/${f}`);

// The dashboard's page (serve --listen, src/api/dashboard.ts): one browser bundle with cytoscape inside, and the page
// and its styles beside it. Nothing is fetched from the internet when it runs.
await bundle({
  entryPoints: { dashboard: "web/dashboard/main.ts" },
  outdir: "dist/web",
  bundle: true,
  platform: "browser",
  target: "es2022",
  format: "esm",
  minify: true,
  logLevel: "warning",
});
for (const file of ["index.html", "dashboard.css"]) {
  const tmp = `dist/web/${file}.tmp-${process.pid}`;
  copyFileSync(`web/dashboard/${file}`, tmp);
  renameSync(tmp, `dist/web/${file}`);
}

/**
 * Compile a C helper into dist/ when its source is newer. Compiled beside and renamed into place: a runtime may be
 * exec'ing the old one right now. Returns false when there is no C compiler.
 */
function compile(source, target, flags = []) {
  if (existsSync(target) && statSync(target).mtimeMs > statSync(source).mtimeMs) return true;
  const cc = ["cc", "gcc"].find((c) => spawnSync(c, ["--version"], { stdio: "ignore" }).status === 0);
  if (!cc) return false;
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}`;
  const r = spawnSync(cc, ["-O2", "-Wall", "-Wextra", ...flags, "-o", tmp, source], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
  renameSync(tmp, target);
  return true;
}

// The CNI client a runtime execs per verb while the engine runs (src/cni/client.c): plain C so that each call
// costs a fork+exec and not a Node start. Without a C compiler the launcher falls back to curl, then to node.
if (!compile("src/cni/client.c", "dist/cni/netctx-cni-client"))
  console.warn("build: no C compiler (cc/gcc): the CNI launcher will hand calls to the engine through curl");
// The exec sandbox (src/exec/netctx-enter.c): namespaces, mounts, capabilities, Landlock and seccomp set up between
// fork and exec, which node cannot do for a child. No fallback: without it `netctx exec` refuses to run.
if (!compile("src/exec/netctx-enter.c", "dist/netctx-enter"))
  console.warn(
    "build: no C compiler (cc/gcc): `netctx exec` and the audit need dist/netctx-enter and will refuse",
  );
// An l2 context's network namespace owned by a user namespace of its own (src/kernel/netns-owned.c), loaded through
// koffi. Without it the namespace is the host user namespace's, and `netctx exec` withholds CAP_NET_ADMIN there.
if (!compile("src/kernel/netns-owned.c", "dist/libnetctx-netns.so", ["-shared", "-fPIC"]))
  console.warn(
    "build: no C compiler (cc/gcc): `netctx exec` in an l2 context runs without CAP_NET_ADMIN (no user namespace of its own)",
  );
// The scan for a namespace's processes rm makes on every l2 context (src/kernel/netns-procs.c), loaded through
// koffi: a fifth of node's cost per task. Without it netns-procs.ts walks /proc in JavaScript.
if (!compile("src/kernel/netns-procs.c", "dist/libnetctx-procs.so", ["-shared", "-fPIC"]))
  console.warn(
    "build: no C compiler (cc/gcc): rm finds a namespace's processes the slower way, in JavaScript",
  );
