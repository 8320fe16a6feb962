#!/usr/bin/env node
// The cipherpost command-line client. Node 20 does not run TypeScript, so this starts src/cli/main.ts
// through tsx's loader (a dependency), in this same process.
import { register } from "tsx/esm/api";

register();
await import(new URL("../src/cli/main.ts", import.meta.url).href);
