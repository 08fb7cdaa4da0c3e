/**
 * sshsendmail's settings: from its own options (Postfix pipe, nullmailer's
 * options block) or from a `key = value` file (standalone mode).
 *
 * @module
 */

import { ConfigError } from "../shared/errors.ts";

/** The one config-error class (lib/shared/errors.ts), where client code looks for it. */
export { ConfigError };
import { isEnvelopeAddress } from "../shared/address.ts";
import { parseDuration } from "./queue_entry.ts";
import { hasControl } from "../shared/words.ts";
import { SPOOL_ROOT } from "../shared/layout.ts";

/** Default config file of the standalone mode. */
export const DEFAULT_CONFIG_FILE = "/etc/sshsendmail.conf";

/** Where to send and how to reach the relay. */
export interface ClientSettings {
  /** Relays to try in order: `[user@]host`. */
  hosts: string[];
  user: string | undefined;
  port: number | undefined;
  identity: string | undefined;
  knownHosts: string | undefined;
  /** Extra `-o KEY=VALUE` options for ssh. */
  sshOptions: string[];
  /** Program name the relay runs (shown to a relay without a forced command). */
  relayCommand: string;
  connectTimeout: number;
  /**
   * Seconds one ssh session may take in all (connect, send, the relay's
   * answer). A relay that accepts and then hangs is given up after this
   * (the message defers or is queued); ssh's keepalives cannot see it,
   * since the relay's sshd still answers them.
   */
  sshTimeout: number;
  /** Reuse one connection (ControlMaster/ControlPersist). */
  reuse: boolean;
  /** Send size and SHA-256 (off only for an upstream 1.1.4 relay). */
  integrity: boolean;
  /**
   * Standalone: hand mail to the satellite service through its drop
   * directory (yes, the default), or send directly with the caller's key
   * and fail loudly when the relay cannot take it (no).
   */
  queue: boolean;
  /** The service's spool (drop directory, private queue, replies). */
  spool: string;
  /** Largest message the service takes from a local user, in bytes. */
  maxSize: number;
  /** Seconds the service keeps an idle batch session to the relay open. */
  sessionIdle: number;
  /** Age after which a queued message is given up, in ms. */
  maxAgeMs: number;
  /** Standalone: where mail for local users goes (nullmailer's adminaddr). */
  adminaddr: string[];
  /** Standalone: an /etc/aliases-style file for local recipients. */
  aliasesFile: string | undefined;
  /** Standalone: the mail domain (default /etc/mailname, else the host name). */
  domain: string | undefined;
}

/** Defaults for every mode. */
export function defaultSettings(): ClientSettings {
  return {
    hosts: [],
    user: undefined,
    port: undefined,
    identity: undefined,
    knownHosts: undefined,
    sshOptions: [],
    relayCommand: "rsendmail",
    connectTimeout: 10,
    sshTimeout: 600,
    reuse: false,
    integrity: true,
    queue: true,
    spool: SPOOL_ROOT,
    maxSize: 52_428_800,
    sessionIdle: 60,
    maxAgeMs: 30 * 86_400_000,
    adminaddr: [],
    aliasesFile: undefined,
    domain: undefined,
  };
}

const HOST_REGEXP = /^(?:([A-Za-z0-9._][A-Za-z0-9._-]*)@)?([A-Za-z0-9._:[\]][A-Za-z0-9._:[\]-]*)$/;
const USER_REGEXP = /^[A-Za-z0-9._][A-Za-z0-9._-]*$/;
const SSH_OPTION_REGEXP = /^[A-Za-z][A-Za-z0-9]*=[^\s]/;
const PORT_REGEXP = /^[1-9][0-9]{0,4}$/;
const YES_NO: Readonly<Record<string, boolean>> = {
  yes: true,
  no: false,
  true: true,
  false: false,
  on: true,
  off: false,
  "1": true,
  "0": false,
};

/** Checks a `[user@]host` relay spec; refuses anything ssh could read as an option. */
export function checkHost(spec: string): string {
  if (!HOST_REGEXP.test(spec)) {
    throw new ConfigError(`invalid relay host "${safe(spec)}"`);
  }
  return spec;
}

function safe(text: string): string {
  return text.replace(/[^ -~]/g, "?").slice(0, 64);
}

/** Sets one setting from its checked value; `key` is the name it was given under. */
type Setter = (s: ClientSettings, value: string, key: string) => void;

/** A whole number of at most `digits` digits, or the error `invalid NAME`. */
function wholeNumber(
  digits: number,
  name: string,
  set: (s: ClientSettings, n: number) => void,
): Setter {
  const pattern = new RegExp(`^[1-9][0-9]{0,${digits - 1}}$`);
  return (s, value) => {
    if (!pattern.test(value)) throw new ConfigError(`invalid ${name}`);
    set(s, Number(value));
  };
}

/** An absolute path (the error names the key as given). */
function absolutePath(set: (s: ClientSettings, path: string) => void): Setter {
  return (s, value, key) => {
    if (!value.startsWith("/")) throw new ConfigError(`${key} wants an absolute path`);
    set(s, value);
  };
}

