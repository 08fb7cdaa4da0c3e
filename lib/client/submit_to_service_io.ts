/**
 * Handing one message to the satellite service (any local user), with the
 * headers a submission adds.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientSettings } from "./client_config.ts";
import { LOCAL_IDLE_MS } from "./client_constants.ts";
import { missingHeaders } from "./local_mail.ts";
import { migrateOldQueue } from "./migrate_io.ts";
import { dropMessage, type DropOptions } from "./submit_io.ts";
import { SPOOL_ROOT } from "../shared/layout.ts";
import { type ByteReader, prefixedReader } from "../shared/spool_io.ts";
import { requestWords } from "../shared/request_codec.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";
import { hexOf } from "../shared/sha256.ts";

/** The limits of a drop (and of a migrated old queue). */
export function dropOptionsOf(settings: ClientSettings): DropOptions {
  return { maxSize: settings.maxSize, idleTimeoutMs: LOCAL_IDLE_MS };
}

/** The message with `Date:` and `Message-ID:` added where it has none (read ahead ≤ 64 KiB). */
async function withSubmissionHeaders(
  ctx: ClientContext,
  settings: ClientSettings,
  body: ByteReader,
): Promise<ByteReader> {
  const head = new Uint8Array(65536);
  let got = 0;
  for (;;) {
    const n = await body.read(head.subarray(got));
    if (n === null) break;
    got += n;
    const text = new TextDecoder().decode(head.subarray(0, got));
    if (got === head.length || /\r?\n\r?\n/.test(text) || /^\r?\n/.test(text)) break;
  }
  const text = new TextDecoder().decode(head.subarray(0, got));
  const id = hexOf(ctx.randomBytes(12));
  const domain = settings.domain ?? ctx.hostname().toLowerCase();
  const added = new TextEncoder().encode(missingHeaders(text, new Date(ctx.now()), id, domain));
  const bytes = new Uint8Array(added.length + got);
  bytes.set(added);
  bytes.set(head.subarray(0, got), added.length);
  return prefixedReader(bytes, body);
}

/**
 * Hands one message to the satellite service.
 *
 * @returns The drop's hex (the submission id the service logs).
 */
export async function submitToService(
  ctx: ClientContext,
  settings: ClientSettings,
  req: SendmailRequest,
  body: ByteReader,
): Promise<string> {
  // Mail a user queued under the old per-user layout goes to the service first.
  if (settings.spool === SPOOL_ROOT) {
    await migrateOldQueue(settings.spool, ctx.uid(), dropOptionsOf(settings)).catch(() => {});
  }
  return await dropMessage(
    settings.spool,
    requestWords({ ...req, size: undefined, sha256: undefined, id: undefined }),
    await withSubmissionHeaders(ctx, settings, body),
    dropOptionsOf(settings),
  );
}
