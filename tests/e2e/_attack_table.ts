/**
 * The adversarial suite's shared recorder: every attempt of every attack is
 * classified as `refused` (one line, a sysexits code, nothing delivered),
 * `delivered` (delivered correctly: exactly what was sent, under the key's
 * policy) or `other` (anything else: the attempt's assertion failed). The
 * table is printed at the end of the run and kept in docs/adversarial.md.
 *
 * The rows live in this module, so the table covers the test files run in
 * the same `deno test` process (the default; not with --parallel).
 *
 * @module
 */

/** How one attempt ended. */
export type Outcome = "refused" | "delivered" | "other";

/** One attack's counts. */
export interface Row {
  section: string;
  attack: string;
  attempts: number;
  refused: number;
  delivered: number;
  other: number;
  /** Why an attempt counted as other (first few). */
  notes: string[];
}

const rows = new Map<string, Row>();

function rowOf(section: string, attack: string): Row {
  const key = `${section}\u0000${attack}`;
  let row = rows.get(key);
  if (row === undefined) {
    row = { section, attack, attempts: 0, refused: 0, delivered: 0, other: 0, notes: [] };
    rows.set(key, row);
  }
  return row;
}

/** Records one attempt. */
export function record(section: string, attack: string, outcome: Outcome, note?: string): void {
  const row = rowOf(section, attack);
  row.attempts++;
  row[outcome]++;
  if (outcome === "other" && note !== undefined && row.notes.length < 3) row.notes.push(note);
}

/**
 * Runs one attempt: `fn` checks everything and says how it ended; if it
 * throws (an assertion failed), the attempt is recorded as `other` and the
 * error is rethrown, so a failing test and a non-zero "other" go together.
 */
export async function attempt(
  section: string,
  attack: string,
  fn: () => Promise<"refused" | "delivered">,
): Promise<void> {
  let outcome: "refused" | "delivered";
  try {
    outcome = await fn();
  } catch (err) {
    record(section, attack, "other", err instanceof Error ? err.message.split("\n")[0] : String(err));
    throw err;
  }
  record(section, attack, outcome);
}

/** Every row so far, in recording order. */
export function allRows(): Row[] {
  return [...rows.values()];
}

/** The sections that recorded at least one attempt. */
export function sections(): string[] {
  return [...new Set(allRows().map((r) => r.section))];
}

/** The table as Markdown: one block per section, then the totals. */
export function formatTable(list: readonly Row[] = allRows()): string {
  const out = [
    "| attack | attempts | refused | delivered correctly | other |",
    "|---|--:|--:|--:|--:|",
  ];
  let section = "";
  const total = { attempts: 0, refused: 0, delivered: 0, other: 0 };
  for (const r of list) {
    if (r.section !== section) {
      section = r.section;
      out.push(`| **${section}** | | | | |`);
    }
    out.push(
      `| ${r.attack.replaceAll("|", "\\|")} | ${r.attempts} | ${r.refused} | ${r.delivered} | ${r.other} |`,
    );
    total.attempts += r.attempts;
    total.refused += r.refused;
    total.delivered += r.delivered;
    total.other += r.other;
  }
  out.push(
    `| **total** | **${total.attempts}** | **${total.refused}** | **${total.delivered}** | **${total.other}** |`,
  );
  return `${out.join("\n")}\n`;
}
