/**
 * The fuzzer's generators: peer command strings (grammar-aware mutations of
 * real requests, plus random bytes), batch frame header lines, and SMTP
 * command lines and dialogues. Every generator takes the case's own Rng, so
 * a case is rebuilt from (seed, target, index) alone.
 *
 * @module
 */

import {
  ATTACK_REQUESTS,
  ATTACK_STRINGS,
  BAD_ADDRESSES,
  EMPTY_SHA256,
  GOOD_ADDRESSES,
  META_CHARS,
  OPTION_WORDS,
  REAL_REQUESTS,
  SMTP_LINES,
  SMTP_VERBS,
  UNICODE_CHARS,
  VALUE_WORDS,
} from "./corpus.ts";
import type { Rng } from "./prng.ts";
import { quoteWords } from "../../lib/shared/words.ts";

const ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-.";
const LABEL = "abcdefghijklmnopqrstuvwxyz0123456789-";
const SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-";
const PROGRAMS = [
  "sendmail",
  "rsendmail",
  "/usr/sbin/sendmail",
  "/usr/lib/sendmail",
  "./sendmail",
  "/opt/x/rsendmail",
  "sendmail.postfix",
  "Sendmail",
  "ssendmail",
  "/",
  "sendmail/",
  "",
];

function chars(rng: Rng, alphabet: string, min: number, max: number): string {
  let s = "";
  for (let n = rng.range(min, max); n > 0; n--) s += alphabet[rng.int(alphabet.length)];
  return s;
}

/** A random character: ASCII mostly, any BMP unit or astral pair sometimes. */
export function randomChar(rng: Rng): string {
  const r = rng.int(16);
  if (r < 8) return String.fromCharCode(rng.range(0x20, 0x7e));
  if (r < 10) return String.fromCharCode(rng.int(0x20));
  if (r < 11) return String.fromCharCode(rng.range(0x7f, 0xff));
  if (r < 13) return rng.pick(UNICODE_CHARS);
  if (r < 14) return rng.pick(META_CHARS);
  if (r < 15) return String.fromCharCode(rng.int(0x10000));
  return String.fromCodePoint(rng.range(0x10000, 0x10ffff));
}

/** A random string of up to `max` random characters. */
export function randomText(rng: Rng, max: number): string {
  let s = "";
  for (let n = rng.small(max); n > 0; n--) s += randomChar(rng);
  return s;
}

/** An address: valid by construction most of the time, from the lists otherwise. */
export function address(rng: Rng): string {
  const r = rng.int(10);
  if (r < 3) return rng.pick(GOOD_ADDRESSES);
  if (r < 4) return rng.pick(BAD_ADDRESSES);
  let local = chars(rng, ATEXT, 1, 12).replace(/^\.|\.$/g, "x").replace(/\.\.+/g, ".");
  if (rng.chance(0.1)) local = `"${chars(rng, SAFE + " ()<>[]:;@,", 0, 10)}"`;
  if (rng.chance(0.05)) local += rng.pick(UNICODE_CHARS);
  if (rng.chance(0.15)) return local;
  const labels: string[] = [];
  for (let n = rng.range(1, 4); n > 0; n--) labels.push(chars(rng, LABEL, 1, 10));
  let domain = labels.join(".");
  if (rng.chance(0.05)) domain = `[${rng.int(256)}.${rng.int(256)}.0.${rng.int(256)}]`;
  if (rng.chance(0.03)) domain += rng.pick(UNICODE_CHARS);
  return `${local}@${domain}`;
}

/** One word a grammar-aware attacker would splice into a request. */
export function spliceWord(rng: Rng): string {
  switch (rng.int(12)) {
    case 0:
    case 1:
    case 2:
      return rng.pick(OPTION_WORDS);
    case 3:
      return rng.pick(VALUE_WORDS);
    case 4:
    case 5:
      return address(rng);
    case 6:
      return `-${rng.pick(["f", "r", "N", "R", "F"])}${
        rng.chance(0.7) ? address(rng) : rng.pick(VALUE_WORDS)
      }`;
    case 7:
      return rng.pick([
        `--size=${
          rng.pick([
            "0",
            "1",
            "12",
            "10240000",
            "10240001",
            "999999999999999",
            "01",
            "-1",
            "1e3",
            "",
            "9999999999999999",
          ])
        }`,
        `--sha256=${rng.chance(0.5) ? EMPTY_SHA256 : chars(rng, "0123456789abcdefABCDEF", 0, 66)}`,
        `--id=${chars(rng, "abcdefABCDEF0123456789._-", 0, 70)}`,
      ]);
    case 8:
      return `-${chars(rng, "abcdefhiNoOqrRstvVXBCdL0123456789", 1, 4)}`;
    case 9:
      return randomText(rng, 12);
    case 10:
      return rng.pick(["--", "--batch", "-t", "-i", "-oi", ""]);
    default:
      return rng.pick(PROGRAMS);
  }
}

