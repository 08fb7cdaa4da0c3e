/**
 * What a whole MTA does to local mail before it leaves: local recipients to
 * adminaddr/aliases, the envelope sender qualified (`login@domain` when
 * there is no -f), and a From: header added only when there is none. Used
 * by the satellite service (the login is the drop owner's) and by the
 * direct standalone mode (the caller's). Effectful edge module: it reads
 * /etc/passwd, /etc/mailname, the aliases file and the spool.
 *
 * @module
 */

import { type ClientSettings, ConfigError } from "./client_config.ts";
import { headerRecipients } from "./header_addresses.ts";
import {
  hasFromHeader,
  type LocalPolicy,
  localUser,
  parseAliases,
  qualify,
  rewriteRecipients,
} from "./local_mail.ts";
import {
  giveChunk,
  prefixedReader,
  type Spooled,
  spoolMessage,
  takeChunk,
} from "../shared/spool_io.ts";
import { parseSendmailArgs, type SendmailRequest } from "../shared/sendmail_args.ts";
import type { LocalSpool } from "./local_spool.ts";

/** Reads a file's text, or undefined when it cannot be read. */
async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}

/**
 * The login name of `uid` from the passwd text (Deno has no getpwuid).
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { loginFromPasswd } from "./prepare_local_io.ts";
 * strictEqual(loginFromPasswd("root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\n", 1000), "ann");
 * ```
 */
export function loginFromPasswd(passwd: string, uid: number): string | undefined {
  return loginsFromPasswd(passwd).get(String(uid));
}

/** The uid and gid of a login, from the passwd text. */
export function accountFromPasswd(
  passwd: string,
  login: string,
): { uid: number; gid: number; home: string } | undefined {
  for (const line of passwd.split("\n")) {
    if (line.startsWith("#")) continue;
    const f = line.split(":");
    if (f[0] === login && login !== "" && /^\d+$/.test(f[2] ?? "") && /^\d+$/.test(f[3] ?? "")) {
      return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "/" };
    }
  }
  return undefined;
}

/**
 * Every uid's login from the passwd text (the uid field as written, the
 * first entry of a uid wins): {@link loginFromPasswd} for all uids at once.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { loginsFromPasswd } from "./prepare_local_io.ts";
 * strictEqual(loginsFromPasswd("ann:x:1000:1000::/home/ann:/bin/sh\n").get("1000"), "ann");
 * ```
 */
export function loginsFromPasswd(passwd: string): Map<string, string> {
  const logins = new Map<string, string>();
  for (const line of passwd.split("\n")) {
    if (line.startsWith("#")) continue;
    const f = line.split(":");
    if (f[2] !== undefined && f[0] && !logins.has(f[2])) logins.set(f[2], f[0]);
  }
  return logins;
}

/** The login of `uid` from /etc/passwd (a uid without an entry: `uid<N>`). */
export async function loginOfUid(uid: number): Promise<string> {
  // The service asks for every message: /etc/passwd is read (and split)
  // again after 10 s at most, not for each message (a large passwd file
  // split per message was the service's largest garbage).
  const now = Date.now();
  if (passwdCache === undefined || now - passwdCache.at > 10_000) {
    passwdCache = { at: now, logins: loginsFromPasswd((await readText("/etc/passwd")) ?? "") };
  }
  return passwdCache.logins.get(String(uid)) ?? `uid${uid}`;
}

let passwdCache: { at: number; logins: Map<string, string> } | undefined;

/** Reads the standalone mode's local policy: mail domain, local names, adminaddr, aliases. */
export async function readLocalPolicy(
  settings: ClientSettings,
  hostname: string,
): Promise<LocalPolicy> {
  const host = hostname.toLowerCase();
  const mailname = (await readText("/etc/mailname"))?.trim().toLowerCase();
  const domain = settings.domain ?? (mailname || host);
  let aliases = new Map<string, string[]>();
  if (settings.aliasesFile !== undefined) {
    const text = await readText(settings.aliasesFile);
    if (text === undefined) {
      throw new ConfigError(`cannot read aliases file ${settings.aliasesFile}`);
    }
    aliases = parseAliases(text);
  }
  return {
    adminaddr: settings.adminaddr,
    aliases,
    domain,
    localDomains: [
      ...new Set(["localhost", "localhost.localdomain", host, host.split(".")[0]!, domain]),
    ],
  };
}

