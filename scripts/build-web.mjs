// Builds the web app (src/web) into dist/web with esbuild: the page's modules (code-split), the setup worker, the
// service worker and the static files. Prints the gzipped size of the JavaScript the first page load fetches and
// fails when it is over the 250 KB budget (docs/performance.md). `node scripts/build-web.mjs`, or import buildWeb.
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const ROOT = new URL("../", import.meta.url).pathname;
export const FIRST_LOAD_BUDGET_BYTES = 250 * 1024;

/**
 * Builds into `outdir` (default dist/web). Answers the first-load JavaScript's gzipped size and the output files.
 * Throws when the first load is over budget.
 */
export async function buildWeb({ outdir: finalDir = join(ROOT, "dist/web"), minify = true, log = console.log } = {}) {
  const started = performance.now();
  // Built beside the target and swapped in at the end, so a relay serving the old build (several test files
  // build and serve at once) never sees a half-written directory.
  const outdir = `${finalDir}.build-${process.pid}-${Math.random().toString(36).slice(2)}`;
  mkdirSync(outdir, { recursive: true });
  cpSync(join(ROOT, "src/web/static"), outdir, { recursive: true });

  const common = {
    absWorkingDir: ROOT,
    bundle: true,
    minify,
    sourcemap: "linked",
    target: "es2022",
    platform: "browser",
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
    logLevel: "warning",
  };
  // The page and the setup worker share chunks (the SDK) as ES modules; the worker loads as a module worker.
  const app = await esbuild.build({
    ...common,
    entryPoints: { app: "src/web/main.tsx", "setup-worker": "src/web/setup-worker.ts" },
    outdir,
    format: "esm",
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    metafile: true,
  });

  // Username links are https://HOST/u#<handle>.<key>: the same page at /u (assets serve u.html there).
  copyFileSync(join(outdir, "index.html"), join(outdir, "u.html"));

  const firstLoad = firstLoadFiles(app.metafile, join(outdir, "app.js"));
  const gzip = firstLoad.reduce((n, f) => n + gzipSync(readFileSync(f), { level: 9 }).length, 0);

  // The service worker: a classic script, told which files make the app shell and a version that changes with them.
  const shell = listFiles(outdir).filter((f) => !f.endsWith(".map") && !f.endsWith("_headers"));
  const version = createHash("sha256");
  for (const f of shell) version.update(f).update(readFileSync(join(outdir, f)));
  await esbuild.build({
    ...common,
    entryPoints: ["src/web/sw.ts"],
    outfile: join(outdir, "sw.js"),
    format: "iife",
    define: {
      SHELL_FILES: JSON.stringify(["./", ...shell.filter((f) => f !== "index.html")]),
      SHELL_VERSION: JSON.stringify(version.digest("hex").slice(0, 16)),
    },
  });

  const old = `${outdir}.old`;
  if (existsSync(finalDir)) renameSync(finalDir, old);
  renameSync(outdir, finalDir);
  rmSync(old, { recursive: true, force: true });

  const ms = Math.round(performance.now() - started);
  log(
    `web app built into ${relative(ROOT, finalDir) || "."} in ${ms} ms; first-load JavaScript ${(gzip / 1024).toFixed(1)} KB gzipped` +
      ` (${firstLoad.length} files; budget ${FIRST_LOAD_BUDGET_BYTES / 1024} KB)`,
  );
  if (gzip > FIRST_LOAD_BUDGET_BYTES)
    throw new Error(`first-load JavaScript is ${gzip} bytes gzipped, over the ${FIRST_LOAD_BUDGET_BYTES}-byte budget`);
  return { outdir: finalDir, firstLoadGzipBytes: gzip, firstLoadFiles: firstLoad.map((f) => relative(outdir, f)) };
}

/** The entry file and every chunk it imports statically, transitively: what the first page load fetches. */
function firstLoadFiles(metafile, entry) {
  const outputs = Object.fromEntries(Object.entries(metafile.outputs).map(([k, v]) => [join(ROOT, k), v]));
  const seen = new Set();
  const visit = (file) => {
    if (seen.has(file) || !outputs[file]) return;
    seen.add(file);
    for (const imp of outputs[file].imports) if (imp.kind === "import-statement") visit(join(ROOT, imp.path));
  };
  visit(entry);
  return [...seen];
}

function listFiles(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    return statSync(full).isDirectory() ? listFiles(full, base) : [relative(base, full)];
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildWeb().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
