/**
 * Helpers for the `-bs` and local-mail end-to-end tests: an SMTP dialogue
 * fed to `sendmail -bs` all at once (pipelined) with its replies parsed, the
 * raw bytes of a delivered message found by a token, and a satellite
 * environment for the client.
 *
 * @module
 */

import { type Mailbox, run, type RunResult } from "./_bed.ts";
import type { Standalone } from "./_standalone.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

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

function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Waits for the message holding `needle` in box's Maildir/new, removes it
 * and returns its raw bytes. Throws after timeoutMs.
 */
export async function takeBytes(
  box: Mailbox,
  needle: string,
  timeoutMs = 15000,
): Promise<Uint8Array> {
  const want = encoder.encode(needle);
  const deadline = Date.now() + timeoutMs;
  while (true) {
    let entries: Deno.DirEntry[] = [];
    try {
      entries = await Array.fromAsync(Deno.readDir(`${box.dir}/new`));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    for (const e of entries) {
      if (!e.isFile) continue;
      const path = `${box.dir}/new/${e.name}`;
      const data = await Deno.readFile(path).catch(() => new Uint8Array());
      if (indexOf(data, want) >= 0) {
        await Deno.remove(path).catch(() => {});
        return data;
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`no mail holding ${needle} for ${box.user} within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

/**
 * The delivered bytes from the first occurrence of `marker` on (the relay's
 * trace headers Return-Path, Delivered-To, Received… come before it).
 */
export function fromMarker(data: Uint8Array, marker: string): Uint8Array {
  const at = indexOf(data, encoder.encode(marker));
  if (at < 0) throw new Error(`no ${marker} in ${decoder.decode(data.subarray(0, 400))}`);
  return data.subarray(at);
}

/** Number of sshd logins (one per ssh connection) recorded in the relay's log so far. */
export async function loginCount(log: string): Promise<number> {
  const text = await Deno.readTextFile(log);
  return text.split("\n").filter((l) => l.includes("Accepted publickey")).length;
}

/** A TCP port on 127.0.0.1 that nobody listens on (bound and released). */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
