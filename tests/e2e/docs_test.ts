/**
 * The reference cannot drift: the Markdown pages in docs/ are exactly what
 * docs/manual.ts (the man pages' one source) renders to.
 *
 * @module
 */

import { strictEqual } from "node:assert/strict";
import { PAGES } from "../../docs/manual.ts";
import { markdownPath, renderMarkdown } from "../../scripts/docs.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("docs/*.8.md are the man pages' one source, rendered (deno task docs)", async () => {
  for (const page of PAGES) {
    const tracked = await Deno.readTextFile(`${ROOT}${markdownPath(page)}`);
    strictEqual(
      tracked,
      renderMarkdown(page),
      `${markdownPath(page)} is stale: run deno task docs`,
    );
  }
});
