/**
 * nullmailer 2.x protocol module input: the options block on stdin and the
 * envelope at the head of fd 3 (shared/REFERENCE.md, measured with 2.2).
 *
 * @module
 */

import {
  applySetting,
  type ClientSettings,
  ConfigError,
  defaultSettings,
} from "./client_config.ts";
import { DataError } from "../shared/errors.ts";

/** nullmailer's exit codes (lib/errcodes.h): bit 32 marks a permanent failure. */
export const NM = {
  usage: 1,
  msgRead: 13,
  config: 18,
  msgRefused: 34,
  tempFail: 16,
} as const;

/** Longest envelope accepted on fd 3. */
export const MAX_ENVELOPE = 1 << 20;

/**
 * Reads the options block: `host=H`, then `key=value` or bare `flag` lines,
 * ending at an empty line.
 */
export function parseNullmailerOptions(text: string): ClientSettings {
  const s = defaultSettings();
  s.queue = false; // direct, unless the remotes line says `--service`
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line === "") break;
    const eq = line.indexOf("=");
    if (eq < 0) {
      if (line === "reuse") s.reuse = true;
      else if (line === "no-integrity") s.integrity = false;
      else if (line === "service") s.queue = true;
      else throw new ConfigError(`unknown nullmailer option "${line.slice(0, 40)}"`);
      continue;
    }
    applySetting(s, line.slice(0, eq), line.slice(eq + 1));
  }
  if (s.hosts.length === 0 && !s.queue) throw new ConfigError("nullmailer gave no host");
  return s;
}

/** The envelope and where the message starts in the buffered bytes. */
export interface Envelope {
  sender: string;
  recipients: string[];
  /** Offset of the first message byte in the buffer given. */
  bodyStart: number;
}

/**
 * Finds the envelope at the head of `head` (sender line, recipient lines,
 * empty line). Returns undefined while more bytes are needed.
 *
 * @throws {DataError} An envelope over MAX_ENVELOPE or not UTF-8.
 */
export function parseEnvelope(head: Uint8Array): Envelope | undefined {
  let start = 0;
  const lines: string[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (;;) {
    const nl = head.indexOf(0x0a, start);
    if (nl < 0) {
      if (head.length > MAX_ENVELOPE) throw new DataError("envelope too long", "5.5.2");
      return undefined;
    }
    let line: string;
    try {
      line = decoder.decode(head.subarray(start, nl)).replace(/\r$/, "");
    } catch {
      throw new DataError("envelope is not UTF-8", "5.6.7");
    }
    start = nl + 1;
    if (lines.length > 0 && line === "") {
      const [sender, ...recipients] = lines;
      return { sender: sender === "<>" ? "" : sender!, recipients, bodyStart: start };
    }
    lines.push(line);
  }
}
