/**
 * The word dialect spoken between sshsendmail and rsendmail: a strict subset
 * of POSIX shell quoting with no expansion of any kind. `tokenizeWords` and
 * `quoteWords` are exact inverses for every word that holds no control
 * character.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** Longest command string accepted from the peer, in UTF-16 units. */
export const MAX_COMMAND_LENGTH = 65536;
/** Most words accepted in one command. */
export const MAX_WORDS = 4096;
/** Longest single word. */
export const MAX_WORD_LENGTH = 4096;

/** Characters a word may hold outside quotes: none has a meaning to sh. */
const SAFE_BARE_REGEXP = /^[A-Za-z0-9@%+=:,./_-]$/;
/** A whole word that needs no quotes. */
const SAFE_WORD_REGEXP = /^[A-Za-z0-9@%+=:,./_-]+$/;
/**
 * C0 controls, DEL, C1 controls, Unicode line separators, and the invisible
 * format characters (zero-width, bidi overrides, BOM) that can spoof a log
 * line or an address: CR, LF, NUL, TAB, U+202E … Also U+FFFD, the
 * replacement character: it is what a lossy UTF-8 decoder makes of a byte
 * that is not UTF-8 (a batch frame line), so it never stands for what the
 * peer sent.
 */
export const CONTROL_REGEXP =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufffd]/;

/** True when `text` holds a control character (including CR, LF, TAB, NUL). */
export function hasControl(text: string): boolean {
  return CONTROL_REGEXP.test(text);
}

/**
 * Splits a command string into words. Accepts bare words made of
 * `[A-Za-z0-9@%+=:,./_-]` and non-ASCII letters, single-quoted text, double-
 * quoted text without `$` or backquote, and backslash escapes; words are
 * separated by spaces.
 *
 * Security: the input is peer-controlled. Anything a POSIX shell would expand
 * or treat as an operator (`$`, backquote, `;`, `|`, `&`, `<`, `>`, `(`, `)`,
 * globs, `~`, `#`) is refused outside quotes, so this tokenizer and /bin/sh
 * never disagree about the words of an accepted command.
 *
 * @param command Raw command string, e.g. from SSH_ORIGINAL_COMMAND.
 * @returns The words, in order.
 * @throws {UsageError} On control characters, unbalanced quotes, shell
 * metacharacters or absurd lengths.
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { tokenizeWords } from "./words.ts";
 * deepStrictEqual(tokenizeWords("sendmail -f '' 'a b'"), ["sendmail", "-f", "", "a b"]);
 * ```
 */
export function tokenizeWords(command: string): string[] {
  if (command.length > MAX_COMMAND_LENGTH) {
    throw new UsageError("request too long", "5.5.2");
  }
  if (hasControl(command)) {
    throw new UsageError("control character in request", "5.5.2");
  }
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  const push = () => {
    if (word.length > MAX_WORD_LENGTH) {
      throw new UsageError("word too long", "5.5.2");
    }
    words.push(word);
    if (words.length > MAX_WORDS) {
      throw new UsageError("too many words", "5.5.2");
    }
    word = "";
    inWord = false;
  };
  while (i < command.length) {
    const c = command[i]!;
    if (c === " ") {
      if (inWord) push();
      i++;
    } else if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw new UsageError("unbalanced quote", "5.5.2");
      word += command.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= command.length) {
          throw new UsageError("unbalanced quote", "5.5.2");
        }
        const d = command[i]!;
        if (d === '"') break;
        if (d === "$" || d === "`") {
          throw new UsageError("expansion in double quotes", "5.5.2");
        }
        if (d === "\\") {
          const e = command[i + 1];
          if (e === undefined) throw new UsageError("unbalanced quote", "5.5.2");
          // POSIX: inside double quotes a backslash escapes only $ ` " \
          if (e === "$" || e === "`" || e === '"' || e === "\\") {
            word += e;
            i += 2;
            continue;
          }
        }
        word += d;
        i++;
      }
      inWord = true;
      i++;
    } else if (c === "\\") {
      const e = command[i + 1];
      if (e === undefined) throw new UsageError("trailing backslash", "5.5.2");
      word += e;
      inWord = true;
      i += 2;
    } else if (SAFE_BARE_REGEXP.test(c) || c.charCodeAt(0) >= 0xa0) {
      word += c;
      inWord = true;
      i++;
    } else {
      throw new UsageError("unquoted shell metacharacter in request", "5.5.2");
    }
  }
  if (inWord) push();
  return words;
}

/**
 * Quotes one word so that `tokenizeWords` and a POSIX shell both read it
 * back exactly: safe words stay bare, everything else goes in single quotes
 * with `'` written as `'\''`.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { quoteWord } from "./words.ts";
 * strictEqual(quoteWord("o'brien@example.net"), "'o'\\''brien@example.net'");
 * ```
 */
export function quoteWord(word: string): string {
  if (SAFE_WORD_REGEXP.test(word)) return word;
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** Quotes every word and joins them with single spaces. */
export function quoteWords(words: readonly string[]): string {
  return words.map(quoteWord).join(" ");
}
