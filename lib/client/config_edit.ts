/**
 * What `sshsendmail setup` does to /etc/sshsendmail.conf: it edits the
 * lines of the settings it owns (host, user, port, identity, known_hosts)
 * in place and keeps every other line as it was (comments, blank lines,
 * adminaddr, aliases, queue, spool…), so the file dpkg ships as a conffile
 * stays the admin's. Pure.
 *
 * - The first active line of an owned key is replaced in place (kept
 *   byte for byte when it already holds the value); later active lines of
 *   that key go (host is repeatable, setup sets one relay).
 * - An owned key setup leaves unset (user: the user is in host; port
 *   without --port) loses its active lines, so the file says what setup
 *   checked.
 * - An owned key missing from the file is appended at the end.
 * - Commented lines (`#host = …`, the template's examples) are never
 *   touched.
 *
 * @module
 */

/** The settings setup owns, by the key it writes. */
export const SETUP_KEYS = ["host", "user", "port", "identity", "known_hosts"] as const;

/** One of the settings setup owns. */
export type SetupKey = typeof SETUP_KEYS[number];

/** What setup sets: a value writes `key = value`; undefined removes the key's lines. */
export type SetupValues = Readonly<Record<SetupKey, string | undefined>>;

/** The edited text and what changed, for setup's report. */
export interface ConfigEdit {
  text: string;
  /** Keys whose line now holds another value (replaced in place). */
  replaced: SetupKey[];
  /** Keys added at the end of the file. */
  appended: SetupKey[];
  /** Keys whose lines were removed (left to their default). */
  removed: SetupKey[];
  /** Whether the text differs from the input. */
  changed: boolean;
}

/** The first line of a file setup creates from nothing. */
export const NEW_FILE_HEADER =
  "# Written by sshsendmail setup, which edits only the host, user, port, identity and\n" +
  "# known_hosts lines and keeps every other line. See sshsendmail(8).\n";

const SPELLINGS: Readonly<Record<string, SetupKey>> = {
  host: "host",
  user: "user",
  port: "port",
  identity: "identity",
  "known_hosts": "known_hosts",
  "known-hosts": "known_hosts",
};

/** The owned key an active `key = value` line sets (as the config parser reads it), if any. */
function ownedKey(line: string): { key: SetupKey; value: string } | undefined {
  const t = line.replace(/\r$/, "").trim();
  if (t === "" || t.startsWith("#")) return undefined;
  const eq = t.indexOf("=");
  if (eq < 0) return undefined;
  const key = SPELLINGS[t.slice(0, eq).trim().toLowerCase()];
  return key === undefined ? undefined : { key, value: t.slice(eq + 1).trim() };
}

/**
 * Edits `text` (undefined: no file yet) so that setup's settings say
 * `values`, keeping every other line.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { editConfig } from "./config_edit.ts";
 * const edit = editConfig("# mine\nadminaddr = me@example.net\n#host = x\n", {
 *   host: "rsendmail@relay.example.net",
 *   user: undefined,
 *   port: undefined,
 *   identity: "/etc/sshsendmail/id_ed25519",
 *   known_hosts: "/etc/sshsendmail/known_hosts",
 * });
 * strictEqual(
 *   edit.text,
 *   "# mine\nadminaddr = me@example.net\n#host = x\n" +
 *     "host = rsendmail@relay.example.net\nidentity = /etc/sshsendmail/id_ed25519\n" +
 *     "known_hosts = /etc/sshsendmail/known_hosts\n",
 * );
 * ```
 */
export function editConfig(text: string | undefined, values: SetupValues): ConfigEdit {
  for (const key of SETUP_KEYS) {
    const v = values[key];
    if (v !== undefined && (/[\r\n]/.test(v) || v.trim() !== v || v === "")) {
      throw new Error(`config_edit: ${key} cannot hold ${JSON.stringify(v)}`);
    }
  }
  const input = text ?? NEW_FILE_HEADER;
  const lines = input.split("\n");
  const endsWithNewline = lines.length > 1 && lines[lines.length - 1] === "";
  if (endsWithNewline || input === "") lines.pop();
  const seen = new Set<SetupKey>();
  const replaced: SetupKey[] = [];
  const removed: SetupKey[] = [];
  const out: string[] = [];
  for (const line of lines) {
    const owned = ownedKey(line);
    if (owned === undefined) {
      out.push(line);
      continue;
    }
    const want = values[owned.key];
    if (want === undefined || seen.has(owned.key)) {
      // Left to its default, or a later line of a key already set.
      if (want === undefined && !removed.includes(owned.key)) removed.push(owned.key);
      if (want !== undefined && !replaced.includes(owned.key)) replaced.push(owned.key);
      continue;
    }
    seen.add(owned.key);
    if (owned.value === want) {
      out.push(line);
    } else {
      out.push(`${owned.key} = ${want}${line.endsWith("\r") ? "\r" : ""}`);
      replaced.push(owned.key);
    }
  }
  const appended: SetupKey[] = [];
  for (const key of SETUP_KEYS) {
    const want = values[key];
    if (want === undefined || seen.has(key)) continue;
    out.push(`${key} = ${want}`);
    appended.push(key);
  }
  const result = out.length === 0 ? "" : `${out.join("\n")}\n`;
  // A file that did not end with a newline and gained nothing keeps its last byte.
  const same = text !== undefined &&
    (result === text || (!endsWithNewline && appended.length === 0 && result === `${text}\n`));
  return {
    text: same ? text! : result,
    replaced: SETUP_KEYS.filter((k) => replaced.includes(k)),
    appended,
    removed: SETUP_KEYS.filter((k) => removed.includes(k)),
    changed: !same,
  };
}
