/**
 * The integration tier's tables, one `t.step` per row: relay_cases.jsonc
 * (the fake ssh starts dist/rsendmail with a request, as sshd would) and
 * client_cases.jsonc (dist/sshsendmail → fake ssh → dist/rsendmail →
 * recording sendmail). See _harness.ts for how a row runs.
 *
 * Run: `deno task test:fast` (builds dist/ first), or after a build
 * `deno task test:int`. No root: needs unprivileged user namespaces.
 *
 * @module
 */

import { assertOutcome, Bed, loadCases } from "./_harness.ts";

const TABLES = [
  ["relay_cases.jsonc", "relay: fake ssh → dist/rsendmail → recording sendmail"],
  [
    "client_cases.jsonc",
    "client: dist/sshsendmail → fake ssh → dist/rsendmail → recording sendmail",
  ],
] as const;

for (const [file, title] of TABLES) {
  Deno.test(`${title} (${file})`, async (t) => {
    const cases = await loadCases(file);
    const bed = await Bed.open();
    try {
      for (const [name, row] of Object.entries(cases)) {
        await t.step(name, async () => {
          const { c, outcome } = await bed.run(row);
          assertOutcome(c, outcome);
        });
      }
    } finally {
      await bed.close();
    }
  });
}
