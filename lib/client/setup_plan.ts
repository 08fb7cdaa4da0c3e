/**
 * What `sshsendmail setup`'s options ask for: its option table and usage,
 * and the plan its steps carry out (the relay target, the settings it
 * writes, the forced command it prints, checked against the relay's own
 * admin grammar and the relay account's shell). Pure; the steps are
 * setup_io.ts's.
 *
 * @module
 */

import {
  applySetting,
  type ClientSettings,
  ConfigError,
  defaultSettings,
} from "./client_config.ts";
import type { ParseArgs } from "./client_args.ts";
import { SETUP_DIR } from "./client_constants.ts";
import { UsageError } from "../shared/errors.ts";
import { parseAdminArgs } from "../shared/relay_config.ts";
import type { ConfigEdit, SetupValues } from "./config_edit.ts";

export const SETUP_OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  identity: { type: "string" },
  "known-hosts": { type: "string" },
  rsendmail: { type: "string" },
  label: { type: "string" },
  "allow-sender": { type: "string", multiple: true },
  "max-size": { type: "string" },
  "install-with": { type: "string" },
  "admin-identity": { type: "string" },
  test: { type: "string" },
  fingerprint: { type: "string", multiple: true },
  "max-messages": { type: "string" },
  "max-sessions": { type: "string" },
  help: { type: "boolean" },
} as const;

/** `sshsendmail setup --help`. */
export const SETUP_USAGE =
  `usage: sshsendmail setup --host [USER@]RELAY [--port P] [--fingerprint SHA256:...]
                         [--install-with ADMIN] [--admin-identity FILE] [--test ADDRESS]
                         [--label NAME] [--allow-sender ADDR|@DOMAIN]... [--max-size BYTES]
                         [--max-messages N/PERIOD] [--max-sessions N]
                         [--identity FILE] [--known-hosts FILE] [--rsendmail PATH]
Makes the satellite's key, records and checks the relay's host key, prints
(or with --install-with installs) the relay's authorized_keys line, writes
the relay settings into the config file, and with --test sends a message.
See sshsendmail(8).
`;

/** The rate a satellite's key gets unless setup is told otherwise. */
const DEFAULT_MAX_MESSAGES = "200/hour";
/** Concurrent sessions: the service keeps one; a few more for pipe and -q. */
const DEFAULT_MAX_SESSIONS = "4";

/** An OpenSSH SHA-256 fingerprint as `ssh-keygen -lf` prints it. */
const FINGERPRINT_REGEXP = /^SHA256:[A-Za-z0-9+/]{43}$/;
/** Words sshd's `$SHELL -c` passes on unchanged (the forced command is not quoted). */
const SHELL_SAFE_REGEXP = /^[A-Za-z0-9@%+=:,./_-]+$/;

/**
 * Checks the forced command setup will print: the relay's own admin
 * grammar must take every word (a value it would refuse makes a relay that
 * defers all mail), and every word must reach it unchanged through the
 * relay account's shell (a `'` would make a line the shell cannot parse).
 */
function checkForcedCommand(words: readonly string[]): void {
  const [, ...admin] = words;
  for (const w of words) {
    if (!SHELL_SAFE_REGEXP.test(w)) {
      throw new ConfigError(
        `setup: "${
          w.replace(/[^ -~]/g, "?").slice(0, 64)
        }" cannot be carried in the forced command`,
      );
    }
  }
  let parsed;
  try {
    parsed = parseAdminArgs(admin);
  } catch (err) {
    throw new ConfigError(`setup: the relay would refuse it: ${(err as Error).message}`);
  }
  if (parsed.rest.length > 0) {
    throw new ConfigError(`setup: the relay would not take "${parsed.rest[0]}" as an option`);
  }
}
const LABEL_REGEXP = /^[A-Za-z0-9._@+-]{1,64}$/;

/** The settings setup owns, as it writes them into the config file. */
export function setupValues(s: ClientSettings, host: string): SetupValues {
  return {
    host,
    user: undefined, // the user is in host
    port: s.port === undefined ? undefined : String(s.port),
    identity: s.identity,
    known_hosts: s.knownHosts,
  };
}

/** Step 4's report: what changed in the file, every other line kept. */
export function describeEdit(edit: ConfigEdit): string {
  const parts: string[] = [];
  const changed = [...edit.replaced, ...edit.appended];
  if (changed.length > 0) parts.push(`set ${changed.join(", ")}`);
  if (edit.removed.length > 0) parts.push(`removed ${edit.removed.join(", ")}`);
  return parts.join("; ");
}

/** What setup's options ask for, checked. */
export interface SetupPlan {
  values: SetupOptionValues;
  s: ClientSettings;
  /** `user@relay`. */
  target: string;
  relayUser: string;
  /** The relay's forced command, as words. */
  forced: string[];
  /** --fingerprint values. */
  expected: string[];
}

export type SetupOptionValues = ReturnType<typeof parseSetupOptions>;

/** setup's options, parsed strictly by node:util's parseArgs (handed in: it loads only for setup). */
export function parseSetupOptions(argv: readonly string[], parseArgs: ParseArgs) {
  try {
    return parseArgs({ args: [...argv], options: SETUP_OPTIONS, strict: true }).values;
  } catch (err) {
    throw new UsageError(`setup: ${err instanceof Error ? err.message.split("\n")[0] : ""}`);
  }
}

/**
 * Checks the options (the help aside) and makes the settings setup writes;
 * `hostname` (the satellite's) names its key's label unless --label does.
 */
export function planSetup(values: SetupOptionValues, hostname: string): SetupPlan {
  if (values.host === undefined) throw new UsageError("setup needs --host [USER@]RELAY");
  const s = defaultSettings();
  applySetting(s, "host", values.host);
  const host = s.hosts[0]!;
  if (values.port) applySetting(s, "port", values.port);
  applySetting(s, "identity", values.identity ?? `${SETUP_DIR}/id_ed25519`);
  applySetting(s, "known-hosts", values["known-hosts"] ?? `${SETUP_DIR}/known_hosts`);
  const relayUser = host.includes("@") ? host.slice(0, host.indexOf("@")) : "rsendmail";
  const target = host.includes("@") ? host : `${relayUser}@${host}`;
  s.hosts = [target];
  const label = values.label ?? hostname.split(".")[0] ?? "satellite";
  if (!LABEL_REGEXP.test(label)) throw new ConfigError("setup: invalid --label");
  const rsendmail = values.rsendmail ?? "/usr/sbin/rsendmail";
  if (!/^\/[A-Za-z0-9._/-]+$/.test(rsendmail)) {
    throw new ConfigError("setup: invalid --rsendmail");
  }
  // Limits a stolen key meets (refused for now, 4.7.0: an honest queue waits).
  const policy: string[] = [
    "--max-messages",
    values["max-messages"] ?? DEFAULT_MAX_MESSAGES,
    "--max-sessions",
    values["max-sessions"] ?? DEFAULT_MAX_SESSIONS,
  ];
  for (const a of values["allow-sender"] ?? []) policy.push("--allow-sender", a);
  if (values["max-size"]) policy.push("--max-size", values["max-size"]);
  const forced = [rsendmail, "--label", label, "--require-integrity", ...policy];
  checkForcedCommand(forced);
  const expected = values.fingerprint ?? [];
  if (expected.some((f) => !FINGERPRINT_REGEXP.test(f))) {
    throw new ConfigError("setup: --fingerprint wants SHA256:… as ssh-keygen -lf prints it");
  }
  return { values, s, target, relayUser, forced, expected };
}
