/**
 * The relay's admin options (from the forced command's own argv, never from
 * the peer) and the per-key policy checks they drive.
 *
 * @module
 */

import { domainOf, isEnvelopeAddress } from "./address.ts";
import { ConfigError, DataError, PolicyError } from "./errors.ts";

export { ConfigError };
import { SENDMAIL_PATH, SPOOL_DIR, STATE_DIR, SYSLOG_SOCKET } from "./layout.ts";
import type { SendmailRequest } from "./sendmail_args.ts";

/** syslog severities, most severe first (RFC 5424 numbers). */
export const LOG_LEVELS = {
  err: 3,
  warning: 4,
  notice: 5,
  info: 6,
  debug: 7,
} as const;
/** A syslog severity name. */
export type LogLevel = keyof typeof LOG_LEVELS;

/** Everything the admin may set for one key. */
export interface RelayConfig {
  sendmail: string;
  allowSenders: string[];
  maxSize: number;
  maxRecipients: number;
  label: string;
  requireIntegrity: boolean;
  logLevel: LogLevel;
  syslogSocket: string;
  spoolDir: string;
  idleTimeoutMs: number;
  sendmailTimeoutMs: number;
  /** Where the duplicate record lives. */
  stateDir: string;
  /** How long a delivered id is remembered. */
  dedupDays: number;
  /** At most this many messages per period for this label (undefined: no limit). */
  maxMessages: MessageRate | undefined;
  /** At most this many concurrent sessions of this label (0: no limit). */
  maxSessions: number;
  /** A message must arrive whole within this, however steadily it trickles. */
  messageTimeoutMs: number;
  /** A session ends (at a frame boundary) after this. */
  sessionTimeoutMs: number;
  /** After the first minute, a message slower than this many bytes a second is cut. */
  minRate: number;
  /** From:/Sender: must also match --allow-sender. */
  allowHeaderSender: boolean;
  /** In a batch, at most this many sendmail processes run at once (1: one after another). */
  parallel: number;
}

/** `--max-messages N/PERIOD`. */
export interface MessageRate {
  count: number;
  periodMs: number;
}

const PERIODS: Readonly<Record<string, number>> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};

/**
 * Parses `--max-messages` values: `200/hour`, `10/5m`, `1000/day`.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseRate } from "./relay_config.ts";
 * deepStrictEqual(parseRate("200/hour"), { count: 200, periodMs: 3_600_000 });
 * deepStrictEqual(parseRate("10/5m"), { count: 10, periodMs: 300_000 });
 * ```
 */
export function parseRate(text: string): MessageRate | undefined {
  const m = /^([1-9][0-9]{0,8})\/([1-9][0-9]{0,5})?([a-z]+)$/.exec(text);
  const unit = m ? PERIODS[m[3]!] : undefined;
  if (!m || unit === undefined) return undefined;
  return { count: Number(m[1]), periodMs: Number(m[2] ?? 1) * unit };
}

/** Defaults: Postfix's message_size_limit and smtpd_recipient_limit. */
export const DEFAULT_CONFIG: Readonly<RelayConfig> = {
  sendmail: SENDMAIL_PATH,
  allowSenders: [],
  maxSize: 10_240_000,
  maxRecipients: 1000,
  label: "",
  requireIntegrity: false,
  logLevel: "info",
  syslogSocket: SYSLOG_SOCKET,
  spoolDir: SPOOL_DIR,
  idleTimeoutMs: 300_000,
  sendmailTimeoutMs: 300_000,
  stateDir: STATE_DIR,
  dedupDays: 7,
  maxMessages: undefined,
  maxSessions: 0,
  messageTimeoutMs: 600_000,
  sessionTimeoutMs: 3_600_000,
  minRate: 256,
  allowHeaderSender: false,
  parallel: 4,
};

/** `--parallel` bounds: enough to keep a queue manager busy, few enough to spare the relay. */
export const MAX_PARALLEL = 16;

/**
 * A mistake in the forced command: the relay's fault, so mail is deferred.
 * The peer sees only "relay configuration error"; the detail names the
 * option, in the log.
 */
export function adminError(detail: string): ConfigError {
  return new ConfigError("relay configuration error", detail);
}

const LABEL_REGEXP = /^[A-Za-z0-9._@+-]{1,64}$/;
const COUNT_REGEXP = /^[1-9][0-9]{0,11}$/;
const ALLOW_DOMAIN_REGEXP = /^@[A-Za-z0-9.-]+$/;

function count(name: string, value: string): number {
  if (!COUNT_REGEXP.test(value)) throw adminError(`${name} wants a number`);
  return Number(value);
}

/** Admin options: name → how its value updates the config. */
const ADMIN_OPTIONS: Readonly<
  Record<string, (c: RelayConfig, v: string) => void>
