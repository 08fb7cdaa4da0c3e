/**
 * Flushing the offline queue: one SSH session to the relay in batch mode
 * for every message that is due, a message removed only after the relay
 * accepted it (or said it already had it). Effectful edge module.
 *
 * @module
 */

import { frameHeader, parseReply } from "./batch.ts";
import type { ClientSettings } from "./client_config.ts";
import { isTemporary } from "./exit_codes.ts";
import type { Queue, QueueEntry } from "./queue.ts";
import {
  backoffMs,
  failureNotice,
  formatAge,
  newMessageId,
  type QueueHeader,
} from "./queue_entry.ts";
import { Sha256 } from "./sha256.ts";
import { classifyExit, type Failure } from "./ssh_command.ts";
import { nextLine, spawnBatchSession } from "./batch_channel.ts";

/** What a flush did. */
export interface FlushResult {
  delivered: number;
  duplicates: number;
  failed: number;
  deferred: number;
  expired: number;
  /** Why the relay could not be used, when it could not. */
  failure: Failure | undefined;
}

/** How to flush. */
export interface FlushOptions {
  sshPath: string;
  env: Record<string, string>;
  program: string;
  hostname: string;
  maxAgeMs: number;
  now: number;
  /** Ignore backoff: try every message now. */
  force: boolean;
  controlPath?: string | undefined;
}

/** The request words of one batch frame for a queued (or about to be queued) message. */
export function frameWordsOf(h: QueueHeader): string[] {
  return [
    "-oi",
    ...(h.sender === null ? [] : ["-f", h.sender]),
    ...(h.extractRecipients ? ["-t"] : []),
    `--size=${h.size}`,
    `--sha256=${h.sha256}`,
    `--id=${h.id}`,
    "--",
    ...h.recipients,
  ];
}

/** Gives up on a message: to failed/, and a notice to its sender through the queue. */
async function giveUp(queue: Queue, entry: QueueEntry, reason: string, o: FlushOptions) {
  const h = entry.header;
  if (h.sender !== null && h.sender !== "") {
    const headers = await queue.headersOf(entry).catch(() => "");
    const body = new TextEncoder().encode(
      failureNotice(h, reason, o.hostname, headers, new Date(o.now)),
    );
    await queue.enqueue({
      v: 1,
      id: newMessageId(crypto.randomUUID()),
      sender: "",
      recipients: [h.sender],
      extractRecipients: false,
      created: o.now,
      size: body.length,
      sha256: new Sha256().update(body).hex(),
    }, body);
  }
  await queue.fail(h.id);
}

async function defer(queue: Queue, entry: QueueEntry, line: string, now: number) {
  const attempts = (entry.state?.attempts ?? 0) + 1;
  await queue.setState(entry.header.id, {
    attempts,
    lastError: line,
    nextAttempt: now + backoffMs(attempts),
  });
}

/**
 * Sends every due message through one ssh session per relay tried. The
 * queue lock is the caller's.
 */
export async function flushQueue(
  queue: Queue,
  settings: ClientSettings,
  o: FlushOptions,
): Promise<FlushResult> {
  const result: FlushResult = {
    delivered: 0,
    duplicates: 0,
    failed: 0,
    deferred: 0,
    expired: 0,
    failure: undefined,
  };
  await queue.sweepTmp(o.now);
  const due: QueueEntry[] = [];
  for (const entry of await queue.list()) {
    if (entry.header.created + o.maxAgeMs < o.now) {
      await giveUp(
        queue,
        entry,
        `not delivered within ${formatAge(o.maxAgeMs)} (${
          entry.state?.lastError ?? "relay unreachable"
        })`,
        o,
      );
      result.expired++;
    } else if (o.force || (entry.state?.nextAttempt ?? 0) <= o.now) {
      due.push(entry);
    }
  }
  // Notices queued by giveUp() go out in this same flush.
  for (const entry of await queue.list()) {
    const notice = entry.header.sender === "" && entry.header.created === o.now;
    if (notice && !due.some((d) => d.header.id === entry.header.id)) due.push(entry);
  }
  if (due.length === 0) return result;
  for (const host of settings.hosts) {
    const { child, writer, lines: replies, stderr: stderrText } = spawnBatchSession(
      settings,
      host,
      o,
    );
    const encoder = new TextEncoder();
    const feed = (async () => {
      try {
        for (const entry of due) {
          await writer.write(encoder.encode(`${frameHeader(frameWordsOf(entry.header))}\n`));
          await queue.copyBody(entry, writer);
        }
        await writer.write(encoder.encode("END\n"));
        await writer.close();
      } catch {
        // The relay went away: the replies (or their absence) tell.
      }
    })();
    let answered = 0;
    let timedOut = false;
    for (;;) {
      const next = await nextLine(replies, settings.sshTimeout * 1000);
      if (next === "timeout") {
        timedOut = true;
        try {
          child.kill();
        } catch { /* gone already */ }
        break;
      }
      if (next.done) break;
      const reply = parseReply(next.value);
      const entry = due[answered];
      if (!reply || !entry || (reply.id !== entry.header.id && reply.id !== "-")) break;
      answered++;
      if (reply.code === 0) {
        await queue.remove(entry.header.id);
        if (reply.text.includes("already delivered")) result.duplicates++;
        else result.delivered++;
      } else if (isTemporary(reply.code)) {
        await defer(queue, entry, `${reply.status} ${reply.text}`, o.now);
        result.deferred++;
      } else {
        await giveUp(queue, entry, `${reply.status} ${reply.text}`, o);
        result.failed++;
      }
    }
    await feed;
    const status = await child.status;
    const failure = timedOut ? undefined : classifyExit(status.code, await stderrText, o.program);
    if (answered === due.length) return result;
    const line = failure?.line ??
      `4.4.2 ${o.program}: ${
        timedOut
          ? `no answer from the relay within ssh_timeout (${settings.sshTimeout} s)`
          : "relay ended the batch early"
      }`;
    result.failure = failure ?? { line, sysexit: 75, nullmailer: 16, connectPhase: false };
    if (answered === 0 && failure?.connectPhase) continue; // next relay
    for (const entry of due.slice(answered)) {
      await defer(queue, entry, line, o.now);
      result.deferred++;
    }
    return result;
  }
  for (const entry of due) {
    await defer(queue, entry, result.failure?.line ?? "relay unreachable", o.now);
    result.deferred++;
  }
  return result;
}
