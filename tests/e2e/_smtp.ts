/**
 * Helpers for the `-bs` and local-mail end-to-end tests: an SMTP dialogue
 * fed to `sendmail -bs` all at once (pipelined) with its replies parsed, a
 * delivered message from a marker on, and a satellite environment for the
 * client.
 *
 * @module
 */

import { indexOfBytes, run, type RunResult } from "./_bed.ts";
import type { Standalone } from "./_standalone.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** PATH for the programs the tests start. */
export const PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/** Environment of a sending program: its own HOME and the client's config. */
export function envFor(s: Standalone, conf: string): Record<string, string> {
  return { HOME: s.dir, SSHSENDMAIL_CONFIG: conf, PATH, LANG: "C.UTF-8", LC_ALL: "C.UTF-8" };
}

/** One SMTP reply: its code and every line's text (after `NNN-` / `NNN `). */
export interface Reply {
  code: number;
  lines: string[];
}

/**
 * Splits server output into replies. Throws on a line that is not
 * `NNN-text` / `NNN text` or that does not end in CRLF.
 */
export function parseReplies(out: string): Reply[] {
  const replies: Reply[] = [];
  let current: Reply | undefined;
  if (out !== "" && !out.endsWith("\r\n")) throw new Error(`output not CRLF-terminated: ${out}`);
  for (const line of out.split("\r\n").slice(0, -1)) {
    const m = /^([2-5][0-9][0-9])([ -])(.*)$/.exec(line);
    if (!m) throw new Error(`not an SMTP reply line: ${JSON.stringify(line)}`);
    const code = Number(m[1]);
    if (current === undefined) current = { code, lines: [] };
    else if (current.code !== code) throw new Error(`code changes inside a reply: ${line}`);
    current.lines.push(m[3]!);
    if (m[2] === " ") {
      replies.push(current);
      current = undefined;
    }
  }
  if (current !== undefined) throw new Error(`unterminated reply: ${current.lines.join("|")}`);
  return replies;
}

/** Result of a whole `-bs` session. */
export interface SessionResult extends RunResult {
  replies: Reply[];
}

/**
 * Runs `argv` (e.g. `[sendmail, "-bs"]`) with the whole dialogue on stdin at
 * once (every command pipelined), waits for the exit and parses stdout.
 */
export async function smtpSession(
  argv: string[],
  input: string | Uint8Array,
  env: Record<string, string>,
): Promise<SessionResult> {
  const res = await run(argv[0]!, argv.slice(1), { stdin: input, env, check: false });
  return { ...res, replies: parseReplies(res.stdout) };
}

/** Text to bytes (UTF-8). */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * The delivered bytes from the first occurrence of `marker` on (the relay's
 * trace headers Return-Path, Delivered-To, Received… come before it).
 */
export function fromMarker(data: Uint8Array, marker: string): Uint8Array {
  const at = indexOfBytes(data, encoder.encode(marker));
  if (at < 0) throw new Error(`no ${marker} in ${decoder.decode(data.subarray(0, 400))}`);
  return data.subarray(at);
}

/** Number of sshd logins (one per ssh connection) recorded in the relay's log so far. */
export async function loginCount(log: string): Promise<number> {
  const text = await Deno.readTextFile(log);
  return text.split("\n").filter((l) => l.includes("Accepted publickey")).length;
}
