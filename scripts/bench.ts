/**
 * `deno task bench`: benchmarks of the built artefacts on real programs
 * (sshd, Postfix, the satellite service), each figure as a ratio against a
 * floor measured in the same run, with upstream's Python rsendmail 1.1.4
 * (`/usr/bin/rsendmail`, `/usr/bin/sshsendmail`) beside it. One file per
 * section, by what it measures:
 *
 * 1. relay side (bench_relay.ts): dist/rsendmail vs a bare Deno wrapper
 *    under the same shebang that only spawns sendmail;
 * 2. end to end (bench_e2e.ts): one cold send vs the sum of its parts;
 * 3. batch (bench_batch.ts): queued messages through one relay batch
 *    session at `--parallel 1`, `2`, `4` vs sendmail run serially;
 * 4. SMTP mode (bench_smtp.ts): one `-bs` session vs command-line sends;
 * 5. the satellite service (bench_service.ts, bench_burst.ts);
 * 6. memory (bench_memory.ts): the service's and the relay's RSS across
 *    5 000 messages in one session.
 *
 * Cases of a section run round-robin (warm-up rounds first), so that drift
 * in the machine's load hits all cases alike; tables give medians. Postfix
 * delivers asynchronously, so delivery is checked after the timing: every
 * message carries a unique header and must arrive in the bench Maildir
 * exactly once.
 *
 * Needs root. Options: `--quick` (a short run), `--only
 * relay|e2e|batch|smtp|service|memory`, `--runs N` (default 15),
 * `--warmup N` (2), `--smtp N` (100), `--smtp-runs N` (3), `--batch N`
 * (500), `--batch-rounds N` (3), `--service-runs N` (50),
 * `--service-latency N` (100), `--service-burst N` (messages per user, 5
 * users; 100), `--rss N` (5000), `--no-build`, `--write-docs` (writes
 * docs/benchmarks.md; with `--only` it replaces just that section there).
 *
 * @module
 */

import { type Postfix, postfixRunning, run, startPostfix } from "../tests/e2e/_bed.ts";
import {
  BENCH_USER,
  cpuModel,
  DEFAULTS,
  denoVersion,
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  exists,
  type Options,
  QUICK,
  ROOT,
  type SectionResult,
  shebangOf,
} from "./bench_common.ts";
import { goalTable } from "./bench_report.ts";
import { collectMail, deliveryTable } from "./bench_delivery.ts";
import { benchRelay } from "./bench_relay.ts";
import { benchE2e } from "./bench_e2e.ts";
import { withSshBed } from "./bench_ssh_bed.ts";
import { benchBatch } from "./bench_batch.ts";
import { benchSmtp } from "./bench_smtp.ts";
import { benchService } from "./bench_service.ts";
import { benchMemory } from "./bench_memory.ts";

const SECTIONS = ["relay", "e2e", "batch", "smtp", "service", "memory"] as const;
const DOCS = `${ROOT}/docs/benchmarks.md`;
/** Hand-written sections of docs/benchmarks.md that --write-docs keeps (from this heading on). */
const NOTES_RE = /^## Notes\b/m;

const NUMERIC: Record<string, [keyof typeof DEFAULTS, number]> = {
  "--runs": ["runs", 3],
  "--warmup": ["warmup", 0],
  "--smtp": ["smtpN", 10],
  "--smtp-runs": ["smtpRuns", 1],
  "--batch": ["batchN", 10],
  "--batch-rounds": ["batchRounds", 1],
  "--service-runs": ["serviceRuns", 3],
  "--service-latency": ["latencyN", 5],
  "--service-burst": ["perUser", 1],
  "--rss": ["rssN", 500],
};

function parseOptions(args: readonly string[]): Options {
  const quick = args.includes("--quick");
  const o: Options = {
    ...DEFAULTS,
    ...(quick ? QUICK : {}),
    build: true,
    writeDocs: false,
    quick,
    only: undefined,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const num = NUMERIC[a];
    if (num !== undefined) {
      const v = Number(args[++i]);
      if (!Number.isInteger(v) || v < num[1]) throw new Error(`${a} wants a number ≥ ${num[1]}`);
      o[num[0]] = v;
    } else if (a === "--no-build") o.build = false;
    else if (a === "--write-docs") o.writeDocs = true;
    else if (a === "--" || a === "--quick") continue; // `deno task bench -- …` passes "--"
    else if (a === "--only" && (SECTIONS as readonly string[]).includes(args[i + 1] ?? "")) {
      o.only = args[++i];
    } else throw new Error(`unknown option ${a} (sections: ${SECTIONS.join(", ")})`);
  }
  return o;
}

