/**
 * `deno task build`: bundles server.ts and client.ts into dist/rsendmail and
 * dist/sshsendmail, single files whose shebang runs Deno by absolute path
 * with exactly the permission flags of scripts/permissions.ts, their
 * top-level functions made eager for Deno's code cache
 * (scripts/eager_functions.ts).
 *
 * `deno task compile` (this script with --compile): native executables in
 * dist/native/ via `deno compile` with the same flags. It needs the denort
 * runtime: a reachable download server, or DENORT_BIN naming a local copy.
 *
 * Environment: RSENDMAIL_DENO overrides the Deno path written into the
 * shebangs (default: the Deno running this script, symlinks resolved; where
 * that path makes the relay's line too long, `<out>/deno`, a symlink to it;
 * where even that is too long, the relay's tuning flags are left out with a
 * warning: they change its memory, never what it may do).
 * `--out DIR` writes the bundles to DIR instead of dist/ (debian/rules
 * builds the packaged copies, whose shebang names another Deno, there).
 *
 * @module
 */

import { parse } from "npm:acorn@8.19.0";
import { eagerFunctions } from "./eager_functions.ts";
import { PROGRAMS, RUN_FLAGS } from "./permissions.ts";

/** Makes `<out>/deno`; the build task grants it by this path. */
const LN = "/bin/ln";

/** Linux reads at most this many bytes of a `#!` line and silently cuts the rest. */
const MAX_SHEBANG = 255;
const UNSAFE_FOR_ENV_S_REGEXP = /[$\\'"#\s]/;

/** A launcher word: `-i`, or `NAME=${VAR}` (env -S expands the variable, nothing else). */
const LAUNCH_WORD_REGEXP = /^(-i|[A-Z][A-Z0-9_]*=\$\{[A-Z][A-Z0-9_]*\})$/;

/**
 * Builds the shebang line for one program, refusing one the kernel would
 * cut. `launch` words come first, for env itself (the relay's clean
 * environment).
 */
export function shebangFor(
  deno: string,
  flags: readonly string[],
  launch: readonly string[] = [],
  tuning: readonly string[] = [],
): string {
  // `deno FLAGS SCRIPT` is `deno run FLAGS SCRIPT` (Deno 2): without the
  // word, the relay's line has room for its tuning flag.
  const parts = [deno, ...RUN_FLAGS, ...tuning, ...flags];
  if (parts.some((p) => UNSAFE_FOR_ENV_S_REGEXP.test(p))) {
    throw new Error(`Cannot write a shebang: a part holds a character env -S would interpret`);
  }
  if (launch.some((w) => !LAUNCH_WORD_REGEXP.test(w))) {
    throw new Error(`Cannot write a shebang: a launcher word is not -i or NAME=\${VAR}`);
  }
  const line = `#!/usr/bin/env -S ${[...launch, ...parts].join(" ")}`;
  if (new TextEncoder().encode(line).length > MAX_SHEBANG) {
    throw new ShebangTooLong(
      `Cannot write a shebang of ${line.length} bytes (max ${MAX_SHEBANG}): set RSENDMAIL_DENO to a shorter path`,
    );
  }
  return line;
}

class ShebangTooLong extends Error {}

/** The first of these that fits (see the module doc); the last one's error if none does. */
export function fittingShebang(
  tries: readonly (readonly [deno: string, tuning: readonly string[]])[],
  flags: readonly string[],
  launch: readonly string[],
): { line: string; deno: string; tuning: readonly string[] } {
  let last: unknown;
  for (const [deno, tuning] of tries) {
    try {
      return { line: shebangFor(deno, flags, launch, tuning), deno, tuning };
    } catch (err) {
      if (!(err instanceof ShebangTooLong)) throw err;
      last = err;
    }
  }
  throw last;
}

/** acorn, the build's JavaScript parser: the bundle as an ES module. */
function parseModule(source: string) {
  return parse(source, { ecmaVersion: "latest", sourceType: "module" });
}

async function run(deno: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(deno, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`Cannot build: deno ${args[0]} exited ${out.code}`);
}

async function main(): Promise<void> {
  const deno = Deno.execPath();
  const compile = Deno.args.includes("--compile");
  const outAt = Deno.args.indexOf("--out");
  const out = outAt < 0 ? "dist" : Deno.args[outAt + 1];
  if (out === undefined || out === "") throw new Error("--out wants a directory");
  await Deno.mkdir(compile ? "dist/native" : out, { recursive: true });
  // A `<out>/deno` link of an earlier build goes; a shebang below may make it again.
  const link = `${await Deno.realPath(compile ? "dist/native" : out)}/deno`;
  if (!compile) await Deno.remove(link).catch(() => {});
  const given = Deno.env.get("RSENDMAIL_DENO");
  const real = given ?? await Deno.realPath(deno);
  let linked = false;
  for (const program of PROGRAMS) {
    if (compile) {
      await run(deno, [
        "compile",
        "--no-check",
        "--no-config",
        "--no-lock",
        ...program.tuning,
        ...program.flags,
        "-o",
        `dist/native/${program.name}`,
        program.entry,
      ]);
      continue;
    }
    const tmp = `${out}/.${program.name}.js`;
    await run(deno, ["bundle", "-q", "--platform=deno", "-o", tmp, program.entry]);
    const body = eagerFunctions(await Deno.readTextFile(tmp), parseModule);
    const tries = given !== undefined
      ? [[given, program.tuning], [given, []]] as const
      : [[real, program.tuning], [link, program.tuning], [link, []]] as const;
    const chosen = fittingShebang(tries, program.flags, program.launch);
    if (chosen.deno === link && !linked) {
      // ln(1): Deno grants symlink() only with unscoped -R and -W.
      const ln = await new Deno.Command(LN, { args: ["-s", "--", real, link] }).output();
      if (!ln.success) throw new Error(`Cannot build: ln -s ${real} ${link} failed`);
      linked = true;
    }
    if (chosen.tuning.length < program.tuning.length) {
      console.error(
        `warning: ${out}/${program.name} without ${program.tuning.join(" ")}: ` +
          "its shebang would pass 255 bytes here (set RSENDMAIL_DENO to a shorter path)",
      );
    }
    await Deno.writeTextFile(`${out}/${program.name}`, `${chosen.line}\n${body}`, {
      mode: 0o755,
    });
    await Deno.chmod(`${out}/${program.name}`, 0o755);
    await Deno.remove(tmp);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    if (Deno.args.includes("--compile")) {
      console.error(
        "deno compile needs the denort runtime of this Deno version: a reachable dl.deno.land, or DENORT_BIN=/path/to/denort",
      );
    }
    Deno.exit(1);
  }
}
