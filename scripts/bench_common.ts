/**
 * What the benchmark sections share (scripts/bench.ts and its bench_*.ts
 * sections): the paths of the programs compared, the options, tagged bench
 * messages, the bare client and relay scripts of the floors, and small
 * helpers for files and progress lines. Timing a command and measuring
 * cases round-robin is in scripts/bench_run.ts.
 *
 * @module
 */

import { run } from "../tests/e2e/_bed.ts";
import { SSH_PATH } from "../lib/shared/layout.ts";
import { parseArgs } from "node:util";
import { parseClientArgs } from "../lib/client/client_args.ts";
import { splitClientArgv } from "../lib/client/split_client_argv.ts";
import { sshArgv } from "../lib/client/ssh_command.ts";
import type { MailGroup } from "./bench_delivery.ts";
import type { Goal } from "./bench_report.ts";

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const DIST_RSENDMAIL = `${ROOT}/dist/rsendmail`;
export const DIST_SSHSENDMAIL = `${ROOT}/dist/sshsendmail`;
export const UP_RSENDMAIL = "/usr/bin/rsendmail";
export const UP_SSHSENDMAIL = "/usr/bin/sshsendmail";
export const SENDMAIL = "/usr/sbin/sendmail";
export const BENCH_USER = "rsmbench";
export const SENDER = "a@relay.test";
export const LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin";

export const TIME = "/usr/bin/time";
export const SETPRIV = "/usr/bin/setpriv";
/** The relay account of tests/e2e/_bed.ts's sshd (its forced commands run as it). */
export const RELAY_USER = "rsmrelay";

/** The options of every section (scripts/bench.ts documents them). */
export interface Options {
  /** Measured rounds of the round-robin sections (relay side, end to end). */
  runs: number;
  warmup: number;
  build: boolean;
  writeDocs: boolean;
  quick: boolean;
  only: string | undefined;
  /** Messages per `-bs` session and sessions per mode (SMTP section). */
  smtpN: number;
  smtpRuns: number;
  /** Messages per batch and interleaved rounds (batch section). */
  batchN: number;
  batchRounds: number;
  /** Service section: measured rounds of S1, warm messages of S2, burst per user. */
  serviceRuns: number;
  serviceWarmup: number;
  latencyN: number;
  coldEvery: number;
  perUser: number;
  /** Messages of the memory section. */
  rssN: number;
}

/** Full-run defaults, then what `--quick` changes. */
export const DEFAULTS: Omit<Options, "build" | "writeDocs" | "quick" | "only"> = {
  runs: 15,
  warmup: 2,
  smtpN: 100,
  smtpRuns: 3,
  batchN: 500,
  batchRounds: 3,
  serviceRuns: 50,
  serviceWarmup: 3,
  latencyN: 100,
  coldEvery: 5,
  perUser: 100,
  rssN: 5000,
};
export const QUICK: Partial<Options> = {
  runs: 5,
  warmup: 1,
  smtpN: 30,
  smtpRuns: 1,
  batchN: 100,
  batchRounds: 1,
  serviceRuns: 10,
  serviceWarmup: 1,
  latencyN: 20,
  perUser: 20,
  rssN: 1000,
};

/** What a section hands back to bench.ts. */
export interface SectionResult {
  /** Its `--only` name. */
  key: string;
  /** Markdown, starting with its `## N. …` heading. */
  text: string;
  /** Its tagged messages, for the one delivery check at the end. */
  groups: MailGroup[];
  goals: Goal[];
  findings: string[];
}

/** A section's tag for message `i` of case `id`: `<run> <section>.<id> <i>`. */
export function tagOf(runId: string, section: string, id: string, i: number): string {
  return `${runId} ${section}.${id} ${i}`;
}

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A message of about `size` bytes, tagged so its delivery can be counted. */
export function makeMessage(size: number, tag: string, recipient: string): Uint8Array {
  const head = [
    `From: Bench <${SENDER}>`,
    `To: ${recipient}`,
    `Subject: rsendmail bench ${tag}`,
    `Message-ID: <${tag.replaceAll(" ", ".")}@bench.relay.test>`,
    `X-Rsm-Bench: ${tag}`,
    "",
    "",
  ].join("\n");
  const line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopq\n";
  const body = line.repeat(Math.max(1, Math.ceil((size - head.length) / line.length)));
  return encoder.encode(head + body);
}

export async function denoVersion(deno: string): Promise<string> {
  const out = await run(deno, ["--version"]);
  return out.stdout.split("\n")[0] ?? "deno ?";
}

export async function cpuModel(): Promise<string> {
  // Deno wants --allow-all to read /proc files: ask cat.
  const text = (await run("/bin/cat", ["/proc/cpuinfo"], { check: false })).stdout;
  return /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? "unknown CPU";
}

