/**
 * Fuzz suite, binary level: ~2000 mutated requests (the generators of
 * tests/fuzz/, a pinned seed) against the BUILT dist/rsendmail, each as
 * SSH_ORIGINAL_COMMAND with an empty stdin, ~10 % of them as raw bytes that
 * are not UTF-8. Every run is compared with the in-process model
 * (tests/fuzz/check.ts): the exit code is a sysexits value, stderr is empty
 * on 0 and otherwise exactly the one line `[245].x.y rsendmail: …` the model
 * predicts, never a stack trace, stdout stays empty, and every argv handed
 * to sendmail is the canonical one the model rebuilds.
 *
 * Test scaffolding only: the runs happen inside one `unshare -m` namespace
 * where a recording fake (a few lines of Python that append their argv as
 * JSON to a file named after the parent pid) is bind-mounted over
 * /usr/sbin/sendmail, seen by that process tree alone; each run enters it
 * with nsenter. Root needed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { isEnvelopeAddress } from "../../lib/shared/address.ts";
import { MailError } from "../../lib/shared/errors.ts";
import { isSysexit } from "../../lib/shared/exit_codes.ts";
import { checkPolicy, DEFAULT_CONFIG } from "../../lib/shared/relay_config.ts";
import { ATTACK_STRINGS, EMPTY_SHA256, REAL_REQUESTS } from "../fuzz/corpus.ts";
import { checkCommand, type CommandOutcome } from "../fuzz/check.ts";
import { genCommand } from "../fuzz/gen.ts";
import { Rng } from "../fuzz/prng.ts";
import { quoteWords } from "../../lib/shared/words.ts";

const SEED = 0xb1a5f00d;
const GENERATED = 1946; // + the 54 corpus requests: 2000
const CONCURRENCY = 6;
const STDERR_REGEXP = /^[245]\.\d+\.\d+ rsendmail: [^\n]*\n$/;
const STACK_REGEXP = /\n\s+at |Uncaught|error: |Error:/;

/** One request: the peer's bytes, and the command string they decode to (undefined: not UTF-8). */
interface Case {
  bytes: Uint8Array;
  command: string | undefined;
}

const encoder = new TextEncoder();

/** The bytes a peer sends for `command` (sshd refuses a NUL: the command ends there). */
function peerBytes(command: string): Uint8Array {
  return encoder.encode(command.split("\u0000", 1)[0]!);
}

function cases(): Case[] {
  const list: Case[] = [];
  const add = (raw: Uint8Array) => {
    // One environment string or printf argument stays under Linux's 128 KiB MAX_ARG_STRLEN.
    const bytes = raw.subarray(0, isUtf8(raw) ? 120_000 : 30_000);
    let command: string | undefined;
    try {
      command = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      command = undefined;
    }
    list.push({ bytes, command });
  };
  for (const words of REAL_REQUESTS) add(encoder.encode(quoteWords(words)));
  for (const s of ATTACK_STRINGS) add(peerBytes(s));
  for (let i = 0; i < GENERATED; i++) {
    const rng = new Rng(SEED, 0, i);
    const { command } = genCommand(rng);
    const bytes = peerBytes(command.isWellFormed() ? command : command.toWellFormed());
    if (rng.chance(0.1)) {
      // Raw bytes that are not UTF-8, where a peer can put them.
      const at = rng.int(bytes.length + 1);
      const bad = rng.pick([[0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [
        0xf4,
        0x90,
        0x80,
        0x80,
      ], [0xe2, 0x82]]);
      add(new Uint8Array([...bytes.subarray(0, at), ...bad, ...bytes.subarray(at)]));
    } else add(bytes);
  }
  return list;
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** printf(1) format that writes exactly `bytes` (no NUL among them; "-" octal, never an option). */
function printfFormat(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) {
    out += b >= 0x20 && b < 0x7f && b !== 0x5c && b !== 0x25 && b !== 0x2d
      ? String.fromCharCode(b)
      : `\\${b.toString(8).padStart(3, "0")}`;
  }
  return out;
}

/** Sets SSH_ORIGINAL_COMMAND from a printf format (raw bytes) or leaves the env's, then execs. */
const WRAPPER = [
  'case "$1" in fmt:*) v=$(printf "${1#fmt:}"; echo x); SSH_ORIGINAL_COMMAND=${v%x};',
  'export SSH_ORIGINAL_COMMAND;; esac; shift; exec "$@"',
].join(" ");

const FAKE = (dir: string) =>
  `#!/usr/bin/python3 -IS
# Test scaffolding: records its argv (and how many bytes it was given) and succeeds.
import json, os, sys
n = len(sys.stdin.buffer.read())
with open("${dir}/argv/%d.json" % os.getppid(), "a") as f:
    f.write(json.dumps({"argv": sys.argv, "stdin": n}) + "\\n")
`;
import { inMountNamespace, RSENDMAIL } from "./_bed.ts";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  pid: number;
  ms: number;
}

