/**
 * `deno task fuzz`: the fuzz suite's long run, with the generators and
 * oracles of the CI run (tests/fuzz/), no permissions needed.
 *
 *     deno task fuzz                                 # 20 000 000 command strings, fresh seed
 *     deno task fuzz --cases 100000000 --seed 42     # longer, pinned
 *     deno task fuzz --target smtp --cases 1000000   # one target
 *     deno task fuzz --target command --seed 42 --case 1234   # replay one case
 *
 * `--cases N` counts command strings; frame lines, SMTP dialogues and `-t`
 * header blocks run in the CI proportions (N/5, N/20 and N/10) unless
 * `--target` picks one. Prints one
 * progress line per million cases and ends with
 * `fuzz: N cases, seed S, F failures`; exits 1 on any failure.
 *
 * @module
 */

import { randomSeed } from "../tests/fuzz/prng.ts";
import {
  describeFailure,
  describeStats,
  fuzz,
  replay,
  type Target,
  TARGETS,
  type TargetStats,
} from "../tests/fuzz/run.ts";

const SHARE: Record<Target, number> = { command: 1, frame: 1 / 5, smtp: 1 / 20, header: 1 / 10 };
const CHUNK = 1_000_000;

function usage(message: string): never {
  console.error(`fuzz: ${message}`);
  console.error(
    "usage: deno task fuzz [--cases N] [--seed S] [--target command|frame|smtp|header] [--case I]",
  );
  Deno.exit(2);
}

function number(name: string, value: string | undefined): number {
  if (value === undefined || !/^(0x[0-9a-f]+|[0-9]+)$/i.test(value)) {
    usage(`${name} wants a number`);
  }
  return Number(value);
}

function parseArgs(args: string[]) {
  let cases = 20_000_000;
  let seed: number | undefined;
  let targets: readonly Target[] = TARGETS;
  let one: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const [name, attached] = args[i]!.split("=", 2) as [string, string | undefined];
    const value = () => attached ?? args[++i];
    switch (name) {
      case "--cases":
        cases = number(name, value());
        break;
      case "--seed":
        seed = number(name, value()) >>> 0;
        break;
      case "--case":
        one = number(name, value());
        break;
      case "--target": {
        const t = value();
        if (!TARGETS.includes(t as Target)) usage(`unknown target ${t}`);
        targets = [t as Target];
        break;
      }
      default:
        usage(`unknown argument ${args[i]}`);
    }
  }
  return { cases, seed: seed ?? randomSeed(), targets, one };
}

function main(): number {
  const { cases, seed, targets, one } = parseArgs(Deno.args);
  if (one !== undefined) {
    for (const target of targets) {
      const f = replay(target, seed, one);
      console.log(
        f.message === "passed"
          ? `${target} seed ${seed} case ${one}: passed\n  input: ${JSON.stringify(f.input)}`
          : describeFailure(f),
      );
    }
    return 0;
  }
  console.log(`fuzz: seed ${seed}`);
  const all: TargetStats[] = [];
  for (const target of targets) {
    const total = targets.length === 1 ? cases : Math.round(cases * SHARE[target]);
    const sum: TargetStats = { target, cases: 0, inputs: 0, outcomes: {}, ms: 0, failures: [] };
    for (let first = 0; first < total && sum.failures.length < 10; first += CHUNK) {
      const s = fuzz(target, seed, Math.min(CHUNK, total - first), {
        first,
        maxFailures: 10 - sum.failures.length,
      });
      sum.cases += s.cases;
      sum.inputs += s.inputs;
      sum.ms += s.ms;
      sum.failures.push(...s.failures);
      for (const [k, v] of Object.entries(s.outcomes)) sum.outcomes[k] = (sum.outcomes[k] ?? 0) + v;
      for (const f of s.failures) console.log(describeFailure(f));
      if (total > CHUNK) {
        console.log(
          `  ${target}: ${sum.cases}/${total} (${
            Math.round(sum.cases / (sum.ms / 1000))
          }/s), ${sum.failures.length} failures`,
        );
      }
    }
    console.log(describeStats(sum));
    all.push(sum);
  }
  const total = all.reduce((n, s) => n + s.cases, 0);
  const failures = all.reduce((n, s) => n + s.failures.length, 0);
  console.log(`fuzz: ${total} cases, seed ${seed}, ${failures} failures`);
  return failures === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(main());
