/**
 * The relay's batch mode: frames of `MSG <words>` + N bytes on stdin, each
 * answered on stdout in frame order, up to `--parallel` with sendmail at
 * once (lib/relay/ordered_pool.ts), each admitted and delivered as
 * session_io.ts does for one message.
 *
 * @module
 */

import { type Limits } from "./limits_io.ts";
import { collectGarbage, exposeGc } from "../shared/collect_garbage_io.ts";
import { OrderedPool } from "./ordered_pool.ts";
import { admit, type Admitted, describe, elapsed, openRecord, type Session } from "./session_io.ts";
import { formatReply, MAX_FRAME_HEADER, MAX_FRAMES } from "../shared/batch.ts";
import { MailError, toMailError, UsageError } from "../shared/errors.ts";
import { EX_OK, EX_PROTOCOL, EX_TEMPFAIL, EX_USAGE, isTemporary } from "../shared/exit_codes.ts";
import { drain, FramedReader } from "../shared/framed_reader.ts";
import { RELAY_PROGRAM as PROGRAM } from "../shared/layout.ts";
import { type LogFields } from "../shared/log_line.ts";
import { type RelayConfig } from "../shared/relay_config.ts";
import { type DecodedFrame, decodeFrame } from "../shared/request_codec.ts";
import { fired, startTimeout } from "../shared/timeout_io.ts";

/**
 * A session this long finds V8's gc (once, tens of milliseconds) and then
 * collects in full every FRAMES_PER_GC frames: a long batch's memory stays
 * near its working set (docs/benchmarks.md, section 6).
 */
const GC_FROM_FRAME = 200;
const FRAMES_PER_GC = 100;

/** A batch frame's answer: its log line (if any) and its reply, written in frame order. */
interface Answer {
  id: string;
  error: MailError | undefined;
  text: string;
  entry?: { level: "info" | "warning" | "err"; fields: LogFields };
}

export type BatchLog = (level: "info" | "warning" | "err", fields: LogFields) => Promise<void>;

/**
 * Batch mode: frames of `MSG <words>` + N bytes, each answered on stdout in
 * frame order. Frames are read, spooled and verified one at a time; up to
 * `--parallel` of them are with sendmail at once. A frame refused by grammar
 * or policy is skipped by its declared size and the batch goes on; a frame
 * that cannot be delimited ends it.
 */
export async function batch(
  config: RelayConfig,
  base: LogFields,
  log: BatchLog,
  limits?: Limits,
): Promise<number> {
  const input = new FramedReader(Deno.stdin);
  const record = await openRecord(config);
  // Records past --dedup-days go (at most hourly, one lstat per record) once
  // the first reply is out, and before the relay exits: a large record's
  // scan holds no frame's answer.
  let pruning: Promise<void> | undefined;
  const prune = () => pruning ??= record?.prune(Date.now()).catch(() => {}) ?? Promise.resolve();
  const session: Session = { config, record, shortLived: false, limits };
  // The first frame runs as a one-message relay does, on AbortSignal.timeout
  // timers: a fresh process pays milliseconds for its first setTimeout, and
  // the first message (often the only one) should not wait for that. The
  // next frames' timers are ordinary, cleared ones; the first of them starts
  // once the first frame's sendmail has its message (or the frame is done).
  let firstFed = () => {};
  const warmUp = new Promise<void>((resolve) => firstFed = resolve);
  const cold: Session = { ...session, shortLived: true, onSendmail: () => firstFed() };
  const answers = new OrderedPool<Answer>(config.parallel, async (a) => {
    await writeAnswer(a, log);
    void prune();
  });
  const answer = (a: Answer) => answers.submit(() => Promise.resolve(a));
  const deadline = performance.now() + config.sessionTimeoutMs;
  try {
    for (let n = 0; n < MAX_FRAMES; n++) {
      if (n === 1) await warmUp;
      if (n === GC_FROM_FRAME) void exposeGc();
      else if (n > GC_FROM_FRAME && n % FRAMES_PER_GC === 0) collectGarbage();
      const next = await nextFrame(input, config, deadline, n === 0);
      if (next.kind === "end") return EX_OK;
      if (next.kind === "stop") {
        await answer({ id: "-", error: next.error, text: "" });
        return next.error.exitCode;
      }
      const frame = await takeFrame(n === 0 ? cold : session, input, next.line, {
        ...base,
        batch: n + 1,
      });
      await answers.submit(
        n === 0 ? () => frame.answer().finally(() => firstFed()) : frame.answer,
      );
      if (frame.stop !== undefined) return frame.stop;
    }
    const error = new UsageError("too many frames in one batch", "5.5.3");
    await answer({ id: "-", error, text: "" });
    return EX_USAGE;
  } finally {
    await answers.drain();
    await prune();
  }
}

