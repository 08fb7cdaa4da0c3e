/**
 * The delivery check of `deno task bench`: every message a section sent
 * carries a unique header `X-Rsm-Bench: <run> <section>.<case> <index>` and
 * must arrive in the bench Maildir exactly once (Postfix delivers
 * asynchronously, so this runs after the timing).
 *
 * @module
 */

import { decoder, sleep } from "./bench_common.ts";
import { table } from "./bench_report.ts";

/** A group of bench messages whose delivery is checked (each tag index exactly once). */
export interface MailGroup {
  id: string;
  label: string;
  sent: number;
  /** Sends that did not exit 0 (they must not arrive). */
  failed: number;
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
