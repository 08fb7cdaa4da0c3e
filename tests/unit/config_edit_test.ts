import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { editConfig, NEW_FILE_HEADER, type SetupValues } from "../../lib/client/config_edit.ts";
import { parseConfigFile } from "../../lib/client/client_config.ts";
import { EXAMPLE_CONFIG } from "../../docs/manual.ts";

/** What `sshsendmail setup --host rsendmail@relay.example.net` sets (no --port). */
const SETUP: SetupValues = {
  host: "rsendmail@relay.example.net",
  user: undefined,
  port: undefined,
  identity: "/etc/sshsendmail/id_ed25519",
  "known_hosts": "/etc/sshsendmail/known_hosts",
};

const OWNED_LINES = [
  "host = rsendmail@relay.example.net",
  "identity = /etc/sshsendmail/id_ed25519",
  "known_hosts = /etc/sshsendmail/known_hosts",
];

/** The lines of `text` that are not setup's (what must survive an edit unchanged). */
function others(text: string): string[] {
  return text.split("\n").filter((l) =>
    !/^\s*(host|user|port|identity|known[_-]hosts)\s*=/i.test(l)
  );
}

Deno.test("editConfig: no file yet: a header and setup's lines", () => {
  const edit = editConfig(undefined, { ...SETUP, port: "2222" });
  strictEqual(
    edit.text,
    NEW_FILE_HEADER + [
      "host = rsendmail@relay.example.net",
      "port = 2222",
      "identity = /etc/sshsendmail/id_ed25519",
      "known_hosts = /etc/sshsendmail/known_hosts",
      "",
    ].join("\n"),
  );
  deepStrictEqual(edit.appended, ["host", "port", "identity", "known_hosts"]);
  ok(edit.changed);
  strictEqual(parseConfigFile(edit.text).port, 2222);
});

Deno.test("editConfig: the packaged template keeps every line; setup's are appended", () => {
  const edit = editConfig(EXAMPLE_CONFIG, SETUP);
  strictEqual(edit.text, EXAMPLE_CONFIG + OWNED_LINES.join("\n") + "\n");
  deepStrictEqual(edit.appended, ["host", "identity", "known_hosts"]);
  deepStrictEqual([edit.replaced, edit.removed], [[], []]);
  // The commented examples (#host = …) are not settings and stay comments.
  ok(EXAMPLE_CONFIG.includes("\n#host = rsendmail@relay.example.net\n"));
  const s = parseConfigFile(edit.text);
  deepStrictEqual(s.hosts, ["rsendmail@relay.example.net"]);
  strictEqual(s.identity, "/etc/sshsendmail/id_ed25519");
  strictEqual(s.knownHosts, "/etc/sshsendmail/known_hosts");
});

Deno.test("editConfig: the template itself has no active setting", () => {
  for (const line of EXAMPLE_CONFIG.split("\n")) {
    ok(line === "" || line.startsWith("#"), `an active line in the template: ${line}`);
  }
  deepStrictEqual(parseConfigFile(EXAMPLE_CONFIG).hosts, []);
});

Deno.test("editConfig: an admin's file: owned lines replaced in place, the rest byte for byte", () => {
  const admin = [
    "# my satellite",
    "host = old@relay.old.example",
    "adminaddr = ops@example.net",
    "",
    "  Port=2200",
    "aliases = /etc/aliases",
    "queue = yes",
    "spool = /var/spool/sshsendmail",
    "# identity = /root/commented",
    "identity = /root/.ssh/old_key",
    "max_age = 5d",
    "user = olduser",
    "",
  ].join("\n");
  const edit = editConfig(admin, SETUP);
  strictEqual(
    edit.text,
    [
      "# my satellite",
      "host = rsendmail@relay.example.net",
      "adminaddr = ops@example.net",
      "",
      "aliases = /etc/aliases",
      "queue = yes",
      "spool = /var/spool/sshsendmail",
      "# identity = /root/commented",
      "identity = /etc/sshsendmail/id_ed25519",
      "max_age = 5d",
      "known_hosts = /etc/sshsendmail/known_hosts",
      "",
    ].join("\n"),
  );
  deepStrictEqual(edit.replaced, ["host", "identity"]);
  deepStrictEqual(edit.removed, ["user", "port"]);
  deepStrictEqual(edit.appended, ["known_hosts"]);
  deepStrictEqual(others(edit.text), others(admin));
  const s = parseConfigFile(edit.text);
  deepStrictEqual(s.adminaddr, ["ops@example.net"]);
  strictEqual(s.aliasesFile, "/etc/aliases");
  strictEqual(s.maxAgeMs, 5 * 86_400_000);
  strictEqual(s.port, undefined);
  strictEqual(s.user, undefined);
});

Deno.test("editConfig: a repeated host (failover list) becomes setup's one relay", () => {
  const edit = editConfig("host = a.example\nhost = b.example, c.example\nreuse = yes\n", SETUP);
  strictEqual(edit.text, `host = ${SETUP.host}\nreuse = yes\n${OWNED_LINES.slice(1).join("\n")}\n`);
  deepStrictEqual(parseConfigFile(edit.text).hosts, [SETUP.host]);
});

Deno.test("editConfig: spellings the parser takes (known-hosts, HOST) are setup's too", () => {
  const edit = editConfig("HOST = x.example\nknown-hosts = /old/kh\n", SETUP);
  strictEqual(
    edit.text,
    `host = ${SETUP.host}\nknown_hosts = ${SETUP.known_hosts}\nidentity = ${SETUP.identity}\n`,
  );
});

Deno.test("editConfig: the same values again change nothing (lines kept as written)", () => {
  const once = editConfig(EXAMPLE_CONFIG, SETUP).text;
  const twice = editConfig(once, SETUP);
  strictEqual(twice.text, once);
  ok(!twice.changed);
  deepStrictEqual([twice.replaced, twice.appended, twice.removed], [[], [], []]);
  // A line already holding the value keeps its own spacing.
  const spaced =
    `host=${SETUP.host}\nidentity   =   ${SETUP.identity}\nknown_hosts = ${SETUP.known_hosts}`;
  const kept = editConfig(spaced, SETUP);
  strictEqual(kept.text, spaced, "no newline added to an unchanged file");
  ok(!kept.changed);
});

Deno.test("editConfig: CRLF lines and a missing final newline", () => {
  const edit = editConfig("adminaddr = a@example.net\r\nhost = old.example\r\nqueue = no", SETUP);
  strictEqual(
    edit.text,
    `adminaddr = a@example.net\r\nhost = ${SETUP.host}\r\nqueue = no\n` +
      `identity = ${SETUP.identity}\nknown_hosts = ${SETUP.known_hosts}\n`,
  );
  const s = parseConfigFile(edit.text);
  deepStrictEqual([s.hosts, s.queue], [[SETUP.host], false]);
});

Deno.test("editConfig: an empty file gets setup's lines only", () => {
  strictEqual(editConfig("", SETUP).text, OWNED_LINES.join("\n") + "\n");
});

Deno.test("editConfig: lines that are not settings are left alone", () => {
  // No `=`: not a setting setup owns (the parser would refuse it; setup does not judge).
  const text = "hostname without equals\n#port = 22\n   # indented comment\n";
  const edit = editConfig(text, SETUP);
  strictEqual(edit.text, text + OWNED_LINES.join("\n") + "\n");
});

Deno.test("editConfig: a value that would break the line format is refused", () => {
  for (const bad of ["a\nadminaddr = evil@example.net", "a\rb", " padded", ""]) {
    throws(() => editConfig("", { ...SETUP, host: bad }), /config_edit: host cannot hold/);
  }
});
