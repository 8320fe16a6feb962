// Types for scripts/build-web.mjs, so TypeScript tests can call the web build.
export declare const FIRST_LOAD_BUDGET_BYTES: number;
export declare function buildWeb(options?: {
  outdir?: string;
  minify?: boolean;
  log?: (line: string) => void;
}): Promise<{ outdir: string; firstLoadGzipBytes: number; firstLoadFiles: string[] }>;
