/**
 * sshsendmail's command line split in one pass: its own long options (the
 * table node:util's parseArgs reads them by, in client_args.ts) apart from
 * the sendmail words its callers pass, and the commands those words imply.
 * The split, with plain_own_values.ts, tells the client whether node:util
 * must load at all. Pure.
 *
 * @module
 */

/** Which caller the client serves. */
export type Mta = "postfix" | "nullmailer" | "sendmail";

/** The client's commands besides sending. */
export type ClientCommand =
  | "send"
  | "smtp"
  | "flush"
  | "list"
  | "remove"
  | "test"
  | "serve"
  | "migrate"
  | "init-spool"
  | "help"
  | "version";

/** sshsendmail's own options. */
export const OWN_OPTIONS = {
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
  flush: { type: "boolean" },
  list: { type: "boolean" },
  remove: { type: "string" },
  all: { type: "boolean" },
  due: { type: "boolean" },
  test: { type: "string" },
  "queue-id": { type: "string" },
  serve: { type: "boolean" },
  migrate: { type: "boolean" },
  "init-spool": { type: "boolean" },
} as const;

/** Sendmail options that take the next word as their value. */
export const VALUE_OPTIONS = new Set(["-f", "-r", "-F", "-N", "-R"]);
/** `-q` and `-q<interval>` (sendmail's queue run; the interval is the service's business). */
const QUEUE_RUN_REGEXP = /^-q([0-9]+[smhdw]?)?$/;

/** sshsendmail's own words, the sendmail words, and the commands the sendmail words ask for. */
export interface SplitArgv {
  /** The caller's MTA unless `--mta` says otherwise. */
  defaultMta: Mta;
  own: string[];
  mail: string[];
  /** `-bs` → smtp, `-q…` → flush, `-bp` → list. */
  implied: Set<ClientCommand>;
}

/** Sendmail words that are commands: `-bs` anywhere, `-q…` and `-bp` but for nullmailer. */
function commandWord(word: string, defaultMta: Mta): ClientCommand | undefined {
  if (word === "-bs") return "smtp"; // SMTP on stdin/stdout (Symfony Mailer, Laravel)
  if (defaultMta === "nullmailer") return undefined;
  if (QUEUE_RUN_REGEXP.test(word)) return "flush"; // sendmail -q, -q30m: a run now
  return word === "-bp" ? "list" : undefined; // sendmail -bp is mailq
}

/** Splits argv into own options and sendmail words (a value option's next word is its value). */
export function splitClientArgv(argv: readonly string[], defaultMta: Mta): SplitArgv {
  const split: SplitArgv = { defaultMta, own: [], mail: [], implied: new Set() };
  let operands = false;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    const command = operands ? undefined : commandWord(word, defaultMta);
    if (command !== undefined) {
      split.implied.add(command);
    } else if (operands || word === "--") {
      operands = true;
      split.mail.push(word);
    } else if (word.startsWith("--")) {
      split.own.push(word);
      const rule = (OWN_OPTIONS as Record<string, { type: string }>)[word.slice(2)];
      if (rule?.type === "string" && i + 1 < argv.length) split.own.push(argv[++i]!);
    } else {
      split.mail.push(word);
      if (VALUE_OPTIONS.has(word) && i + 1 < argv.length) split.mail.push(argv[++i]!);
    }
  }
  return split;
}
