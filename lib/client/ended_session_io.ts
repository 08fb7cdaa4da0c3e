/**
 * What the satellite service does with the frames a relay session left
 * unanswered when it ended: on to the next relay when this one could not be
 * reached before any reply, or deferred (the attempt recorded, each message
 * waiting for its backoff); and when no relay can be reached at all,
 * everything else that is due is deferred too, so that it does not meet the
 * same failure one ssh attempt at a time. Used by
 * lib/client/service_delivery_io.ts. Effectful edge module.
 *
 * @module
 */

import { type Item, sessionEndLine } from "./service_book.ts";
import type { ServiceCore } from "./service_context.ts";
import { classifyExit, type Failure } from "./ssh_command.ts";
import { defer } from "./undelivered_io.ts";

/** What a session that ended knows of itself. */
export interface EndedSession {
  host: string;
  /** Frames written and not answered, in order (taken out here). */
  inflight: Item[];
  /** Replies it read. */
  answered: number;
  /** The watchdog killed it: the relay did not answer within ssh_timeout. */
  timedOut: boolean;
}

/** How a session ended, once its replies stopped. */
export interface SessionEnd {
  garbled: boolean;
  status: Deno.CommandStatus;
  stderr: string;
}

/**
 * Where delivery goes on: `next-relay` (the caller moves to the next host;
 * the unanswered frames go there at once), or `deferred` (back to the first
 * host, retries wait for their backoff).
 */
export type EndedOutcome = "next-relay" | "deferred";

/** Settles what session `s` left unanswered; `hostIndex` is the host it used. */
export function settleEndedSession(
  core: ServiceCore,
  s: EndedSession,
  end: SessionEnd,
  hostIndex: number,
): EndedOutcome {
  const { ctx } = core;
  // ssh catches the watchdog's SIGTERM and exits 255: the timeout is known by the flag.
  const failure: Failure | undefined = end.garbled || s.timedOut
    ? undefined
    : classifyExit(end.status.code, end.stderr, ctx.program);
  const line = failure?.line ?? sessionEndLine(ctx.program, {
    garbled: end.garbled,
    timedOut: s.timedOut,
    sshTimeout: ctx.settings.sshTimeout,
  });
  const pending = s.inflight.splice(0);
  if (s.answered === 0 && failure?.connectPhase && hostIndex + 1 < ctx.settings.hosts.length) {
    ctx.log("warning", { event: "relay-unreachable", host: s.host, reason: line });
    for (const item of pending) {
      item.busy = false;
      item.forced = true;
    }
    return "next-relay";
  }
  for (const item of pending) defer(core, item, line, s.host);
  if (!failure?.connectPhase) return "deferred";
  // No relay can be reached: what is due now would only meet the same
  // failure, one ssh attempt per window. It waits for its backoff.
  const now = Date.now();
  for (const item of core.book.items.values()) {
    if (item.busy) continue;
    if (item.forced || (item.entry.state?.nextAttempt ?? 0) <= now) {
      item.forced = false;
      defer(core, item, line, s.host);
    }
  }
  return "deferred";
}