/** A base request's words (program first). */
function baseWords(rng: Rng): string[] {
  const r = rng.int(10);
  if (r < 4) return [...rng.pick(REAL_REQUESTS)];
  if (r < 6) return [...rng.pick(ATTACK_REQUESTS)];
  // A request built from the grammar: options, then maybe --, then recipients.
  const words = [rng.chance(0.9) ? rng.pick(PROGRAMS.slice(0, 6)) : rng.pick(PROGRAMS)];
  for (let n = rng.small(6); n > 0; n--) {
    switch (rng.int(6)) {
      case 0:
        words.push(rng.pick(["-t", "-i", "-oi", "-oem", "-odi", "-B8BITMIME", "-v"]));
        break;
      case 1:
        words.push(...(rng.chance(0.5) ? ["-f", address(rng)] : [`-f${address(rng)}`]));
        break;
      case 2:
        words.push(rng.pick(["-N", "-R", "-F"]), rng.pick(VALUE_WORDS));
        break;
      case 3:
        words.push(spliceWord(rng));
        break;
      default:
        words.push(address(rng));
    }
  }
  if (rng.chance(0.5)) words.push("--");
  for (let n = rng.small(5); n > 0; n--) words.push(address(rng));
  return words;
}

/** Word-level mutations: insert, delete, duplicate, swap, splice option letters, attach values … */
export function mutateWords(rng: Rng, words: string[]): string[] {
  for (let m = rng.small(6); m > 0; m--) {
    const i = rng.int(words.length + 1);
    const j = rng.int(words.length);
    switch (rng.int(14)) {
      case 0:
      case 1:
        words.splice(i, 0, spliceWord(rng));
        break;
      case 2:
        if (words.length > 0) words.splice(j, 1);
        break;
      case 3:
        if (words.length > 0) words.splice(i, 0, words[j]!);
        break;
      case 4: {
        if (words.length < 2) break;
        const k = rng.int(words.length);
        [words[j], words[k]] = [words[k]!, words[j]!];
        break;
      }
      case 5: // splice option letters: -o + i → -oi, -t + -i → -ti
        if (j + 1 < words.length) words.splice(j, 2, words[j]! + words[j + 1]!.replace(/^-/, ""));
        break;
      case 6: // attach a value: -f a@b → -fa@b
        if (j + 1 < words.length) words.splice(j, 2, words[j]! + words[j + 1]!);
        break;
      case 7: // detach: -fa@b → -f a@b
        if (words[j] !== undefined && words[j]!.length > 2) {
          words.splice(j, 1, words[j]!.slice(0, 2), words[j]!.slice(2));
        }
        break;
      case 8: // a character inside a word
        if (words[j] !== undefined) {
          const w = words[j]!;
          const k = rng.int(w.length + 1);
          words[j] = w.slice(0, k) + (rng.chance(0.5) ? randomChar(rng) : rng.pick(META_CHARS)) +
            w.slice(k + (rng.chance(0.3) ? 1 : 0));
        }
        break;
      case 9: // unicode lookalikes and format characters
        if (words[j] !== undefined) {
          const w = words[j]!;
          const k = rng.int(w.length + 1);
          words[j] = w.slice(0, k) + rng.pick(UNICODE_CHARS) + w.slice(k);
        }
        break;
      case 10: // a very long word
        if (words[j] !== undefined) {
          const n = rng.chance(0.97)
            ? rng.pick([64, 256, 320, 321])
            : rng.pick([4096, 4097, 70000]);
          const w = words[j]! || "x";
          words[j] = w.repeat(Math.ceil(n / w.length)).slice(0, n);
        }
        break;
      case 11: // many words
        if (rng.chance(0.01)) {
          const w = words[j] !== undefined && words[j]!.length <= 16 ? words[j]! : "root";
          words.push(...Array<string>(rng.pick([100, 1000, 4095, 4096, 4097])).fill(w));
        }
        break;
      case 12: // a leading dash on a value or an address
        if (words[j] !== undefined) words[j] = `-${words[j]}`;
        break;
      default:
        words.splice(i, 0, rng.pick(["--", "-f", "-t", "-r", "-N", "-R", "-F"]));
    }
  }
  return words;
}