/** yes/no (true/false, on/off, 1/0). */
function yesNo(field: "reuse" | "queue" | "integrity"): Setter {
  return (s, value, key) => {
    const v = YES_NO[value.toLowerCase()];
    if (v === undefined) throw new ConfigError(`${key} wants yes or no`);
    s[field] = v;
  };
}

/** Taken and ignored. */
const IGNORED: Setter = () => {};

/** Every setting: its names (options use `-`, the file `_`) and how it is set. */
const SETTINGS: ReadonlyArray<readonly [readonly string[], Setter]> = [
  [["host"], (s, value) => {
    for (const h of value.split(/[\s,]+/).filter(Boolean)) s.hosts.push(checkHost(h));
  }],
  [["user"], (s, value) => {
    if (!USER_REGEXP.test(value)) throw new ConfigError("invalid relay user");
    s.user = value;
  }],
  [["port"], (s, value) => {
    if (!PORT_REGEXP.test(value) || Number(value) > 65535) {
      throw new ConfigError("invalid relay port");
    }
    s.port = Number(value);
  }],
  [["identity"], absolutePath((s, path) => s.identity = path)],
  [["known-hosts", "known_hosts"], absolutePath((s, path) => s.knownHosts = path)],
  [["ssh-option", "ssh_option"], (s, value) => {
    if (!SSH_OPTION_REGEXP.test(value)) throw new ConfigError("ssh_option wants KEY=VALUE");
    s.sshOptions.push(value);
  }],
  [["relay-command", "relay_command"], (s, value) => {
    if (!/^[A-Za-z0-9._/-]+$/.test(value) || value.startsWith("-")) {
      throw new ConfigError("invalid relay_command");
    }
    s.relayCommand = value;
  }],
  [
    ["connect-timeout", "connect_timeout"],
    wholeNumber(4, "connect_timeout", (s, n) => {
      s.connectTimeout = n;
    }),
  ],
  [["ssh-timeout", "ssh_timeout"], wholeNumber(6, "ssh_timeout", (s, n) => s.sshTimeout = n)],
  [["spool"], (s, value) => {
    if (!/^\/[A-Za-z0-9._/-]*$/.test(value) || value.split("/").includes("..")) {
      throw new ConfigError("spool wants an absolute path");
    }
    s.spool = value.replace(/\/+$/, "") || "/";
  }],
  [["max_size", "max-size"], wholeNumber(12, "max_size", (s, n) => s.maxSize = n)],
  [
    ["session_idle", "session-idle"],
    wholeNumber(6, "session_idle", (s, n) => {
      s.sessionIdle = n;
    }),
  ],
  // the per-user queues are gone: the service's spool replaced them
  [["queue_dir", "queue-dir"], IGNORED],
  [["max_age", "max-age"], (s, value) => {
    const ms = parseDuration(value);
    if (ms === undefined || ms === 0) throw new ConfigError("max_age wants e.g. 30d");
    s.maxAgeMs = ms;
  }],
  [["adminaddr"], (s, value) => {
    for (const a of value.split(/[\s,]+/).filter(Boolean)) {
      if (!isEnvelopeAddress(a) || !a.includes("@")) {
        throw new ConfigError("adminaddr wants full addresses");
      }
      s.adminaddr.push(a);
    }
  }],
  [["aliases"], (s, value) => {
    if (!value.startsWith("/")) throw new ConfigError("aliases wants an absolute path");
    s.aliasesFile = value;
  }],
  [["domain"], (s, value) => {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(value)) {
      throw new ConfigError("invalid domain");
    }
    s.domain = value.toLowerCase();
  }],
  [["reuse"], yesNo("reuse")],
  [["queue"], yesNo("queue")],
  [["integrity"], yesNo("integrity")],
  // accepted for upstream compatibility; nothing to set here
  [["loglevel", "log-level", "mta"], IGNORED],
];

const SETTERS: ReadonlyMap<string, Setter> = new Map(
  SETTINGS.flatMap(([names, set]) => names.map((name) => [name, set] as const)),
);

/** Applies one setting by name (shared by options, nullmailer's block and the file). */
export function applySetting(s: ClientSettings, key: string, value: string): void {
  if (hasControl(value)) throw new ConfigError(`invalid value for ${safe(key)}`);
  const set = SETTERS.get(key);
  if (set === undefined) throw new ConfigError(`unknown setting "${safe(key)}"`);
  set(s, value, key);
}

/**
 * Parses a config file: `key = value` lines, `#` comments, blank lines.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseConfigFile } from "./client_config.ts";
 * deepStrictEqual(parseConfigFile("host = relay.example\nport=2222\n").port, 2222);
 * ```
 */
export function parseConfigFile(text: string, name = "config"): ClientSettings {
  const s = defaultSettings();
  for (const [n, raw] of text.split("\n").entries()) {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    // Errors name the file and the line, as msmtp's do.
    if (eq < 0) throw new ConfigError(`${name}:${n + 1}: expected key = value`);
    try {
      applySetting(s, line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
    } catch (err) {
      if (err instanceof ConfigError) {
        throw new ConfigError(`${name}:${n + 1}: ${err.message}`);
      }
      throw err;
    }
  }
  return s;
}
