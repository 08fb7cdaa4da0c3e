/**
 * The fuzz loop shared by the CI test (tests/unit/fuzz_test.ts) and the long
 * run (`deno task fuzz`): targets, case counts, failures with the exact
 * input and how to replay it. Pure: no permissions needed.
 *
 * @module
 */

import {
  checkCommand,
  checkFrame,
  checkHeader,
  checkSmtp,
  FuzzFailure,
  type HeaderCase,
} from "./check.ts";
import { genCommand, genFrameLine, genSmtpLine } from "./gen.ts";
import { genHeaderMessage } from "./header_gen.ts";
import { Rng } from "./prng.ts";

/** The fuzz targets, each with its own Rng stream. */
export const TARGETS = ["command", "frame", "smtp", "header"] as const;
/** One fuzz target. */
export type Target = typeof TARGETS[number];

/** One broken invariant, with what reproduces it. */
export interface Failure {
  target: Target;
  seed: number;
  index: number;
  input: unknown;
  message: string;
}

/** Counts of one target's run. */
export interface TargetStats {
  target: Target;
  cases: number;
  /** Inputs fed: command strings, frame lines, SMTP lines. */
  inputs: number;
  /** How the inputs ended (accepted, refused, …). */
  outcomes: Record<string, number>;
  ms: number;
  failures: Failure[];
}

/** Rebuilds the input of one case. */
export function caseInput(target: Target, seed: number, index: number): unknown {
  const rng = new Rng(seed, TARGETS.indexOf(target), index);
  switch (target) {
    case "command":
      return genCommand(rng);
    case "frame":
      return genFrameLine(rng);
    case "smtp": {
      const lines: string[] = [];
      for (let n = rng.range(1, rng.chance(0.05) ? 300 : 24); n > 0; n--) {
        lines.push(genSmtpLine(rng));
      }
      return lines;
    }
    case "header": {
      const message = genHeaderMessage(rng);
      return rng.chance(0.3) ? { message, cut: rng.int(message.length + 1) } : { message };
    }
  }
}

/** Runs one case; returns the outcome name and the number of inputs fed. Throws FuzzFailure. */
export function runCase(target: Target, input: unknown): [string, number] {
  switch (target) {
    case "command": {
      const c = input as { command: string; words?: string[] };
      const out = checkCommand(c.command, c.words);
      if (out.kind !== "accepted") return [out.kind, 1];
      return [out.codes.every((x) => x === 0) ? "accepted" : "accepted, refused by a policy", 1];
    }
    case "frame":
      return [checkFrame(input as string), 1];
    case "smtp":
      return ["session", checkSmtp(input as string[])];
    case "header":
      return [checkHeader(input as HeaderCase), 1];
  }
}

/** Runs `cases` cases of one target from `first`; keeps at most `maxFailures`. */
export function fuzz(
  target: Target,
  seed: number,
  cases: number,
  options: { first?: number; maxFailures?: number } = {},
): TargetStats {
  const first = options.first ?? 0;
  const maxFailures = options.maxFailures ?? 10;
  const stats: TargetStats = { target, cases: 0, inputs: 0, outcomes: {}, ms: 0, failures: [] };
  const started = performance.now();
  // Every refusal is an Error, and capturing its stack is a fifth of the run's
  // time: no stacks while fuzzing; a failing case is replayed with them.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (let index = first; index < first + cases; index++) {
      const input = caseInput(target, seed, index);
      stats.cases++;
      try {
        const [outcome, inputs] = runCase(target, input);
        stats.inputs += inputs;
        stats.outcomes[outcome] = (stats.outcomes[outcome] ?? 0) + 1;
      } catch {
        Error.stackTraceLimit = stackTraceLimit;
        stats.failures.push(replay(target, seed, index));
        Error.stackTraceLimit = 0;
        if (stats.failures.length >= maxFailures) break;
      }
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  stats.ms = performance.now() - started;
  return stats;
}

/** Runs one case again (stacks on) and says how it fails; message "passed" if it does not. */
export function replay(target: Target, seed: number, index: number): Failure {
  const input = caseInput(target, seed, index);
  let message = "passed";
  try {
    runCase(target, input);
  } catch (err) {
    message = err instanceof FuzzFailure
      ? err.message
      : `uncaught ${err instanceof Error ? err.stack : String(err)}`;
  }
  return { target, seed, index, input, message };
}

/** One failure, printable and replayable. */
export function describeFailure(f: Failure): string {
  const input = JSON.stringify(f.input);
  return [
    `FAIL ${f.target} seed ${f.seed} case ${f.index}: ${f.message}`,
    `  input: ${input.length > 600 ? `${input.slice(0, 600)}… (${input.length} chars)` : input}`,
    `  replay: deno task fuzz --target ${f.target} --seed ${f.seed} --case ${f.index}`,
  ].join("\n");
}

/** `command: 1000000 cases (… /s), accepted …` */
export function describeStats(s: TargetStats): string {
  const rate = Math.round(s.cases / (s.ms / 1000));
  const extra = s.inputs !== s.cases ? `, ${s.inputs} lines` : "";
  const outcomes = Object.entries(s.outcomes).sort().map(([k, v]) => `${k} ${v}`).join(", ");
  return `  ${s.target}: ${s.cases} cases${extra} in ${
    (s.ms / 1000).toFixed(1)
  } s (${rate}/s): ${outcomes}`;
}
