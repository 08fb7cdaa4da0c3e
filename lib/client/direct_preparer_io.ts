/**
 * Direct mode's local policy, read once per handler (a -bs session sends
 * many messages), and the step that applies it before a message leaves.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientSettings } from "./client_config.ts";
import { LOCAL_IDLE_MS, LOCAL_MAX_SIZE } from "./client_constants.ts";
import type { LocalPolicy } from "./local_mail.ts";
import { loginOfUid, prepareLocal, readLocalPolicy } from "./prepare_local_io.ts";
import type { Spooled } from "../shared/spool_io.ts";
import { localSpool } from "./local_spool.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";

/** The standalone mode's local policy, read on the first call and kept. */
export function localPolicyOnce(
  ctx: ClientContext,
  settings: ClientSettings,
): () => Promise<LocalPolicy> {
  let policy: Promise<LocalPolicy> | undefined;
  return () => (policy ??= readLocalPolicy(settings, ctx.hostname()));
}

/** Applies the caller's own local policy to one message (its request and spool). */
export type DirectPreparer = (
  req: SendmailRequest,
  spool: Spooled,
) => Promise<{ req: SendmailRequest; spool: Spooled }>;

/**
 * Direct mode: the caller's own local policy, applied before the message
 * leaves. The policy and the caller's login are read once, on first use.
 * `shortLived`: the process ends after this one message (a sendmail call,
 * not a `-bs` session).
 */
export function directPreparer(
  ctx: ClientContext,
  settings: ClientSettings,
  shortLived = false,
): DirectPreparer {
  const policy = localPolicyOnce(ctx, settings);
  let login: Promise<string> | undefined;
  return async (req, spool) => {
    const name = await (login ??= loginOfUid(ctx.uid()));
    return await prepareLocal(await policy(), name, req, spool, {
      spool: localSpool(ctx.uid()),
      maxSize: LOCAL_MAX_SIZE,
      idleTimeoutMs: LOCAL_IDLE_MS,
      shortLived,
    });
  };
}
