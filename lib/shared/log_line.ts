/**
 * One-line, newline-safe log records: `key=value` pairs, every value
 * sanitised so that no peer input can forge or split a log line.
 *
 * @module
 */

import { CONTROL_REGEXP } from "./words.ts";

/** Longest value kept in a log field. */
export const MAX_FIELD_LENGTH = 256;
const CONTROL_GLOBAL_REGEXP = new RegExp(CONTROL_REGEXP.source, "g");
const NEEDS_QUOTES_REGEXP = /[\s"\\=]/;

/**
 * Replaces control characters (CR, LF, NUL …) with `?` and truncates.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { sanitizeField } from "./log_line.ts";
 * strictEqual(sanitizeField("a\r\nb"), "a??b");
 * ```
 */
export function sanitizeField(value: string): string {
  const clean = value.replace(CONTROL_GLOBAL_REGEXP, "?");
  return clean.length > MAX_FIELD_LENGTH ? `${clean.slice(0, MAX_FIELD_LENGTH)}…` : clean;
}

/** A log record: undefined fields are left out. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/**
 * Formats fields as `key=value key="value with spaces"`, in insertion order.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { formatLogLine } from "./log_line.ts";
 * strictEqual(formatLogLine({ event: "sent", rcpts: 2, note: "a b" }), 'event=sent rcpts=2 note="a b"');
 * ```
 */
export function formatLogLine(fields: LogFields): string {
  const parts: string[] = [];
  for (const [key, raw] of Object.entries(fields)) {
    if (raw === undefined) continue;
    const value = sanitizeField(String(raw));
    parts.push(
      NEEDS_QUOTES_REGEXP.test(value) || value === ""
        ? `${key}="${value.replace(/["\\]/g, (c) => `\\${c}`)}"`
        : `${key}=${value}`,
    );
  }
  return parts.join(" ");
}