/** What the relay must do with this case, from the in-process model. */
function expected(c: Case): CommandOutcome | { kind: "not utf-8" } {
  if (c.command === undefined) return { kind: "not utf-8" };
  return checkCommand(c.command);
}

Deno.test("fuzz: the built rsendmail under ~2000 mutated requests (exit codes, one line, canonical argv)", async () => {
  await Deno.stat(RSENDMAIL);
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-fuzz-bin-" });
  await Deno.mkdir(`${dir}/argv`);
  await Deno.writeTextFile(`${dir}/fake-sendmail`, FAKE(dir), { mode: 0o755 });
  const [unshare, ...args] = inMountNamespace(
    `mount --bind ${dir}/fake-sendmail /usr/sbin/sendmail; echo ready; exec sleep 600`,
  );
  const ns = new Deno.Command(unshare!, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const list = cases();
  const results: Result[] = new Array(list.length);
  const started = performance.now();
  try {
    const reader = ns.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    assert.equal(
      new TextDecoder().decode(first.value),
      "ready\n",
      "namespace with the fake sendmail",
    );
    let next = 0;
    const decoder = new TextDecoder();
    const worker = async () => {
      for (let i = next++; i < list.length; i = next++) {
        const c = list[i]!;
        const mode = c.command !== undefined && !c.command.includes("\u0000")
          ? "env"
          : `fmt:${printfFormat(c.bytes)}`;
        await Deno.mkdir(`${dir}/state-${i}`);
        const t0 = performance.now();
        const child = new Deno.Command("/usr/bin/nsenter", {
          args: [
            "-t",
            String(ns.pid),
            "-m",
            "--",
            "/bin/sh",
            "-c",
            WRAPPER,
            "sh",
            mode,
            RSENDMAIL,
            "--label",
            "fuzz",
            "--state-dir",
            `${dir}/state-${i}`,
            "--syslog-socket",
            `${dir}/no-syslog`,
          ],
          clearEnv: true,
          env: {
            PATH: "/usr/bin:/bin",
            SSH_CONNECTION: "192.0.2.1 40000 127.0.0.1 22",
            ...(mode === "env" ? { SSH_ORIGINAL_COMMAND: c.command! } : {}),
          },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const out = await child.output();
        results[i] = {
          code: out.code,
          stdout: decoder.decode(out.stdout),
          stderr: decoder.decode(out.stderr),
          pid: child.pid,
          ms: performance.now() - t0,
        };
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } finally {
    ns.kill("SIGKILL");
    await ns.status;
    await ns.stdout.cancel().catch(() => {});
  }
  const elapsed = (performance.now() - started) / 1000;

  const records = new Map<number, { argv: string[]; stdin: number }[]>();
  for await (const e of Deno.readDir(`${dir}/argv`)) {
    const pid = Number(e.name.replace(/\.json$/, ""));
    const text = await Deno.readTextFile(`${dir}/argv/${e.name}`);
    records.set(pid, text.split("\n").filter(Boolean).map((l) => JSON.parse(l)));
  }
  const tally: Record<string, number> = {};
  const problems: string[] = [];
  list.forEach((c, i) => {
    const r = results[i]!;
    const model = expected(c);
    const rec = records.get(r.pid);
    records.delete(r.pid);
    const show = JSON.stringify(c.command ?? `bytes ${[...c.bytes].join(",")}`).slice(0, 300);
    const problem = (why: string) =>
      problems.push(
        `${why}\n  request ${show}\n  exit ${r.code} stderr ${JSON.stringify(r.stderr)}`,
      );
    if (!isSysexit(r.code)) return problem(`exit ${r.code} is no sysexits value`);
    if (r.stdout !== "") return problem(`stdout ${JSON.stringify(r.stdout.slice(0, 200))}`);
    if (STACK_REGEXP.test(r.stderr)) return problem("a stack trace or runtime error");
    if (r.code === 0 ? r.stderr !== "" : !STDERR_REGEXP.test(r.stderr)) {
      return problem("stderr is not empty on 0 / not one status line otherwise");
    }
    for (const { argv } of rec ?? []) {
      const fail = canonical(argv);
      if (fail) return problem(`sendmail argv ${JSON.stringify(argv)}: ${fail}`);
    }
    // The binary agrees with the in-process model.
    let want: { code: number; stderr: string; argv?: string[] };
    switch (model.kind) {
      case "not utf-8":
        want = { code: 64, stderr: "5.5.2 rsendmail: request is not valid UTF-8\n" };
        break;
      case "refused":
        want = { code: model.error.exitCode, stderr: `${model.error.publicLine("rsendmail")}\n` };
        break;
      case "batch": // empty stdin: no frame, nothing sent
        want = { code: 0, stderr: "" };
        break;
      case "accepted": {
        const req = model.req;
        const policy = refusal(() => checkPolicy(req, DEFAULT_CONFIG));
        if (policy) {
          want = { code: policy.exitCode, stderr: `${policy.publicLine("rsendmail")}\n` };
        } else if (req.size !== undefined && req.size !== 0) {
          want = { code: 75, stderr: "4.4.2 rsendmail: message truncated in transit\n" };
        } else if (req.sha256 !== undefined && req.sha256 !== EMPTY_SHA256) {
          want = { code: 65, stderr: "5.6.0 rsendmail: message does not match its SHA-256\n" };
        } else want = { code: 0, stderr: "", argv: model.argv };
      }
    }
    const kind = model.kind === "accepted" && want.argv
      ? "delivered"
      : model.kind === "batch"
      ? "batch (no frames)"
      : model.kind === "not utf-8"
      ? "refused (not UTF-8)"
      : "refused";
    tally[kind] = (tally[kind] ?? 0) + 1;
    if (r.code !== want.code || r.stderr !== want.stderr) {
      return problem(`model says exit ${want.code} ${JSON.stringify(want.stderr)}`);
    }
    const argvs = (rec ?? []).map((x) => x.argv);
    if (want.argv === undefined ? argvs.length !== 0 : argvs.length !== 1) {
      return problem(`sendmail ran ${argvs.length} times`);
    }
    if (want.argv && JSON.stringify(argvs[0]) !== JSON.stringify(want.argv)) {
      return problem(
        `sendmail argv ${JSON.stringify(argvs[0])}, model ${JSON.stringify(want.argv)}`,
      );
    }
    if (want.argv && rec![0]!.stdin !== 0) return problem("sendmail got bytes from an empty stdin");
  });
  if (records.size > 0) problems.push(`sendmail records from unknown pids: ${[...records.keys()]}`);
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  console.log(
    `fuzz (binary): ${list.length} requests, seed ${SEED}, ${
      (list.length / elapsed).toFixed(0)
    }/s ` +
      `over ${CONCURRENCY} workers in ${elapsed.toFixed(1)} s (median ${
        times[times.length >> 1]!.toFixed(0)
      } ms): ` +
      `${
        Object.entries(tally).map(([k, v]) => `${k} ${v}`).join(", ")
      }; ${problems.length} failures`,
  );
  for (const p of problems.slice(0, 10)) console.log(p);
  await Deno.remove(dir, { recursive: true });
  assert.equal(problems.length, 0, problems[0]);
  assert.ok((tally["delivered"] ?? 0) >= 100, "the accepting side must be reached");
});

function refusal(fn: () => void): MailError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof MailError) return err;
    throw err;
  }
}

/** Undefined when argv is `[/usr/sbin/sendmail, -oi, (-f S)?, -t?, --, rcpt…]`, else why not. */
function canonical(argv: string[]): string | undefined {
  if (argv[0] !== "/usr/sbin/sendmail" || argv[1] !== "-oi") return "head";
  let i = 2;
  if (argv[i] === "-f") {
    const s = argv[i + 1];
    if (s === undefined || (s !== "" && !isEnvelopeAddress(s))) return "sender";
    i += 2;
  }
  if (argv[i] === "-t") i++;
  if (argv[i] !== "--") return "no --";
  const rcpts = argv.slice(i + 1);
  if (rcpts.length === 0 && argv[i - 1] !== "-t") return "no recipient and no -t";
  if (rcpts.some((r) => r.startsWith("-") || !isEnvelopeAddress(r))) return "recipient";
  return undefined;
}
