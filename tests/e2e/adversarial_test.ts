/**
 * Adversarial suite, the table: runs after adversarial_1…4 (file order) in
 * the same `deno test` process, prints attack | attempts | refused |
 * delivered correctly | other, asserts that "other" is 0 everywhere, and
 * keeps the table in docs/adversarial.md when all sections ran.
 *
 * Run: `deno task test tests/e2e/adversarial_1_stolen_key_test.ts
 * tests/e2e/adversarial_2_broken_relay_test.ts tests/e2e/adversarial_3_slow_peers_test.ts
 * tests/e2e/adversarial_4_client_test.ts tests/e2e/adversarial_test.ts` (root), or the
 * whole e2e suite.
 *
 * @module
 */

import assert from "node:assert/strict";
import { allNotes, allRows, clear, formatTable, sections } from "./_attack_table.ts";

const DOC = new URL("../../docs/adversarial.md", import.meta.url).pathname;
const ALL_SECTIONS = 7;

Deno.test("adversarial: the table (every attack, other = 0)", async () => {
  const rows = allRows();
  const ran = sections().length;
  const table = formatTable(rows);
  const notes = allNotes().map((n) => `- ${n}`).join("\n");
  clear();
  console.log(`\n${table}${notes ? `\n${notes}\n` : ""}`);
  for (const r of rows) {
    assert.equal(r.other, 0, `${r.attack}: ${r.other} other (${r.notes.join("; ")})`);
    assert.equal(r.attempts, r.refused + r.delivered + r.other);
  }
  if (ran < ALL_SECTIONS) {
    console.log(
      `(${ran} of ${ALL_SECTIONS} sections ran: docs/adversarial.md left as it is)`,
    );
    return;
  }
  const doc = [
    "# Adversarial suite: what a stolen key, a hostile network and a broken relay can do",
    "",
    "Measured by `tests/e2e/adversarial_*_test.ts` against the built `dist/` artefacts, a real",
    "OpenSSH sshd (forced-command keys with `restrict`), the real Postfix and real clients",
    "(ssh, sftp, scp). Every attempt is classified: **refused** (a sysexits code and exactly",
    "one line, nothing delivered, nothing run), **delivered correctly** (exactly what was sent,",
    "under the key's policy) or **other** (anything else). The suite fails unless every",
    '"other" is 0. This file is rewritten by each full run.',
    "",
    table,
    ...(notes ? [notes, ""] : []),
    "How the broken relays are made (test scaffolding only, the product is unchanged): each",
    "runs its own sshd inside `unshare -m`, so a bind mount over `/usr/sbin/sendmail` (a",
    "scripted fake), a 64 KiB tmpfs over `/tmp` (the spool: the build grants only `/tmp`)",
    "or a tmpfs over `/usr/sbin` holding only `sshd` (no sendmail) is seen by that relay's",
    "sessions alone. The every-byte sweep checks the argv the relay hands to sendmail",
    "(the fake records it), because Postfix itself reroutes some address shapes (`a!b@`,",
    "`a%b@`). The syslog cases use `--syslog-socket`: a missing path, and a datagram socket",
    "that is full and that nobody reads.",
    "",
  ].join("\n");
  // The tracked doc is rewritten only on purpose (`deno task docs:adversarial`):
  // a test run writes under a temporary directory and leaves the tree clean.
  if (Deno.env.get("RSM_WRITE_DOCS") === "1") {
    await Deno.writeTextFile(DOC, doc);
  } else {
    const out = `${await Deno.makeTempDir({ prefix: "rsm-adversarial-" })}/adversarial.md`;
    await Deno.writeTextFile(out, doc);
    console.log(
      `(table written to ${out}; deno task docs:adversarial updates docs/adversarial.md)`,
    );
  }
});