/** The next frame's header line, the end of the batch, or why the batch stops. */
async function nextFrame(
  input: FramedReader,
  config: RelayConfig,
  deadline: number,
  first: boolean,
): Promise<{ kind: "frame"; line: string } | { kind: "end" } | { kind: "stop"; error: MailError }> {
  // A deadline, not an idle time: a peer sending a frame now and then cannot
  // hold the session for ever. The client reconnects for what is left.
  const timeUp = () => ({
    kind: "stop" as const,
    error: new MailError("session time limit reached", { exitCode: EX_TEMPFAIL, status: "4.4.2" }),
  });
  if (performance.now() > deadline) return timeUp();
  let line: string | null;
  try {
    const left = deadline - performance.now();
    line = await withIdle(
      input.readLine(MAX_FRAME_HEADER),
      Math.max(1, Math.min(config.idleTimeoutMs, left)),
      first,
    );
  } catch (err) {
    if (performance.now() > deadline) return timeUp();
    const error = err instanceof MailError
      ? err
      : new MailError("malformed batch frame", { exitCode: EX_PROTOCOL, status: "5.5.2" });
    return { kind: "stop", error };
  }
  if (line === null || line === "END") return { kind: "end" };
  if (performance.now() > deadline) return timeUp();
  return { kind: "frame", line };
}

/**
 * One frame: decoded by the request codec, admitted (its bytes spooled and
 * verified, or skipped), then sendmail in `answer`, the pool's task. `stop`
 * is the batch's exit code when the frame ends it.
 */
async function takeFrame(
  session: Session,
  input: FramedReader,
  line: string,
  base: LogFields,
): Promise<{ answer: () => Promise<Answer>; stop?: number }> {
  const started = performance.now();
  const fields: LogFields = { event: "sent", ...base };
  const { config } = session;
  let frame: DecodedFrame;
  try {
    frame = decodeFrame(line);
  } catch (err) {
    const error = toMailError(err);
    const entry = {
      level: "warning" as const,
      fields: { ...fields, event: "refused", reason: error.message },
    };
    return {
      answer: () => Promise.resolve({ id: "-", error, text: "", entry }),
      stop: EX_PROTOCOL,
    };
  }
  // The label names this key in the relay's log: the satellite logs it too.
  const label = config.label ? `, label ${config.label}` : "";
  const body = input.limited(frame.size);
  let text = `delivered${label}`;
  let error: MailError | undefined;
  let admitted: Admitted | undefined;
  try {
    if (frame.request === undefined) throw frame.refusal;
    const req = frame.request;
    describe(req, fields);
    if (req.id === undefined || req.sha256 === undefined) {
      throw new UsageError("batch frame without --id or --sha256", "5.5.2");
    }
    admitted = await admit(session, req, body, fields);
    if (admitted.kind === "duplicate") text = `already delivered${label}`;
  } catch (err) {
    error = toMailError(err);
  }
  // Whatever happened, the next frame starts after this one's bytes.
  if (body.left > 0) await withIdle(drain(body), config.idleTimeoutMs).catch(() => {});
  const stop = body.left > 0 ? error?.exitCode ?? EX_TEMPFAIL : undefined;
  const ready = admitted?.kind === "ready" ? admitted : undefined;
  const answer = async (): Promise<Answer> => {
    await ready?.finish().catch((err) => error = toMailError(err));
    return { id: frame.id, error, text, entry: frameEntry(fields, error, started) };
  };
  return stop === undefined ? { answer } : { answer, stop };
}

/** A frame's log line, once it is done. */
function frameEntry(fields: LogFields, error: MailError | undefined, started: number) {
  const level = error === undefined ? "info" : isTemporary(error.exitCode) ? "err" : "warning";
  return {
    level: level as "info" | "warning" | "err",
    fields: {
      ...fields,
      ...(error && {
        event: isTemporary(error.exitCode) ? "deferred" : "refused",
        reason: error.message,
        detail: error.detail || undefined,
      }),
      exit: error?.exitCode ?? EX_OK,
      ms: elapsed(started),
    },
  };
}

/** Logs a frame's line (when it has one) and writes its reply. */
async function writeAnswer(a: Answer, log: BatchLog): Promise<void> {
  if (a.entry) await log(a.entry.level, a.entry.fields);
  const line = formatReply({
    id: a.id,
    code: a.error?.exitCode ?? EX_OK,
    status: a.error?.status ?? "2.0.0",
    text: a.error ? `${PROGRAM}: ${a.error.message}` : a.text,
  });
  await Deno.stdout.write(new TextEncoder().encode(`${line}\n`));
}

/**
 * Races `promise` against an idle timeout: a timer cleared at once (a batch
 * holds none), or, for the session's first read, a cold one (see
 * timeout_io.ts).
 */
async function withIdle<T>(promise: Promise<T>, ms: number, cold = false): Promise<T> {
  const timeout = startTimeout(ms, cold);
  const idle = fired(timeout).then((): never => {
    throw new MailError("timed out waiting for the next message", {
      exitCode: EX_TEMPFAIL,
      status: "4.4.2",
    });
  });
  try {
    return await Promise.race([promise, idle]);
  } finally {
    timeout.clear();
  }
}