/** Where prepareLocal spools a copy with From: added. */
export interface PrepareOptions {
  /** Where the copy goes (a file past 64 KiB, or memory). */
  spool: LocalSpool;
  maxSize: number;
  idleTimeoutMs: number;
  /** The process ends after this message: the copy's idle timer needs no setTimeout. */
  shortLived?: boolean;
}

/**
 * Applies the local policy to one message. Returns the checked request and
 * the spool to send: `spool` itself, or a new one with `From:` prepended
 * (then the caller closes both).
 */
export async function prepareLocal(
  policy: LocalPolicy,
  login: string,
  req: SendmailRequest,
  spool: Spooled,
  o: PrepareOptions,
): Promise<{ req: SendmailRequest; spool: Spooled }> {
  const sender = qualify(req.sender ?? login, policy.domain);
  const head = takeChunk();
  try {
    return await prepareWith(head);
  } finally {
    giveChunk(head);
  }

  async function prepareWith(
    head: Uint8Array,
  ): Promise<{ req: SendmailRequest; spool: Spooled }> {
    await spool.file.seek(0, Deno.SeekMode.Start);
    const n = (await spool.file.read(head)) ?? 0;
    const headText = new TextDecoder().decode(head.subarray(0, n));
    // -t with a local name in To/Cc/Bcc (`mail -s x root`): the recipients
    // are taken here, as a whole MTA would, so the local policy applies to
    // them; the Bcc: fields go, as sendmail -t would drop them. Anything the
    // parser is unsure of keeps -t for the relay.
    let recipients = req.recipients;
    let extract = req.extractRecipients;
    let bccLines: number[] = [];
    if (extract && /\r?\n\r?\n/.test(headText)) {
      const found = headerRecipients(headText);
      const changes = found !== undefined &&
        found.recipients.some((a) => localUser(a, policy) !== undefined) &&
        rewriteRecipients(found.recipients, policy).join("\n") !== found.recipients.join("\n");
      if (found && changes) {
        recipients = [...req.recipients, ...found.recipients];
        extract = false;
        bccLines = found.bccLines;
      }
    }
    const converted = extract !== req.extractRecipients;
    const checked = parseSendmailArgs([
      "sendmail",
      "-f",
      sender,
      ...(extract ? ["-t"] : []),
      "--",
      ...rewriteRecipients(recipients, policy),
    ]);
    const needFrom = !hasFromHeader(headText) && sender !== "";
    if (!needFrom && !converted) return { req: checked, spool };
    const from = needFrom ? new TextEncoder().encode(`From: ${sender}\n`) : new Uint8Array(0);
    const kept = converted ? withoutLines(head.subarray(0, n), bccLines) : new Uint8Array(0);
    const prefix = new Uint8Array(from.length + kept.length);
    prefix.set(from);
    prefix.set(kept, from.length);
    await spool.file.seek(converted ? n : 0, Deno.SeekMode.Start);
    const rebuilt = await spoolMessage(prefixedReader(prefix, spool.file), {
      ...o.spool,
      prefix: "sshsendmail",
      maxSize: o.maxSize,
      idleTimeoutMs: o.idleTimeoutMs,
      shortLived: o.shortLived === true,
    });
    return { req: checked, spool: rebuilt };
  }
}

/** `bytes` without the LF-separated lines whose indices are given. */
function withoutLines(bytes: Uint8Array, drop: readonly number[]): Uint8Array {
  if (drop.length === 0) return bytes;
  const out: number[] = [];
  let line = 0;
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      const end = i < bytes.length ? i + 1 : i;
      if (!drop.includes(line)) { for (let j = start; j < end; j++) out.push(bytes[j]!); }
      line++;
      start = end;
    }
  }
  return new Uint8Array(out);
}
