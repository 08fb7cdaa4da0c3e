/**
 * What a whole MTA would do locally before mail leaves a satellite, pure:
 * map local recipients (bare names, `@localhost`, `@<this host>`) to the
 * admin address or through an aliases file (nullmailer's `adminaddr`,
 * /etc/aliases syntax), and qualify the envelope sender with the mail
 * domain.
 *
 * @module
 */

import { isDeliveryTarget, isEnvelopeAddress } from "../shared/address.ts";

/** Local delivery settings. */
export interface LocalPolicy {
  /** Where local recipients go (empty: they stay as they are). */
  adminaddr: string[];
  /** name → targets, from an aliases file. */
  aliases: Map<string, string[]>;
  /** The mail domain (from /etc/mailname or the host name). */
  domain: string;
  /** Domains that mean "this machine": localhost, the host names, the mail domain. */
  localDomains: string[];
}

const MAX_ALIAS_DEPTH = 8;

/**
 * Parses /etc/aliases syntax: `name: target, target`, `#` comments, lines
 * starting with whitespace continue the previous entry. Pipes, files and
 * :include: have no meaning here and are dropped.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseAliases } from "./local_mail.ts";
 * deepStrictEqual(parseAliases("root: ops@example.net,\n  me@example.net\n# x\n").get("root"), ["ops@example.net", "me@example.net"]);
 * ```
 */
export function parseAliases(text: string): Map<string, string[]> {
  const entries: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (/^\s*#/.test(line) || line.trim() === "") continue;
    if (/^\s/.test(line) && entries.length > 0) entries[entries.length - 1] += ` ${line.trim()}`;
    else entries.push(line.trim());
  }
  const map = new Map<string, string[]>();
  for (const entry of entries) {
    const colon = entry.indexOf(":");
    if (colon <= 0) continue;
    const name = entry.slice(0, colon).trim().toLowerCase();
    const targets = entry.slice(colon + 1).split(",").map((t) => t.trim())
      .filter((t) => t !== "" && !isDeliveryTarget(t))
      .filter(isEnvelopeAddress);
    // An entry whose every target was dropped is no alias at all: its name
    // goes on as if unlisted (adminaddr, or the name itself), never nowhere.
    if (targets.length > 0) map.set(name, targets);
  }
  return map;
}

/** The local part when `address` means a user of this machine, else undefined. */
export function localUser(address: string, policy: LocalPolicy): string | undefined {
  const at = address.lastIndexOf("@");
  if (at < 0) return address.toLowerCase();
  const domain = address.slice(at + 1).toLowerCase().replace(/\.$/, "");
  return policy.localDomains.includes(domain) ? address.slice(0, at).toLowerCase() : undefined;
}

/**
 * Rewrites recipients: aliases first (recursively), then what is still local
 * goes to `adminaddr`. Duplicates are dropped, order kept.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { rewriteRecipients } from "./local_mail.ts";
 * const policy = { adminaddr: ["ops@example.net"], aliases: new Map(), domain: "sat.example.net", localDomains: ["localhost", "sat.example.net"] };
 * deepStrictEqual(rewriteRecipients(["root", "x@localhost", "a@b.example"], policy), ["ops@example.net", "a@b.example"]);
 * ```
 */
export function rewriteRecipients(recipients: readonly string[], policy: LocalPolicy): string[] {
  const out: string[] = [];
  const add = (a: string) => {
    if (!out.includes(a)) out.push(a);
  };
  const local = (address: string) =>
    policy.adminaddr.length > 0 ? policy.adminaddr.forEach(add) : add(address);
  // Each name is expanded once: a name met again on the current path is a
  // loop (it ends there, as a name with no alias does); met again elsewhere,
  // its addresses are in already. So a tangle of aliases costs one visit per
  // name, not (targets per name)^depth.
  const onPath = new Set<string>();
  const expanded = new Set<string>();
  const expand = (address: string, depth: number) => {
    const user = localUser(address, policy);
    if (user === undefined) return add(address);
    const targets = policy.aliases.get(user);
    if (!targets || depth >= MAX_ALIAS_DEPTH || onPath.has(user)) return local(address);
    if (expanded.has(user)) return;
    expanded.add(user);
    onPath.add(user);
    for (const t of targets) expand(t, depth + 1);
    onPath.delete(user);
  };
  for (const r of recipients) expand(r, 0);
  return out;
}

/** `name` → `name@domain`; qualified addresses and the null sender stay. */
export function qualify(address: string, domain: string): string {
  return address === "" || address.includes("@") ? address : `${address}@${domain}`;
}

/**
 * The header section of a message's head: up to the first empty line
 * (none when the message starts with one).
 */
function headerSection(head: string): string {
  if (head.startsWith("\n") || head.startsWith("\r\n")) return "";
  const end = head.search(/\r?\n\r?\n/);
  return end < 0 ? head : head.slice(0, end);
}

/** True when the header section (up to the first empty line) has a From: field. */
export function hasFromHeader(head: string): boolean {
  return /^from[ \t]*:/im.test(headerSection(head));
}

/**
 * The `Date:` and `Message-ID:` lines a message lacks, to add at
 * submission (as nullmailer-inject and Postfix's local submission do), so
 * that mail which waited in the queue carries the time it was written.
 * Only the header section (up to the first empty line) is looked at.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { missingHeaders } from "./local_mail.ts";
 * const now = new Date(Date.UTC(2026, 11, 1, 7, 30));
 * strictEqual(missingHeaders("Subject: x\n\nbody\n", now, "ab12", "sat.example"),
 *   "Date: Tue, 01 Dec 2026 07:30:00 +0000\nMessage-ID: <ab12@sat.example>\n");
 * strictEqual(missingHeaders("Date: x\nMessage-Id: <y>\n\n", now, "ab12", "sat.example"), "");
 * ```
 */
export function missingHeaders(head: string, now: Date, id: string, domain: string): string {
  const headers = headerSection(head);
  const out: string[] = [];
  if (!/^date[ \t]*:/im.test(headers)) {
    out.push(`Date: ${now.toUTCString().replace(/GMT$/, "+0000")}`);
  }
  if (!/^message-id[ \t]*:/im.test(headers)) out.push(`Message-ID: <${id}@${domain}>`);
  return out.map((l) => `${l}\n`).join("");
}
