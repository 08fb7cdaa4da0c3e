/**
 * The satellite recipes exactly as README.md prints them ("Recipes
 * (satellite side)"), read from its fenced blocks, so that the end-to-end
 * tests run those very lines: the Postfix `master.cf` pipe service with its
 * `main.cf` settings, and the nullmailer module symlink and `remotes` line.
 * A test substitutes only the absolute paths (and adds what a private relay
 * needs, such as its port).
 *
 * @module
 */

import { ROOT } from "./_bed.ts";

const README = `${ROOT}/README.md`;

/** The text of one `###` section of README.md (up to the next heading). */
async function section(title: string): Promise<string> {
  const text = await Deno.readTextFile(README);
  const start = text.indexOf(`\n### ${title}\n`);
  if (start < 0) throw new Error(`README.md has no section "### ${title}"`);
  const rest = text.slice(start + 1);
  const end = rest.slice(4).search(/\n#{2,3} /);
  return end < 0 ? rest : rest.slice(0, end + 4);
}

/** The fenced code blocks of a section (their lines, without the fences). */
function blocks(text: string): string[][] {
  return [...text.matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)].map((m) =>
    m[1]!.replace(/\n$/, "").split("\n")
  );
}

/** README's Postfix recipe. */
export interface PipeRecipe {
  /** The master.cf lines (service line and its indented `argv=` continuation). */
  master: string[];
  /** The service name (first word of the master.cf line). */
  service: string;
  /** main.cf `default_transport` as the prose gives it. */
  defaultTransport: string;
  /** main.cf `relayhost` as the prose gives it (`USER@HOST`). */
  relayhost: string;
}

/** Reads "### Postfix `pipe(8)` transport". */
export async function pipeRecipe(): Promise<PipeRecipe> {
  const text = await section("Postfix `pipe(8)` transport");
  const master = blocks(text)[0];
  if (!master || master.length < 2) throw new Error("README: no master.cf block");
  const service = master[0]!.split(/\s+/)[0]!;
  const defaultTransport = /`default_transport = (\S+)`/.exec(text)?.[1];
  const relayhost = /`relayhost = (\S+)`/.exec(text)?.[1];
  if (!defaultTransport || !relayhost) throw new Error("README: no main.cf settings");
  return { master, service, defaultTransport, relayhost };
}

/** README's nullmailer recipe. */
export interface NullmailerRecipe {
  /** `ln -s TARGET LINK`: the module symlink. */
  link: { target: string; path: string };
  /** The line echoed into /etc/nullmailer/remotes. */
  remotes: string;
}

/** Reads "### nullmailer 2.x". */
export async function nullmailerRecipe(): Promise<NullmailerRecipe> {
  const text = await section("nullmailer 2.x");
  const sh = blocks(text)[0] ?? [];
  const ln = sh.map((l) => /^ln -sf? (\S+) (\S+)$/.exec(l)).find((m) => m);
  const echo = sh.map((l) => /^echo '([^']+)' > \/etc\/nullmailer\/remotes$/.exec(l)).find((m) =>
    m
  );
  if (!ln || !echo) throw new Error(`README: nullmailer block not understood: ${sh.join("\n")}`);
  return { link: { target: ln[1]!, path: ln[2]! }, remotes: echo[1]! };
}

/**
 * Replaces each key of `paths` (an absolute path in a recipe) by its value;
 * throws if one does not occur, so a changed README fails loudly.
 */
export function substitute(lines: readonly string[], paths: Record<string, string>): string[] {
  let text = lines.join("\n");
  for (const [from, to] of Object.entries(paths)) {
    if (!text.includes(from)) throw new Error(`recipe lacks ${from}: ${text}`);
    text = text.replaceAll(from, to);
  }
  return text.split("\n");
}
