/**
 * The adversarial suite's shared recorder: every attempt of every attack is
 * classified as `refused` (one line, a sysexits code, nothing delivered),
 * `delivered` (delivered correctly: exactly what was sent, under the key's
 * policy) or `other` (anything else: the attempt's assertion failed). The
 * table is printed at the end of the run and kept in docs/adversarial.md.
 *
 * `deno test` runs each test file in its own isolate, so every attempt is
 * appended to a file named after the test process (`/tmp/rsm-adversarial-
 * PID.jsonl`) and the table test reads it back; the table covers the files
 * run by one `deno test` process.
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

/** Where this `deno test` process keeps its attempts. */
export const RECORD_FILE = `/tmp/rsm-adversarial-${Deno.pid}.jsonl`;

type Line =
  | { kind: "attempt"; section: string; attack: string; outcome: Outcome; note?: string }
  | { kind: "note"; text: string };

function append(line: Line): void {
  Deno.writeTextFileSync(RECORD_FILE, `${JSON.stringify(line)}\n`, { append: true });
}

function lines(): Line[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(RECORD_FILE);
  } catch {
    return [];
  }
  return text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line);
}

/** Records one attempt. */
export function record(section: string, attack: string, outcome: Outcome, note?: string): void {
  append({ kind: "attempt", section, attack, outcome, ...(note === undefined ? {} : { note }) });
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
    record(
      section,
      attack,
      "other",
      err instanceof Error ? err.message.split("\n")[0] : String(err),
    );
    throw err;
  }
  record(section, attack, outcome);
}

/** Every row so far, in recording order. */
export function allRows(): Row[] {
  const rows = new Map<string, Row>();
  for (const l of lines()) {
    if (l.kind !== "attempt") continue;
    const key = `${l.section}\u0000${l.attack}`;
    let row = rows.get(key);
    if (row === undefined) {
      row = {
        section: l.section,
        attack: l.attack,
        attempts: 0,
        refused: 0,
        delivered: 0,
        other: 0,
        notes: [],
      };
      rows.set(key, row);
    }
    row.attempts++;
    row[l.outcome]++;
    if (l.note !== undefined && row.notes.length < 3) row.notes.push(l.note);
  }
  return [...rows.values()].sort((a, b) =>
    a.section < b.section ? -1 : a.section > b.section ? 1 : 0
  );
}

/** The sections that recorded at least one attempt. */
export function sections(): string[] {
  return [...new Set(allRows().map((r) => r.section))];
}

/** A measured figure to print under the table (e.g. peak RSS of parallel sessions). */
export function note(text: string): void {
  append({ kind: "note", text });
}

/** The notes so far. */
export function allNotes(): string[] {
  return lines().flatMap((l) => l.kind === "note" ? [l.text] : []);
}

/** Forgets this process's attempts (after the table is printed). */
export function clear(): void {
  try {
    Deno.removeSync(RECORD_FILE);
  } catch {
    // nothing recorded
  }
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
      `| ${
        r.attack.replaceAll("|", "\\|")
      } | ${r.attempts} | ${r.refused} | ${r.delivered} | ${r.other} |`,
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
