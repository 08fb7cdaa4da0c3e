/**
 * sshsendmail's command line: its own long options (parsed by node:util
 * parseArgs, strict) mixed with the sendmail options its callers pass
 * (parsed by the same grammar the relay uses, so both sides agree).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { applySetting, type ClientSettings, defaultSettings } from "./client_config.ts";
import { UsageError } from "./errors.ts";
import { parseSendmailArgs, type SendmailRequest } from "./sendmail_args.ts";

/** sshsendmail's own options. */
const OWN_OPTIONS = {
  host: { type: "string", multiple: true },
  user: { type: "string" },
  port: { type: "string" },
  identity: { type: "string" },
  "known-hosts": { type: "string" },
  "ssh-option": { type: "string", multiple: true },
  "relay-command": { type: "string" },
  "connect-timeout": { type: "string" },
  reuse: { type: "boolean" },
  "no-integrity": { type: "boolean" },
  mta: { type: "string" },
  loglevel: { type: "string" },
  config: { type: "string" },
  help: { type: "boolean" },
  version: { type: "boolean" },
} as const;

/** Sendmail options that take the next word as their value. */
const VALUE_OPTIONS = new Set(["-f", "-r", "-F", "-N", "-R"]);

/** Which caller the client serves. */
export type Mta = "postfix" | "nullmailer" | "sendmail";

/** The parsed command line. */
export interface ClientArgs {
  mta: Mta;
  /** Settings from options; `configured` is false when no --host was given. */
  settings: ClientSettings;
  configured: boolean;
  configFile: string | undefined;
  /** The sendmail request (undefined in nullmailer mode: it comes on fd 3). */
  request: SendmailRequest | undefined;
  help: boolean;
  version: boolean;
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
 * Splits and parses argv.
 *
 * Security: words after a sendmail value option (`-f X`) are values, never
 * options; a host or user starting with `-` is refused.
 *
 * @throws {UsageError} Unknown options, sendmail options outside the grammar.
 * @throws {ClientConfigError} Bad option values.
 */
export function parseClientArgs(argv: readonly string[], defaultMta: Mta): ClientArgs {
  const own: string[] = [];
  const mail: string[] = [];
  let operands = false;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (operands) {
      mail.push(word);
    } else if (word === "--") {
      operands = true;
      mail.push(word);
    } else if (word.startsWith("--")) {
      own.push(word);
      const name = word.slice(2);
      const rule = (OWN_OPTIONS as Record<string, { type: string }>)[name];
      if (rule?.type === "string" && i + 1 < argv.length) own.push(argv[++i]!);
    } else if (VALUE_OPTIONS.has(word)) {
      mail.push(word);
      if (i + 1 < argv.length) mail.push(argv[++i]!);
    } else {
      mail.push(word);
    }
  }
  let values;
  try {
    ({ values } = parseArgs({ args: own, options: OWN_OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(
      `unknown or malformed option (${err instanceof Error ? err.message.split("\n")[0] : ""})`,
      "5.5.4",
    );
  }
  const settings = defaultSettings();
  for (const h of values.host ?? []) applySetting(settings, "host", h);
  if (values.user !== undefined) applySetting(settings, "user", values.user);
  if (values.port !== undefined) applySetting(settings, "port", values.port);
  if (values.identity !== undefined) applySetting(settings, "identity", values.identity);
  if (values["known-hosts"] !== undefined) {
    applySetting(settings, "known-hosts", values["known-hosts"]);
  }
  for (const o of values["ssh-option"] ?? []) applySetting(settings, "ssh-option", o);
  if (values["relay-command"] !== undefined) {
    applySetting(settings, "relay-command", values["relay-command"]);
  }
  if (values["connect-timeout"] !== undefined) {
    applySetting(settings, "connect-timeout", values["connect-timeout"]);
  }
  if (values.reuse) settings.reuse = true;
  if (values["no-integrity"]) settings.integrity = false;
  let mta: Mta = defaultMta;
  if (values.mta !== undefined) {
    if (values.mta !== "postfix" && values.mta !== "nullmailer" && values.mta !== "sendmail") {
      throw new UsageError("--mta wants postfix, nullmailer or sendmail");
    }
    mta = values.mta;
  }
  const help = values.help ?? false;
  const version = values.version ?? false;
  let request: SendmailRequest | undefined;
  if (mta !== "nullmailer" && !help && !version) {
    request = normalizeSender(parseSendmailArgs(["sendmail", ...mail]));
  } else if (mail.length > 0 && mta === "nullmailer") {
    throw new UsageError("nullmailer 1.x arguments are not supported: use nullmailer 2");
  }
  return {
    mta,
    settings,
    configured: settings.hosts.length > 0,
    configFile: values.config,
    request,
    help,
    version,
  };
}
