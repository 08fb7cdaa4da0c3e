/**
 * What the benchmark sections share (scripts/bench.ts, scripts/bench_service.ts):
 * the paths of the programs compared, timing one command from spawn to exit,
 * quantiles, markdown tables, tagged bench messages and their delivery count.
 *
 * @module
 */

import { run } from "../tests/e2e/_bed.ts";

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

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One command to time. */
export interface Spec {
  cmd: string;
  args: string[];
  env: Record<string, string>;
  stdin?: Uint8Array;
}

export interface Sample {
  ms: number;
  code: number;
  stderr: string;
}

export async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  return text;
}

/** Times spawn → exit. stderr is read concurrently (a ControlPersist master may hold it). */
export async function timeOnce(spec: Spec): Promise<Sample> {
  const t0 = performance.now();
  const child = new Deno.Command(spec.cmd, {
    args: spec.args,
    clearEnv: true,
    env: spec.env,
    stdin: spec.stdin === undefined ? "null" : "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = readAll(child.stderr);
  if (spec.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(spec.stdin);
      await writer.close();
    } catch {
      // exited early: its status tells
    }
  }
  const status = await child.status;
  const ms = performance.now() - t0;
  const text = await Promise.race([stderr, sleep(2000).then(() => "(stderr held open)")]);
  return { ms, code: status.code, stderr: text };
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(1) : "–");
export const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")
    } |`;
  const sep = `|${
    widths.map((w, i) => (i === 0 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`)).join("|")
  }|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}

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

/**
 * Counts delivered bench messages per case tag and per message index (so a
 * duplicate shows), waiting for stragglers; removes them.
 */
export async function collectMail(
  maildir: string,
  runId: string,
  expected: Map<string, number>,
  timeoutMs = 300_000,
): Promise<Map<string, Map<number, number>>> {
  const want = [...expected.values()].reduce((a, b) => a + b, 0);
  const deadline = Date.now() + timeoutMs;
  const got = new Map<string, Map<number, number>>();
  const files: string[] = [];
  const seen = new Set<string>();
  const headerRe = new RegExp(`^X-Rsm-Bench: ${runId} (\\S+) (\\d+)$`, "m");
  let quietSince = Date.now();
  while (true) {
    const before = files.length;
    for (const sub of ["new", "cur"]) {
      const entries: string[] = [];
      try {
        for await (const e of Deno.readDir(`${maildir}/${sub}`)) if (e.isFile) entries.push(e.name);
      } catch { /* no Maildir yet */ }
      for (const name of entries) {
        const path = `${maildir}/${sub}/${name}`;
        if (seen.has(name)) continue;
        seen.add(name);
        const f = await Deno.open(path).catch(() => undefined);
        if (f === undefined) continue;
        const buf = new Uint8Array(4096);
        const n = (await f.read(buf)) ?? 0;
        f.close();
        const m = headerRe.exec(decoder.decode(buf.subarray(0, n)));
        if (m) {
          const perCase = got.get(m[1]!) ?? new Map<number, number>();
          got.set(m[1]!, perCase);
          perCase.set(Number(m[2]), (perCase.get(Number(m[2])) ?? 0) + 1);
          files.push(path);
        }
      }
    }
    if (files.length > before) quietSince = Date.now();
    // All in: wait a little longer so that a late duplicate would be seen too.
    if (files.length >= want && Date.now() - quietSince > 2000) break;
    if (Date.now() > deadline) break;
    await sleep(200);
  }
  for (const path of files) await Deno.remove(path).catch(() => {});
  return got;
}

export interface Report {
  env: string;
  sections: string[];
  findings: string[];
}

export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: LOGIN_PATH, LANG: "C", HOME: "/root", USER: "root", LOGNAME: "root", ...extra };
}

/** A group of bench messages whose delivery is checked (each tag index exactly once). */
export interface MailGroup {
  id: string;
  label: string;
  sent: number;
  /** Sends that did not exit 0 (they must not arrive). */
  failed: number;
}

/** Runs fn(0..n-1) with at most `conc` running at once. */
export async function pool<T>(
  n: number,
  conc: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, n) }, worker));
  return out;
}

export async function progress(text: string): Promise<void> {
  if (Deno.stderr.isTerminal()) await Deno.stderr.write(encoder.encode(`\r${text}   `));
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

export const mib = (kib: number) => (Number.isFinite(kib) ? (kib / 1024).toFixed(1) : "–");

/** The delivery check's table: per group, how many of its messages arrived, each exactly once. */
export function deliveryTable(
  groups: readonly MailGroup[],
  got: Map<string, Map<number, number>>,
): { text: string; rows: string[][]; ok: boolean } {
  const rows = groups.map((g) => {
    const perMsg = got.get(g.id) ?? new Map<number, number>();
    const delivered = [...perMsg.values()].reduce((a, b) => a + b, 0);
    const dups = [...perMsg.values()].filter((n) => n > 1).length;
    const ok = perMsg.size === g.sent - g.failed && dups === 0 && delivered === perMsg.size;
    return [
      g.label,
      String(g.sent),
      String(g.failed),
      String(delivered),
      String(perMsg.size),
      String(dups),
      ok ? "ok" : dups > 0 ? "DUPLICATES" : "MISSING",
    ];
  });
  return {
    text: table(
      ["case", "sent", "non-zero exits", "delivered", "distinct", "duplicated", "check"],
      rows,
    ),
    rows,
    ok: rows.every((r) => r[6] === "ok"),
  };
}