/** One word quoted in a random but exact style (the tokenizer must read it back). */
function quoteStyled(rng: Rng, word: string): string {
  if (word === "") return rng.pick(["''", '""', "''''", "\"\"''"]);
  const style = rng.int(6);
  if (style === 0) return quoteWords([word]);
  if (style === 1) return `'${word.replaceAll("'", "'\\''")}'`;
  if (style === 2) return `"${word.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
  if (style === 3) {
    // Backslash-escape every character that is not safe bare.
    let out = "";
    for (const c of word) out += /^[A-Za-z0-9@%+=:,./_-]$/.test(c) || c >= "\u00a0" ? c : `\\${c}`;
    return out;
  }
  // Chunks, each in its own style, glued together: 'a'"b"c\d
  let out = "";
  let k = 0;
  while (k < word.length) {
    const n = rng.range(1, 4);
    const chunk = word.slice(k, k + n);
    k += n;
    out += quoteStyled(rng, chunk);
  }
  return out;
}

/** Joins words with one or more spaces, maybe leading and trailing ones. */
function join(rng: Rng, parts: string[]): string {
  let out = rng.chance(0.1) ? " ".repeat(rng.range(1, 3)) : "";
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) out += rng.chance(0.9) ? " " : " ".repeat(rng.range(2, 4));
    out += parts[i];
  }
  if (rng.chance(0.1)) out += " ".repeat(rng.range(1, 3));
  return out;
}

/** String-level mutations: flip quotes, inject metacharacters and control bytes, cut, repeat. */
export function mutateString(rng: Rng, s: string): string {
  for (let m = rng.range(1, 4); m > 0; m--) {
    const i = rng.int(s.length + 1);
    const j = Math.min(s.length, i + rng.small(12));
    switch (rng.int(10)) {
      case 0: { // flip, drop or add a quote
        const q = s.slice(i).search(/['"\\]/);
        if (q >= 0) {
          const at = i + q;
          s = s.slice(0, at) + rng.pick(["'", '"', "", "\\", "''", "'\\''"]) + s.slice(at + 1);
        } else s = s.slice(0, i) + rng.pick(["'", '"', "\\"]) + s.slice(i);
        break;
      }
      case 1:
        s = s.slice(0, i) + rng.pick(META_CHARS) + s.slice(i);
        break;
      case 2:
        s = s.slice(0, i) + String.fromCharCode(rng.int(0x20)) + s.slice(i);
        break;
      case 3:
        s = s.slice(0, i) + rng.pick(UNICODE_CHARS) + s.slice(i);
        break;
      case 4:
        s = s.slice(0, i) + s.slice(j);
        break;
      case 5:
        s = s.slice(0, j) + s.slice(i, j) + s.slice(j);
        break;
      case 6:
        s = s.slice(0, i) + randomText(rng, 8) + s.slice(i);
        break;
      case 7:
        s = s.slice(0, i);
        break;
      case 8:
        if (rng.chance(0.01)) {
          s += " ".repeat(rng.pick([65536, 70000])).slice(
            0,
            rng.pick([65536 - s.length, 65537 - s.length]),
          );
        } else {s = s.slice(0, i) + rng.pick([" ", "  ", " -", " --", " -t", " -f", " ''", ' ""']) +
            s.slice(i);}
        break;
      default:
        s = s.slice(0, i) + rng.pick(ATTACK_STRINGS) + s.slice(i);
    }
  }
  return s;
}

/** A peer command string, and the exact words it stands for when its quoting is intact. */
export interface CommandCase {
  command: string;
  /** Set when `command` is an exact quoting of these words (tokenizer oracle). */
  words?: string[];
}

/** SSH_ORIGINAL_COMMAND: grammar-aware mutation mostly, attack strings and random bytes too. */
export function genCommand(rng: Rng): CommandCase {
  const r = rng.int(100);
  if (r < 4) return { command: rng.pick(ATTACK_STRINGS) };
  if (r < 8) return { command: randomText(rng, 200) };
  if (r < 10) {
    // Random bytes decoded as a lossy UTF-8 decoder would.
    const bytes = new Uint8Array(rng.small(120));
    for (let k = 0; k < bytes.length; k++) bytes[k] = rng.int(256);
    return { command: new TextDecoder().decode(bytes) };
  }
  const words = rng.chance(0.85) ? mutateWords(rng, baseWords(rng)) : baseWords(rng);
  const parts = words.map((w) => rng.chance(0.7) ? quoteWords([w]) : quoteStyled(rng, w));
  const command = join(rng, parts);
  if (rng.chance(0.35)) return { command: mutateString(rng, command) };
  return { command, words };
}

/** A batch frame header line (as the relay's lossy line reader decodes it). */
export function genFrameLine(rng: Rng): string {
  const r = rng.int(100);
  if (r < 3) return rng.pick(["END", "", "MSG", "MSG ", "msg -t", "END ", "MSG\t-t", "MSG  -t"]);
  if (r < 8) return randomText(rng, 100);
  // The client's shape: -oi [-f S] [-t] --size=N --sha256=H --id=ID -- RCPT…
  const words: string[] = ["-oi"];
  if (rng.chance(0.6)) words.push("-f", address(rng));
  if (rng.chance(0.3)) words.push("-t");
  words.push(`--size=${rng.pick(["0", "1", "120", "10240000", "10240001"])}`);
  words.push(`--sha256=${EMPTY_SHA256}`);
  words.push(`--id=${chars(rng, "abcdef0123456789", 16, 32)}`);
  words.push("--");
  for (let n = rng.range(0, 3); n > 0; n--) words.push(address(rng));
  mutateWords(rng, words);
  let line = `MSG ${quoteWords(words)}`;
  if (rng.chance(0.3)) line = mutateString(rng, line);
  return line;
}

/** One SMTP command line as the edge hands it to the session (lossy decode, CR stripped). */
export function genSmtpLine(rng: Rng): string {
  const r = rng.int(100);
  if (r < 40) return rng.pick(SMTP_LINES);
  if (r < 55) {
    const verb = rng.pick(SMTP_VERBS);
    const arg = rng.pick([
      "",
      ` ${address(rng)}`,
      ` FROM:<${address(rng)}>`,
      ` TO:<${address(rng)}>`,
      ` FROM:<${address(rng)}> ${chars(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ=0123456789-", 1, 12)}`,
      ` TO:<${address(rng)}>${rng.chance(0.5) ? " " : ""}`,
      ` ${randomText(rng, 20)}`,
    ]);
    return verb + arg;
  }
  if (r < 85) {
    let line = rng.pick(SMTP_LINES);
    for (let m = rng.range(1, 3); m > 0; m--) {
      const i = rng.int(line.length + 1);
      switch (rng.int(8)) {
        case 0:
          line = line.slice(0, i) + randomChar(rng) + line.slice(i);
          break;
        case 1:
          line = line.slice(0, i) + line.slice(i + rng.range(1, 5));
          break;
        case 2:
          line = rng.chance(0.5) ? line.toLowerCase() : line.toUpperCase();
          break;
        case 3:
          line = line.slice(0, i) + rng.pick([" ", "  ", "\t", ":", "<", ">", "=", "\\"]) +
            line.slice(i);
          break;
        case 4:
          line += rng.pick([
            " SIZE=1",
            " SIZE=1=2",
            " BODY=8BITMIME",
            " BODY=",
            " X=Y",
            " ",
            "   ",
          ]);
          break;
        case 5:
          line = line.slice(0, i) + address(rng) + line.slice(i);
          break;
        case 6:
          line += "x".repeat(rng.pick([400, 500, 511, 512, 513, 2000]));
          break;
        default:
          line = line.slice(0, i) + rng.pick(UNICODE_CHARS) + line.slice(i);
      }
    }
    return line;
  }
  if (r < 95) return randomText(rng, 60);
  // Raw bytes through the edge's decoding: TextDecoder (lossy), trailing CR stripped.
  const bytes = new Uint8Array(rng.small(80));
  for (let k = 0; k < bytes.length; k++) bytes[k] = rng.int(256);
  return new TextDecoder().decode(bytes).replace(/\r$/, "");
}
