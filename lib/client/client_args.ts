/**
 * sshsendmail's command line: its own long options (parsed by node:util
 * parseArgs, strict) mixed with the sendmail options its callers pass
 * (parsed by the same grammar the relay uses, so both sides agree).
 *
 * The command line is split once (splitClientArgv in split_client_argv.ts); node:util is
 * handed in by the caller, which loads it only when {@link needsParseArgs}
 * says so: loading it starts Deno's Node layer, 10–18 ms of a client start.
 * Cron, mutt and the submitter pass no own options; a Postfix pipe line
 * passes them in plain forms, which plain_own_values.ts reads as parseArgs
 * would (it leaves every other form to parseArgs).
 *
 * @module
 */

import type { parseArgs } from "node:util";
import { isEnvelopeAddress } from "../shared/address.ts";
import { applySetting, type ClientSettings, defaultSettings } from "./client_config.ts";
import { UsageError } from "../shared/errors.ts";
import { parseSendmailArgs, type SendmailRequest } from "../shared/sendmail_args.ts";
import { plainOwnValues } from "./plain_own_values.ts";
import {
  type ClientCommand,
  type Mta,
  OWN_OPTIONS,
  type SplitArgv,
  VALUE_OPTIONS,
} from "./split_client_argv.ts";

/**
 * The detail of a UsageError about sshsendmail's own long options: no
 * sendmail caller passes those, so when the message comes on a pipe (a
 * Postfix pipe line with a typo) the caller must defer, never bounce.
 */
export const OWN_OPTION_ERROR = "own option";

/** The parsed command line. */
export interface ClientArgs {
  mta: Mta;
  /** Settings from options; `configured` is false when no --host was given. */
  settings: ClientSettings;
  configured: boolean;
  configFile: string | undefined;
  /** The sendmail request (undefined in nullmailer mode: it comes on fd 3). */
  request: SendmailRequest | undefined;
  /** What to do: send a message (the default), or a queue or info command. */
  command: ClientCommand;
  /** The queue id for `--remove`. */
  removeId: string | undefined;
  /** The address for `--test`. */
  testAddress: string | undefined;
  /** Postfix's `${queue_id}` (pipe mode): the relay's duplicate record then knows its retries. */
  queueId: string | undefined;
  /** `--flush --all`: every user's queue (root). */
  all: boolean;
  /** `--flush --due`: accepted for old timers and cron lines; the service decides. */
  due: boolean;
  /** `-v`: report what happened (sendmail -q -v). */
  verbose: boolean;
}

/**
 * The null sender as callers spell it: Postfix pipe(8) expands an empty
 * sender to MAILER-DAEMON, others pass "" or "<>".
 */
export function normalizeSender(req: SendmailRequest): SendmailRequest {
  if (req.sender !== undefined && req.sender.toUpperCase() === "MAILER-DAEMON") {
    return { ...req, sender: "" };
  }
  return req;
}

/**
 * Postfix pipe(8) expands `${sender}` and `${recipient}` in Postfix's
 * internal form unless its line sets `flags=q`: `"quoted local"@example.net`
 * arrives as `quoted local@example.net`. Quotes such a local part the way
 * `flags=q` would; an address that is valid already, or that stays invalid
 * when quoted, or that starts with `-`, is returned unchanged.
 *
 * @example Usage
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { quoteInternalForm } from "./client_args.ts";
 * equal(quoteInternalForm("quoted local@example.net"), '"quoted local"@example.net');
 * equal(quoteInternalForm("o'brien@example.net"), "o'brien@example.net");
 * ```
 */
export function quoteInternalForm(address: string): string {
  if (address === "" || address.startsWith("-") || isEnvelopeAddress(address)) return address;
  const at = address.lastIndexOf("@");
  const local = at < 0 ? address : address.slice(0, at);
  const quoted = `"${local.replace(/["\\]/g, "\\$&")}"${at < 0 ? "" : address.slice(at)}`;
  return isEnvelopeAddress(quoted) ? quoted : address;
}

/** Applies {@link quoteInternalForm} to the sender and recipient words of a sendmail argv. */
function quoteAddressWords(mail: readonly string[]): string[] {
  const out: string[] = [];
  let operands = false;
  for (let i = 0; i < mail.length; i++) {
    const word = mail[i]!;
    if (operands) {
      out.push(quoteInternalForm(word));
    } else if (word === "--") {
      operands = true;
      out.push(word);
    } else if (word === "-f" || word === "-r") {
      out.push(word);
      if (i + 1 < mail.length) out.push(quoteInternalForm(mail[++i]!));
    } else if (VALUE_OPTIONS.has(word)) {
      out.push(word);
      if (i + 1 < mail.length) out.push(mail[++i]!);
    } else {
      out.push(word.startsWith("-") ? word : quoteInternalForm(word));
    }
  }
  return out;
}

/** Own options that set a setting of the same name, in the order they are applied. */
const SETTING_OPTIONS = [
  "host",
  "user",
  "port",
  "identity",
  "known-hosts",
  "ssh-option",
  "relay-command",
  "connect-timeout",
] as const;

