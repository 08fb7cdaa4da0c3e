/**
 * What the parts of the satellite service (lib/client/service_io.ts) share:
 * its context from the edge, its log, and the core every part works on
 * (the queue, the messages it tracks, the running tasks). Types only, and
 * the syslog priority of a severity. Pure module.
 *
 * @module
 */

import type { ClientSettings } from "./client_config.ts";
import type { LocalPolicy } from "./local_mail.ts";
import type { LogFields } from "../shared/log_line.ts";
import type { Queue } from "./queue_io.ts";
import type { ItemBook } from "./service_book.ts";

/** What the service needs from its edge. */
export interface ServiceContext {
  settings: ClientSettings;
  /** The account's uid (this process's). */
  uid: number;
  /** The account's group (owns root/ with root). */
  gid: number;
  hostname: string;
  sshPath: string;
  env: Record<string, string>;
  program: string;
  /** Where spooled copies go (unlinked at creation). */
  spoolDir: string;
  log: ServiceLog;
  policy: () => Promise<LocalPolicy>;
}

/** syslog severities the service uses. */
export type Severity = "info" | "warning" | "err";

/** The service's log sink: one line per event. */
export type ServiceLog = (severity: Severity, fields: LogFields) => void;

/** What the intake, the requests and the delivery of one service share. */
export interface ServiceCore {
  readonly ctx: ServiceContext;
  /** The spool (drop/, root/, incoming/, hold/, reply/, queue/). */
  readonly root: string;
  readonly queue: Queue;
  readonly book: ItemBook;
  /** True once the service stops taking work. */
  readonly stopping: boolean;
  /** Keeps a running task until it ends (stop() waits for them). */
  track<T>(p: Promise<T>): Promise<T>;
  /** Sends what is due. */
  pump(): void;
}

/**
 * syslog PRI of facility mail at a severity.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { mailPriority } from "./service_context.ts";
 * strictEqual(mailPriority("err"), 19);
 * ```
 */
export function mailPriority(severity: Severity): number {
  return 2 * 8 + { err: 3, warning: 4, info: 6 }[severity];
}
