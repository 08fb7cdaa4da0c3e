/**
 * How `deno task bench` reports: its goals and their verdicts, Markdown
 * tables, the folded table of every case, medians and quartiles, and the
 * number formats. Shared by the sections (scripts/bench_*.ts); what a
 * section measures and how is in scripts/bench_run.ts.
 *
 * @module
 */

import type { Case, Sample } from "./bench_run.ts";

/** One goal of issue 15 (or an older one), as measured in this run. */
export interface Goal {
  /** What is compared, e.g. "relay side: ours / bare Deno wrapper". */
  what: string;
  /** e.g. "≤ 1.15×". */
  goal: string;
  measured: string;
  /** undefined: could not be measured here (shown as n/a). */
  met: boolean | undefined;
}

export const verdict = (met: boolean | undefined) =>
  met === undefined ? "n/a" : met ? "met" : "MISSED";

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function stats(c: Case): { n: number; median: number; p25: number; p75: number } {
  const ms = c.samples.map((s) => s.ms).sort((a, b) => a - b);
  return {
    n: ms.length,
    median: quantile(ms, 0.5),
    p25: quantile(ms, 0.25),
    p75: quantile(ms, 0.75),
  };
}

export const med = (c: Case) => stats(c).median;

/** Every case of a section in a folded table (median, quartiles, failures). */
export function detail(title: string, cases: Case[]): string {
  return [
    `<details><summary>All ${title} cases (ms)</summary>`,
    "",
    table(
      ["case", "n", "median", "p25", "p75", "failed runs"],
      cases.map((c) => {
        const s = stats(c);
        return [
          c.id,
          String(s.n),
          fmt(s.median),
          fmt(s.p25),
          fmt(s.p75),
          String(c.failures.length),
        ];
      }),
    ),
    "",
    "</details>",
  ].join("\n");
}

/** Failed runs of the cases, as findings. */
export function caseFindings(section: string, cases: Case[]): string[] {
  return cases.filter((c) => c.failures.length > 0).map((c) =>
    `${section} ${c.id}: ${c.failures.length} failed runs, e.g. ${c.failures[0]}`
  );
}

/**
 * One finding per group of runs in which some exited non-zero: how many,
 * the first one's code and the first line of its stderr.
 */
export function exitFindings(
  section: string,
  groups: readonly (readonly [string, readonly Sample[]])[],
): string[] {
  return groups.flatMap(([what, xs]) => {
    const bad = xs.filter((s) => s.code !== 0);
    if (bad.length === 0) return [];
    const why = bad[0]!.stderr.trim().split("\n")[0];
    return [
      `${section} ${what}: ${bad.length} exited non-zero, e.g. exit ${bad[0]!.code}${
        why ? `: ${why}` : ""
      }`,
    ];
  });
}

/** A table of goals: what, goal, measured, met/missed. */
export function goalTable(goals: readonly Goal[]): string {
  return table(
    ["goal", "target", "measured", "ours"],
    goals.map((g) => [g.what, g.goal, g.measured, verdict(g.met)]),
  );
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

export const mib = (kib: number) => (Number.isFinite(kib) ? (kib / 1024).toFixed(1) : "–");
