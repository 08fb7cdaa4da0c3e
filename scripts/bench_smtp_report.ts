/**
 * The report of section 4, SMTP mode (scripts/bench_smtp.ts): from the
 * timed `-bs` sessions, the passes of sequential command-line sends and
 * the relay's peak RSS lines, the table of wall and time per message, the
 * table of peak RSS, and the goal of a session ≥ 5× faster per message.
 *
 * @module
 */

import { BENCH_USER, type Options, TIME } from "./bench_common.ts";
import type { Sample } from "./bench_run.ts";
import { fmt, type Goal, goalTable, mib, quantile, table } from "./bench_report.ts";

const SPEEDUP = 5;

/** One timed `sshsendmail -bs` session: its mode, wall, messages relayed, client's peak RSS. */
export interface SmtpSession {
  mode: "step" | "full";
  ms: number;
  sent: number;
  clientKiB: number;
}

/** One pass of N sequential command-line sends (cold or warm). */
export interface SeqPass {
  id: string;
  samples: Sample[];
  wallMs: number;
}

/** Section 4's text and goals, from its sessions, its passes and the relay's peak RSS (KiB). */
export function smtpReport(
  o: Options,
  sessions: SmtpSession[],
  seqs: SeqPass[],
  relayRss: { smtp: number[]; seqCold: number[]; seqWarm: number[] },
): { text: string; goals: Goal[] } {
  const n = o.smtpN;
  const sorted = (xs: number[]) => xs.slice().sort((a, b) => a - b);
  const sessionMs = (mode: "step" | "full") =>
    sorted(sessions.filter((s) => s.mode === mode).map((s) => s.ms));
  const step = sessionMs("step");
  const full = sessionMs("full");
  const stepPer = quantile(step, 0.5) / n;
  const range = (xs: number[]) =>
    xs.length > 1 ? ` (${xs.map((x) => (x / 1000).toFixed(2)).join(", ")})` : "";
  const cold = seqs.find((s) => s.id === "seq-cold")!;
  const warm = seqs.find((s) => s.id === "seq-warm")!;
  const seqPer = (s: typeof cold) => s.wallMs / n;
  const seqMed = (s: typeof cold) => quantile(sorted(s.samples.map((x) => x.ms)), 0.5);
  const goals: Goal[] = (["cold", "warm"] as const).map((label) => {
    const per = seqPer(label === "cold" ? cold : warm);
    return {
      what: `SMTP: a \`-bs\` session vs ${label} command-line sends, per message`,
      goal: `≥ ${SPEEDUP}× faster`,
      measured: `${(per / stepPer).toFixed(1)}×`,
      met: per / stepPer >= SPEEDUP,
    };
  });
  const seqRow = (s: typeof cold, what: string, g: Goal) => [
    `ours: ${n} sequential \`sshsendmail -i rcpt\`, ${what}`,
    (s.wallMs / 1000).toFixed(2),
    fmt(seqPer(s)),
    g.measured,
  ];
  const rssRow = (
    label: string,
    xs: number[],
  ) => [label, String(xs.length), mib(quantile(xs, 0.5)), mib(xs[xs.length - 1] ?? NaN)];
  const clientOf = (mode: "step" | "full") =>
    sorted(sessions.filter((s) => s.mode === mode).map((s) => s.clientKiB));
  const text = [
    `## 4. SMTP mode: ${n} ~1 KB messages in one \`sshsendmail -bs\` session vs ${n} command-line sends`,
    "",
    table(["client", "wall (s)", "ms per message", "÷ session's ms per message"], [
      [
        `ours: ${n} messages in one \`sshsendmail -bs\` session, a reply awaited per message (MAIL/RCPT/DATA pipelined)`,
        `${(quantile(step, 0.5) / 1000).toFixed(2)}${range(step)}`,
        fmt(stepPer),
        "1.00×",
      ],
      [
        `ours: ${n} messages in one \`sshsendmail -bs\` session, whole dialogue written at once`,
        `${(quantile(full, 0.5) / 1000).toFixed(2)}${range(full)}`,
        fmt(quantile(full, 0.5) / n),
        `${(quantile(full, 0.5) / n / stepPer).toFixed(2)}×`,
      ],
      seqRow(cold, "cold (`reuse = no`, the default)", goals[0]!),
      seqRow(warm, "warm (`reuse = yes`, master already open)", goals[1]!),
    ]),
    "",
    `Per message = wall / ${n}; the session's wall runs from spawn to exit of the one ` +
    `client (greeting to \`221\`), median of ${o.smtpRuns} session${o.smtpRuns === 1 ? "" : "s"} ` +
    `per mode (each in brackets); the sequential rows are one pass of ${n} sends each ` +
    `(median per send: cold ${fmt(seqMed(cold))} ms, warm ${fmt(seqMed(warm))} ms, the harness's ` +
    `gap between sends included in the wall). All as ${BENCH_USER} through setpriv; the ` +
    `session's client and every relay ran under \`${TIME}\`. Against one cold send, each ` +
    `further message in a session costs about ${
      fmt((quantile(step, 0.5) - seqMed(cold)) / (n - 1))
    } ms.`,
    "",
    table(["peak RSS (MiB)", "processes", "median", "max"], [
      rssRow(`relay rsendmail --batch, one per ${n}-message session`, relayRss.smtp),
      rssRow("relay rsendmail, one per cold command-line send", relayRss.seqCold),
      rssRow("relay rsendmail, one per warm command-line send", relayRss.seqWarm),
      rssRow("client sshsendmail -bs, reply awaited per message", clientOf("step")),
      rssRow("client sshsendmail -bs, whole dialogue at once", clientOf("full")),
    ]),
    "",
    goalTable(goals),
  ].join("\n");
  return { text, goals };
}
