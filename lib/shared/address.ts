/**
 * Envelope address syntax shared by both programs: what may be handed to the
 * relay's sendmail as a sender or a recipient.
 *
 * @module
 */

import { CONTROL_REGEXP } from "./words.ts";

/** Longest address accepted (RFC 5321 path limit is 256 with brackets). */
export const MAX_ADDRESS_LENGTH = 320;

/** RFC 5322 atext plus non-ASCII (SMTPUTF8), dot-separated. */
const DOT_ATOM_REGEXP =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\uffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\uffff-]+)*$/;
/** RFC 5322 quoted-string without folding: printable ASCII or non-ASCII, `\` pairs. */
const QUOTED_LOCAL_REGEXP = /^"([ !#-\[\]-~\u00a0-\uffff]|\\[ -~])*"$/;
/** Whitespace other than the ASCII space (NBSP, U+2028, U+3000, BOM …). */
const OTHER_SPACE_REGEXP = /[^\S ]/;
/** A domain name or an address literal. */
const DOMAIN_REGEXP =
  /^([A-Za-z0-9\u00a0-\uffff]([A-Za-z0-9\u00a0-\uffff-]*[A-Za-z0-9\u00a0-\uffff])?)(\.[A-Za-z0-9\u00a0-\uffff]([A-Za-z0-9\u00a0-\uffff-]*[A-Za-z0-9\u00a0-\uffff])?)*\.?$|^\[[A-Za-z0-9.:-]+\]$/;

/**
 * True when `text` is an envelope address the relay accepts: `local`,
 * `local@domain` or `"quoted local"@domain`. Never starts with `-`, holds no
 * control character, and has whitespace only inside a quoted local part.
 *
 * Security: a value starting with `-` would be read as an option by the
 * relay's sendmail (PHPMailer CVE-2016-10033); such values never pass.
 *
 * @example Usage
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { isEnvelopeAddress } from "./address.ts";
 * ok(isEnvelopeAddress("o'brien@example.net"));
 * ok(!isEnvelopeAddress("-X/tmp/log"));
 * ```
 */
export function isEnvelopeAddress(text: string): boolean {
  if (text.length === 0 || text.length > MAX_ADDRESS_LENGTH) return false;
  if (text.startsWith("-")) return false;
  if (CONTROL_REGEXP.test(text) || OTHER_SPACE_REGEXP.test(text)) return false;
  if (!text.isWellFormed()) return false;
  const at = text.lastIndexOf("@");
  const local = at < 0 ? text : text.slice(0, at);
  const domain = at < 0 ? undefined : text.slice(at + 1);
  if (local.length === 0 || local.length > 256) return false;
  if (!DOT_ATOM_REGEXP.test(local) && !QUOTED_LOCAL_REGEXP.test(local)) {
    return false;
  }
  if (domain !== undefined && !DOMAIN_REGEXP.test(domain)) return false;
  return true;
}

/**
 * True when the address names a program (`|cmd`), a file (`/path`) or an
 * include list (`:include:/path`), bare or as a quoted local part: what a
 * local delivery agent would run or write. Stock MTAs refuse these from an
 * envelope, but the relay's grammar refuses them itself.
 *
 * @example Usage
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { isDeliveryTarget } from "./address.ts";
 * ok(isDeliveryTarget("|/usr/bin/id"));
 * ok(isDeliveryTarget('":include:/x"@y'));
 * ok(!isDeliveryTarget("ops|alerts@example.net"));
 * ```
 */
export function isDeliveryTarget(address: string): boolean {
  const at = address.lastIndexOf("@");
  let local = at < 0 ? address : address.slice(0, at);
  if (local.startsWith('"') && local.endsWith('"') && local.length >= 2) {
    local = local.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  local = local.trimStart();
  return local.startsWith("|") || local.startsWith("/") || /^:include:/i.test(local);
}

/** The domain part of an address, lower-cased, or "" for a bare local name. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : address.slice(at + 1).toLowerCase();
}