/** The commands an own option (or a sendmail word) asks for, first match wins; else "send". */
const COMMAND_ORDER: readonly Exclude<ClientCommand, "send">[] = [
  "help",
  "version",
  "serve",
  "migrate",
  "init-spool",
  "flush",
  "list",
  "remove",
  "test",
  "smtp",
];

/** node:util's parseArgs. */
export type ParseArgs = typeof parseArgs;

/** Parses the own options, strictly. */
function parseOwn(own: string[], parseArgs: ParseArgs) {
  try {
    return parseArgs({ args: own, options: OWN_OPTIONS, strict: true, allowPositionals: false })
      .values;
  } catch (err) {
    // A usage error (64, 5.5.4), as sendmail's; in a Postfix pipe it still
    // defers (failure_report.ts: every fault but a malformed address does there),
    // and nullmailer's code for it is temporary.
    throw new UsageError(
      `unknown or malformed option (${err instanceof Error ? err.message.split("\n")[0] : ""})`,
      "5.5.4",
      OWN_OPTION_ERROR,
    );
  }
}

type OwnValues = ReturnType<typeof parseOwn>;

/** The settings the own options give. */
function settingsOf(values: OwnValues): ClientSettings {
  const settings = defaultSettings();
  for (const name of SETTING_OPTIONS) {
    for (const value of [values[name] ?? []].flat()) applySetting(settings, name, value);
  }
  if (values.reuse) settings.reuse = true;
  if (values["no-integrity"]) settings.integrity = false;
  return settings;
}

/** The sendmail request of a command; refuses words the command does not take. */
function requestOf(
  command: ClientCommand,
  mta: Mta,
  { mail, implied }: SplitArgv,
): SendmailRequest | undefined {
  const queueWord = implied.has("flush") ? "-q" : implied.has("list") ? "-bp" : undefined;
  if (queueWord !== undefined && mail.length > 0) {
    // Like Postfix: -q and -bp take flags only, never recipients.
    const req = parseSendmailArgs(["sendmail", "-t", ...mail.filter((w) => w !== "--")]);
    if (req.recipients.length > 0 || mail.includes("-t")) {
      throw new UsageError(`${queueWord} takes no recipients`, "5.5.4");
    }
  }
  if (command === "smtp") {
    if (mta === "nullmailer") throw new UsageError("-bs is not a nullmailer mode");
    // Only flags may come with -bs (Laravel passes -i): no recipients, no -t.
    const req = parseSendmailArgs(["sendmail", ...mail, "-t"]);
    if (req.recipients.length > 0 || mail.includes("-t")) {
      throw new UsageError("-bs takes no recipients and no -t");
    }
    return normalizeSender(req);
  }
  if (mta !== "nullmailer" && command === "send") {
    const words = mta === "postfix" ? quoteAddressWords(mail) : mail;
    return normalizeSender(parseSendmailArgs(["sendmail", ...words]));
  }
  if (mail.length > 0 && mta === "nullmailer") {
    throw new UsageError("nullmailer 1.x arguments are not supported: use nullmailer 2");
  }
  return undefined;
}

/**
 * Whether parsing `split` needs node:util's parseArgs: own options in a
 * form other than the plain ones plainOwnValues reads.
 */
export function needsParseArgs(split: SplitArgv): boolean {
  return plainOwnValues(split.own) === undefined;
}

/**
 * Parses a split command line; `parseArgs` (node:util's) is needed when
 * {@link needsParseArgs} says so.
 *
 * Security: words after a sendmail value option (`-f X`) are values, never
 * options; a host or user starting with `-` is refused.
 *
 * @throws {UsageError} Unknown options, sendmail options outside the grammar.
 * @throws {ConfigError} Bad option values.
 */
export function parseClientArgs(split: SplitArgv, parseArgs?: ParseArgs): ClientArgs {
  let values: OwnValues | undefined = plainOwnValues(split.own);
  if (values === undefined) {
    if (parseArgs === undefined) throw new Error("own options that need node:util's parseArgs");
    values = parseOwn(split.own, parseArgs);
  }
  const settings = settingsOf(values);
  const mta = values.mta ?? split.defaultMta;
  if (mta !== "postfix" && mta !== "nullmailer" && mta !== "sendmail") {
    throw new UsageError("--mta wants postfix, nullmailer or sendmail");
  }
  const given = (c: ClientCommand) =>
    split.implied.has(c) || (values as Record<string, unknown>)[c] !== undefined;
  const command = COMMAND_ORDER.find(given) ?? "send";
  return {
    mta,
    settings,
    configured: settings.hosts.length > 0,
    configFile: values.config,
    request: requestOf(command, mta, split),
    command,
    removeId: values.remove,
    testAddress: values.test,
    queueId: values["queue-id"],
    all: values.all ?? false,
    due: values.due ?? false,
    verbose: split.mail.includes("-v"),
  };
}
