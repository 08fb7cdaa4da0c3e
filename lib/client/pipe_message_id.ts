/**
 * The id of a Postfix pipe delivery. Pure.
 *
 * @module
 */

import { ConfigError } from "./client_config.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";
import { Sha256 } from "../shared/sha256.ts";

/** What `--queue-id` accepts (Postfix's queue ids, short or long). */
const QUEUE_ID_REGEXP = /^[A-Za-z0-9]{1,64}$/;

/**
 * The id a Postfix pipe delivery carries: Postfix's queue id and this
 * delivery's envelope, hashed. A retry of the same delivery gets the same
 * id (the relay answers "already delivered" instead of sending it twice);
 * another recipient of the same queue file gets another.
 *
 * @throws {ConfigError} A queue id outside `[A-Za-z0-9]{1,64}` (the pipe line is wrong).
 *
 * @example Usage
 * ```ts
 * import { match, notEqual } from "node:assert/strict";
 * import { pipeMessageId } from "./pipe_message_id.ts";
 * const req = { sender: "a@example.org", recipients: ["b@example.net"] };
 * match(pipeMessageId("4F2A1B3C9D", req), /^m[0-9a-f]{32}$/);
 * notEqual(pipeMessageId("4F2A1B3C9D", req), pipeMessageId("4F2A1B3C9D", { ...req, recipients: ["c@example.net"] }));
 * ```
 */
export function pipeMessageId(
  queueId: string,
  req: Pick<SendmailRequest, "sender" | "recipients">,
): string {
  if (!QUEUE_ID_REGEXP.test(queueId)) throw new ConfigError("invalid --queue-id");
  const text = [queueId, req.sender ?? "", ...req.recipients].join("\0");
  return `m${new Sha256().update(new TextEncoder().encode(text)).hex().slice(0, 32)}`;
}