async function build(): Promise<void> {
  const deno = Deno.execPath();
  await run(deno, [
    "run",
    "--allow-read=.",
    "--allow-write=dist",
    `--allow-run=${deno},/bin/ln`,
    "--allow-env",
    "scripts/build.ts",
  ]);
}

/** SHA-256 prefixes of dist/sshsendmail and dist/rsendmail: a run spanning two builds says so. */
async function builds(): Promise<string> {
  return (await Promise.all([DIST_SSHSENDMAIL, DIST_RSENDMAIL].map(async (p) => {
    const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(p));
    return Array.from(new Uint8Array(digest).subarray(0, 6), (b) => b.toString(16).padStart(2, "0"))
      .join("");
  }))).join(", ");
}

async function commit(): Promise<string> {
  const git = async (args: string[]) =>
    (await run("/usr/bin/git", ["-C", ROOT, ...args], { check: false })).stdout.trim();
  const dirty = (await git(["status", "--porcelain", "--untracked-files=no"])) !== "";
  return `${await git(["rev-parse", "--short", "HEAD"])}${dirty ? " + uncommitted changes" : ""}`;
}

const INTRO = [
  "# Benchmarks",
  "",
  "Generated by `deno task bench -- --write-docs` (scripts/bench.ts and its scripts/bench_*.ts",
  "sections); every number below comes from one run on the machine named in the environment line.",
  "",
  "**How to read it.** Absolute times depend on the machine (Deno's start-up, ssh's handshake and",
  "Postfix's `sendmail` can each differ threefold between machines), so every figure is a ratio",
  "against a floor measured in the same run: a bare Deno wrapper that only spawns sendmail, the",
  "parts of a cold send (two Deno starts, `ssh relay true`, the relay's sendmail), the relay's",
  "sendmail run serially, upstream 1.1.4's cold send. The cases of a section run round-robin",
  "(warm-up rounds first, then measured rounds), so that drift in the load hits them alike; tables",
  "give medians. A time runs from spawn to exit of the command as the bench starts it (setpriv",
  "included where a case runs as another account: every case of a comparison runs the same way).",
  "Postfix delivers asynchronously: every message carries a unique header and must arrive in the",
  "bench Maildir exactly once (the delivery check at the end). Each table states its goal and",
  "whether this run met it; the goals are collected first. `--only SECTION --write-docs` replaces",
  "just that section (the goals and the delivery check stay those of the last full run).",
  "",
].join("\n");

/** Replaces the section `key` (its heading to the next `## `) in the old doc, or adds it. */
function replaceSection(old: string, s: SectionResult): string {
  const n = SECTIONS.indexOf(s.key as typeof SECTIONS[number]) + 1;
  const at = old.search(new RegExp(`^## ${n}\\. `, "m"));
  const notes = old.search(NOTES_RE);
  if (at < 0) {
    const cut = notes < 0 ? old.length : notes;
    return `${old.slice(0, cut).trimEnd()}\n\n${s.text}\n\n${old.slice(cut)}`.trimEnd() + "\n";
  }
  const next = old.indexOf("\n## ", at + 1);
  return `${old.slice(0, at)}${s.text}\n${next < 0 ? "" : old.slice(next)}`.trimEnd() + "\n";
}

async function main(): Promise<number> {
  const o = parseOptions(Deno.args);
  Deno.chdir(ROOT);
  if (Deno.uid() !== 0) throw new Error("bench needs root (test accounts, sshd, Postfix)");
  if (o.build) await build();
  // A Postfix the bench started is stopped at its end; one already running stays.
  const postfixWasUp = await postfixRunning();
  const postfix = await startPostfix();
  try {
    return await benchAll(o, postfix);
  } finally {
    if (!postfixWasUp) await postfix.stop();
  }
}