> = {
  "--sendmail": (c, v) => {
    if (!v.startsWith("/")) throw adminError("--sendmail wants an absolute path");
    c.sendmail = v;
  },
  "--allow-sender": (c, v) => {
    if (!ALLOW_DOMAIN_REGEXP.test(v) && !isEnvelopeAddress(v)) {
      throw adminError("--allow-sender wants ADDRESS or @DOMAIN");
    }
    c.allowSenders.push(v.toLowerCase());
  },
  "--max-size": (c, v) => (c.maxSize = count("--max-size", v)),
  "--max-recipients": (c, v) => (c.maxRecipients = count("--max-recipients", v)),
  "--label": (c, v) => {
    if (!LABEL_REGEXP.test(v)) throw adminError("--label wants [A-Za-z0-9._@+-]{1,64}");
    c.label = v;
  },
  "--log-level": (c, v) => {
    const level = v.toLowerCase().replace(/^error$/, "err").replace(/^warn$/, "warning");
    if (!Object.hasOwn(LOG_LEVELS, level)) throw adminError("--log-level unknown");
    c.logLevel = level as LogLevel;
  },
  "--syslog-socket": (c, v) => {
    if (!v.startsWith("/")) throw adminError("--syslog-socket wants an absolute path");
    c.syslogSocket = v;
  },
  "--spool-dir": (c, v) => {
    if (!v.startsWith("/")) throw adminError("--spool-dir wants an absolute path");
    c.spoolDir = v;
  },
  "--state-dir": (c, v) => {
    if (!v.startsWith("/")) throw adminError("--state-dir wants an absolute path");
    c.stateDir = v;
  },
  "--dedup-days": (c, v) => (c.dedupDays = count("--dedup-days", v)),
  "--max-messages": (c, v) => {
    const rate = parseRate(v);
    if (!rate) throw adminError("--max-messages wants N/PERIOD, e.g. 200/hour");
    c.maxMessages = rate;
  },
  "--max-sessions": (c, v) => (c.maxSessions = count("--max-sessions", v)),
  "--message-timeout": (c, v) => (c.messageTimeoutMs = count("--message-timeout", v) * 1000),
  "--session-timeout": (c, v) => (c.sessionTimeoutMs = count("--session-timeout", v) * 1000),
  "--min-rate": (c, v) => (c.minRate = count("--min-rate", v)),
  "--idle-timeout": (c, v) => (c.idleTimeoutMs = count("--idle-timeout", v) * 1000),
  "--sendmail-timeout": (c, v) => (c.sendmailTimeoutMs = count("--sendmail-timeout", v) * 1000),
  "--parallel": (c, v) => {
    const n = count("--parallel", v);
    if (n > MAX_PARALLEL) throw adminError(`--parallel wants 1 to ${MAX_PARALLEL}`);
    c.parallel = n;
  },
};
/** Upstream rsendmail 1.1.4's spelling, accepted in authorized_keys lines. */
const ADMIN_ALIASES: Readonly<Record<string, string>> = { "--loglevel": "--log-level" };
/** Admin flags without a value. */
const ADMIN_FLAGS: Readonly<Record<string, (c: RelayConfig) => void>> = {
  "--require-integrity": (c) => (c.requireIntegrity = true),
  "--allow-header-sender": (c) => (c.allowHeaderSender = true),
};

/** The admin config and the request words that followed the admin options. */
export interface AdminArgs {
  config: RelayConfig;
  /** Words after the admin options (and an optional `--`). */
  rest: string[];
}

/**
 * Parses the relay's own argv. Admin options (`--name value` or
 * `--name=value`) come first; parsing stops at `--` or at the first other
 * word, which starts the request of a login without a forced command.
 *
 * @throws {ConfigError} On a malformed admin option value.
 */
export function parseAdminArgs(argv: readonly string[]): AdminArgs {
  const config: RelayConfig = { ...DEFAULT_CONFIG, allowSenders: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") {
      i++;
      break;
    }
    const eq = word.indexOf("=");
    const rawName = eq < 0 ? word : word.slice(0, eq);
    const name = ADMIN_ALIASES[rawName] ?? rawName;
    if (Object.hasOwn(ADMIN_FLAGS, name) && eq < 0) {
      ADMIN_FLAGS[name]!(config);
      continue;
    }
    if (!Object.hasOwn(ADMIN_OPTIONS, name)) break;
    let value: string | undefined;
    if (eq >= 0) value = word.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined) throw adminError(`${name} needs a value`);
    ADMIN_OPTIONS[name]!(config, value);
  }
  return { config, rest: argv.slice(i) };
}

/** True when `sender` is allowed by the key's `--allow-sender` list. */
export function isSenderAllowed(sender: string, allow: readonly string[]): boolean {
  if (allow.length === 0) return true;
  const lower = sender.toLowerCase();
  const domain = domainOf(sender);
  return allow.some((a) => a.startsWith("@") ? a === `@${domain}` : a === lower);
}

/**
 * Applies the key's policy to a parsed request, before any byte is read.
 * The null sender and an absent `-f` (the relay account itself) are always
 * allowed: bounces need the first, and the second names the relay.
 *
 * @throws {PolicyError} Sender not allowed, integrity data missing (EX_NOPERM).
 * @throws {DataError} Too many recipients, declared size over the limit (EX_DATAERR).
 */
export function checkPolicy(req: SendmailRequest, config: RelayConfig): void {
  if (req.sender && !isSenderAllowed(req.sender, config.allowSenders)) {
    throw new PolicyError("sender not allowed for this key", "5.7.1");
  }
  if (config.requireIntegrity && (req.size === undefined || req.sha256 === undefined)) {
    throw new PolicyError("integrity data required for this key", "5.7.0");
  }
  if (req.recipients.length > config.maxRecipients) {
    throw new DataError("too many recipients", "5.5.3");
  }
  if (req.size !== undefined && req.size > config.maxSize) {
    throw new DataError("message too big", "5.3.4");
  }
}