export async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: LOGIN_PATH, LANG: "C", HOME: "/root", USER: "root", LOGNAME: "root", ...extra };
}

export async function progress(text: string): Promise<void> {
  if (Deno.stderr.isTerminal()) await Deno.stderr.write(encoder.encode(`\r${text}   `));
}

/** Ends a progress line with `text` (always shown: the log of a non-interactive run). */
export async function done(text: string): Promise<void> {
  await Deno.stderr.write(encoder.encode(`${Deno.stderr.isTerminal() ? "\n" : ""}${text}\n`));
}

/** The first line of a script: its `#!/usr/bin/env -S … deno run …` shebang. */
export async function shebangOf(path: string): Promise<string> {
  return (await Deno.readTextFile(path)).split("\n", 1)[0]!;
}

/** The bare wrapper: spawns sendmail with ours' argv on inherited stdio, exits with its code. */
export function sendmailWrapperCode(rcpt: string): string {
  const argv = JSON.stringify(["-oi", "-f", SENDER, "--", rcpt]);
  return [
    `const c = new Deno.Command(${JSON.stringify(SENDMAIL)}, { args: ${argv}, ` +
    `stdin: "inherit", stdout: "inherit", stderr: "inherit" }).spawn();`,
    "Deno.exit((await c.status).code);",
    "",
  ].join("\n");
}

/**
 * The wrapper that reads the message first: the whole message from stdin
 * into memory, then the same sendmail with it on a pipe and its stderr
 * kept (both Web streams in Deno), as any relay must that checks a message
 * before sendmail gets a byte of it. No check is made: only the reading
 * and the pipes are paid.
 */
export function readFirstWrapperCode(rcpt: string): string {
  const argv = JSON.stringify(["-oi", "-f", SENDER, "--", rcpt]);
  return [
    "let buf = new Uint8Array(65536), held = 0, n;",
    "while ((n = await Deno.stdin.read(buf.subarray(held))) !== null) {",
    "  held += n;",
    "  if (held === buf.length) { const b = new Uint8Array(buf.length * 2); b.set(buf); buf = b; }",
    "}",
    `const c = new Deno.Command(${JSON.stringify(SENDMAIL)}, { args: ${argv}, ` +
    `stdin: "piped", stdout: "null", stderr: "piped" }).spawn();`,
    "const w = c.stdin.getWriter();",
    "await w.write(buf.subarray(0, held));",
    "await w.close();",
    "for await (const _ of c.stderr);",
    "Deno.exit((await c.status).code);",
    "",
  ].join("\n");
}

/**
 * The bare client of the design floor: spawns ssh on inherited stdio and
 * exits with ssh's code. It parses nothing, and loads no node:util:
 * sshsendmail reads these plain options without it (plain_own_values.ts).
 * The ssh argv is sshsendmail's own (sshArgv of the same options), worked
 * out here, so the floor cannot drift from the client.
 */
export function clientWrapperCode(flags: string[]): string {
  const { settings } = parseClientArgs(
    splitClientArgv([...flags, "--", "floor"], "sendmail"),
    parseArgs,
  );
  const [ssh, ...args] = sshArgv(SSH_PATH, settings, settings.hosts[0]!, "rsendmail");
  return [
    `const c = new Deno.Command(${JSON.stringify(ssh)}, { args: ${JSON.stringify(args)}, ` +
    'stdin: "inherit", stdout: "inherit", stderr: "inherit" }).spawn();',
    "Deno.exit((await c.status).code);",
    "",
  ].join("\n");
}

/** Writes an executable script readable by every account. */
export async function writeScript(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o755 });
  await Deno.chmod(path, 0o755);
}

/**
 * `entry` bundled as `deno task build` does but without its eager step
 * (scripts/eager_functions.ts), under `shebang`, at `path`: what the step
 * saves is ours minus this.
 */
export async function lazyBundle(entry: string, shebang: string, path: string): Promise<string> {
  await run(Deno.execPath(), ["bundle", "-q", "--platform=deno", "-o", `${path}.js`, entry]);
  await writeScript(path, `${shebang}\n${await Deno.readTextFile(`${path}.js`)}`);
  await Deno.remove(`${path}.js`);
  return path;
}

/** `/usr/bin/time -f %M -o FILE`: the last line is the peak RSS in KiB. */
export async function readRssKiB(file: string): Promise<number> {
  const text = await Deno.readTextFile(file).catch(() => "");
  const last = text.trim().split("\n").pop() ?? "";
  return /^\d+$/.test(last) ? Number(last) : NaN;
}

export async function countFiles(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile) n++;
  } catch { /* missing: 0 */ }
  return n;
}
