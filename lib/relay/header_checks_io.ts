/**
 * The relay's checks of a spooled message's header section, made before
 * sendmail runs: the recipients a -t message's header adds (against
 * --max-recipients) and, with --allow-header-sender, its From: and Sender:
 * (against --allow-sender). Each reads the spool's first HEAD_LIMIT bytes.
 * Effectful edge module (it reads the spool); the parsing is
 * lib/relay/header_recipients.ts and lib/relay/header_senders.ts.
 *
 * @module
 */

import { headerSenders } from "./header_senders.ts";
import { countHeaderRecipients } from "./header_recipients.ts";
import { DataError, PolicyError } from "../shared/errors.ts";
import type { Spooled } from "../shared/spool_io.ts";
import { isSenderAllowed, type RelayConfig } from "../shared/relay_config.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";

/** How much of a -t message's head is read to count its header recipients. */
const HEAD_LIMIT = 1 << 20;

/** The first HEAD_LIMIT bytes of the spooled message. */
async function readHeadBytes(spool: Spooled): Promise<Uint8Array> {
  const head = new Uint8Array(Math.min(HEAD_LIMIT, spool.size));
  await spool.file.seek(0, Deno.SeekMode.Start);
  let got = 0;
  while (got < head.length) {
    const n = await spool.file.read(head.subarray(got));
    if (n === null) break;
    got += n;
  }
  return head.subarray(0, got);
}

/** The first HEAD_LIMIT bytes of the spooled message, as UTF-8 text. */
async function readHead(spool: Spooled): Promise<string> {
  return new TextDecoder().decode(await readHeadBytes(spool));
}

/** One character per byte (windows-1252 maps every byte): line lengths stay byte counts. */
const BYTES_AS_TEXT = new TextDecoder("latin1");

/**
 * With -t, Postfix's sendmail takes recipients from To/Cc/Bcc (or their
 * Resent- forms): the key's --max-recipients counts those too, before
 * sendmail runs, never fewer than Postfix extracts however the header is
 * spelt (lib/relay/header_recipients.ts; measured against Postfix by
 * tests/e2e/header_count_test.ts). Over the limit: 5.5.3, as for the
 * command line.
 *
 * A header section the count cannot be sure of is refused with 5.6.0
 * (exit 65): one that does not end within the first HEAD_LIMIT bytes
 * (Postfix would read on), one holding a NUL byte, or a From_ line as long
 * as Postfix's 2048-byte line record. Permanent, because sending the same
 * bytes again cannot succeed (a 4.x.x would keep the satellite retrying
 * for days); not "too many recipients", because that is not what was found.
 * No legitimate message has any of these.
 */
export async function checkHeaderRecipients(
  spool: Spooled,
  req: SendmailRequest,
  config: RelayConfig,
): Promise<void> {
  const head = await readHeadBytes(spool);
  const text = BYTES_AS_TEXT.decode(head);
  const found = countHeaderRecipients(text, { complete: head.length === spool.size });
  if (found.kind === "uncountable") throw new DataError(found.reason, "5.6.0");
  if (req.recipients.length + found.count > config.maxRecipients) {
    throw new DataError("too many recipients", "5.5.3");
  }
}

/**
 * `--allow-header-sender`: every address in From: and Sender: must match
 * the key's --allow-sender list too (the message is spooled already, so
 * the check costs reading its head).
 */
export async function checkHeaderSenders(spool: Spooled, config: RelayConfig): Promise<void> {
  const text = await readHead(spool);
  if (spool.size > HEAD_LIMIT && !/\r?\n\r?\n/.test(text)) {
    throw new DataError("header section too long", "5.6.0");
  }
  for (const address of headerSenders(text)) {
    if (!isSenderAllowed(address, config.allowSenders)) {
      throw new PolicyError("header sender not allowed for this key", "5.7.1");
    }
  }
}