async function benchAll(o: Options, postfix: Postfix): Promise<number> {
  const shebangDeno = /^#!\/usr\/bin\/env -S (?:[^/ ]\S* )*(\/\S+)/.exec(
    await shebangOf(DIST_RSENDMAIL),
  )?.[1] ?? Deno.execPath();
  const box = postfix.mailbox(BENCH_USER);
  const rcpt = `${BENCH_USER}@${postfix.domain}`;
  const runId = `r${Date.now().toString(36)}`;
  const [dv, cpu, pyv, devLog, sshv] = await Promise.all([
    denoVersion(shebangDeno),
    cpuModel(),
    run("/usr/bin/python3", ["--version"]).then((r) => r.stdout.trim()),
    exists("/dev/log"),
    run("/usr/bin/ssh", ["-V"], { check: false }).then((r) => r.stderr.trim().split(",")[0]),
  ]);
  const loadBefore = Deno.loadavg();
  const buildBefore = await builds();
  const tree = await commit();
  const want = (k: string) => o.only === undefined || o.only === k;

  const results: SectionResult[] = [];
  const started = performance.now();
  if (want("relay")) results.push(await benchRelay(o, runId, rcpt));
  if (want("e2e") || want("smtp")) {
    await withSshBed(async (bed) => {
      if (want("e2e")) results.push(await benchE2e(o, runId, rcpt, bed));
      if (want("smtp")) results.push(await benchSmtp(o, runId, rcpt, bed));
    });
  }
  if (want("batch")) results.push(await benchBatch(o, runId, rcpt));
  if (want("service")) results.push(await benchService(o, runId, rcpt));
  if (want("memory")) results.push(await benchMemory(o, runId, rcpt));
  results.sort((a, b) =>
    SECTIONS.indexOf(a.key as typeof SECTIONS[number]) -
    SECTIONS.indexOf(b.key as typeof SECTIONS[number])
  );
  const minutes = (performance.now() - started) / 60_000;

  // Delivery check: every successful send must have landed, each message exactly once.
  const groups = results.flatMap((r) => r.groups);
  const got = await collectMail(
    box.dir,
    runId,
    new Map(groups.map((g) => [g.id, g.sent - g.failed])),
    600_000,
  );
  const delivery = deliveryTable(groups, got);
  const findings = results.flatMap((r) => r.findings);
  if (!delivery.ok) findings.push("some messages did not arrive exactly once");
  const buildAfter = await builds();
  if (buildAfter !== buildBefore) {
    findings.push(
      `dist/ changed during the run (${buildBefore} → ${buildAfter}): the numbers mix two builds`,
    );
  }
  const env = `Environment: ${dv} · ${navigator.hardwareConcurrency} CPUs (${cpu}) · ` +
    `Linux ${Deno.osRelease()} · ${pyv} · ${sshv} · /dev/log ${
      devLog ? "present" : "absent (no syslog listener)"
    } · ` +
    `load before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${
      Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
    } · ${o.warmup} warm-up + ${o.runs} measured rounds in sections 1–2${
      o.quick ? " (`--quick`)" : ""
    } · ` +
    `${
      minutes.toFixed(1)
    } min · dist/sshsendmail, dist/rsendmail SHA-256 ${buildBefore}… · tree at ${tree}`;
  const summary = [
    "## Goals",
    "",
    goalTable(results.flatMap((r) => r.goals)),
  ].join("\n");
  const tail = [
    "## Delivery check",
    "",
    `Maildir of ${rcpt}, after the timed runs; every message carries a unique tag.`,
    "",
    delivery.text,
    "",
    findings.length ? `Findings:\n${findings.map((f) => `- ${f}`).join("\n")}` : "No findings.",
  ].join("\n");
  const body = [env, "", summary, "", ...results.flatMap((r) => [r.text, ""]), tail].join("\n");
  console.log(body);

  if (o.writeDocs) {
    const old = await Deno.readTextFile(DOCS).catch(() => "");
    const notesAt = old.search(NOTES_RE);
    const notes = notesAt < 0 ? "" : `\n${old.slice(notesAt).trimEnd()}\n`;
    if (o.only === undefined) await Deno.writeTextFile(DOCS, `${INTRO}\n${body}\n${notes}`);
    else await Deno.writeTextFile(DOCS, results.reduce(replaceSection, old));
  }
  return delivery.ok && groups.every((g) => g.failed === 0) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
