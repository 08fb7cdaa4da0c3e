/**
 * Per-key limits of the relay, kept in its state directory beside the
 * duplicate record (`<state>/rsendmail-<uid>/<label>.limits/`): how many
 * sessions of the label run at once (`--max-sessions`) and how many
 * messages it sent in the last period (`--max-messages`). Every change is
 * made under an exclusive lock of `lock`, so concurrent sessions of one key
 * count exactly. A stolen key gets a temporary refusal (4.7.x): an honest
 * satellite's queue waits and retries. Effectful edge module.
 *
 * @module
 */

import { privateStateDir } from "./state_dir_io.ts";

import type { MessageRate } from "../shared/relay_config.ts";

/** A session refreshes its file this often; one not refreshed for STALE_MS died. */
export const HEARTBEAT_MS = 20_000;
const STALE_MS = 3 * HEARTBEAT_MS;

/**
 * The send times still inside the window, and whether one more may go.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { admitMessage } from "./limits_io.ts";
 * deepStrictEqual(admitMessage([1, 5, 9], 10, { count: 2, periodMs: 6 }), { ok: false, kept: [5, 9] });
 * ```
 */
export function admitMessage(
  times: readonly number[],
  now: number,
  rate: MessageRate,
): { ok: boolean; kept: number[] } {
  const kept = times.filter((t) => Number.isFinite(t) && t > now - rate.periodMs && t <= now);
  return { ok: kept.length < rate.count, kept };
}

/** The limits of one label. */
export interface Limits {
  /**
   * Counts this session in, or answers "busy" when `max` live sessions of
   * the label run already. The returned session must be ended.
   */
  enterSession(max: number): Promise<{ end(): Promise<void> } | "busy">;
  /**
   * Reserves one message in the window, or answers "limited". The returned
   * undo gives the reservation back (the message was not delivered).
   */
  reserveMessage(rate: MessageRate): Promise<(() => Promise<void>) | "limited">;
}

async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(`${dir}/lock`, {
    read: true,
    write: true,
    create: true,
    mode: 0o600,
  });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close();
  }
}

async function readTimes(path: string): Promise<number[]> {
  try {
    const value = JSON.parse(await Deno.readTextFile(path));
    return Array.isArray(value) ? value.filter((t) => typeof t === "number") : [];
  } catch {
    return [];
  }
}

async function writeTimes(dir: string, times: readonly number[]): Promise<void> {
  await Deno.writeTextFile(`${dir}/sent.tmp`, JSON.stringify(times), { mode: 0o600 });
  await Deno.rename(`${dir}/sent.tmp`, `${dir}/sent`);
}

/**
 * Opens the label's limits directory (private to the relay account).
 * Undefined when it cannot be used: the caller then refuses for now
 * rather than run without the limits the admin set.
 */
export async function openLimits(stateDir: string, label: string): Promise<Limits | undefined> {
  const dir = await privateStateDir(stateDir, `${label || "_"}.limits`);
  if (dir === undefined) return undefined;
  return {
    enterSession(max) {
      return withLock(dir, async () => {
        const now = Date.now();
        let live = 0;
        for await (const e of Deno.readDir(dir)) {
          if (!e.name.startsWith("session-")) continue;
          const info = await Deno.lstat(`${dir}/${e.name}`).catch(() => undefined);
          if (!info) continue;
          if (now - (info.mtime?.getTime() ?? 0) > STALE_MS) {
            await Deno.remove(`${dir}/${e.name}`).catch(() => {});
          } else {
            live++;
          }
        }
        if (max > 0 && live >= max) return "busy" as const;
        const path = `${dir}/session-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
        await Deno.writeTextFile(path, "", { mode: 0o600 });
        const beat = setInterval(() => {
          const t = new Date();
          Deno.utime(path, t, t).catch(() => {});
        }, HEARTBEAT_MS);
        return {
          async end() {
            clearInterval(beat);
            await Deno.remove(path).catch(() => {});
          },
        };
      });
    },
    reserveMessage(rate) {
      return withLock(dir, async () => {
        const now = Date.now();
        const { ok, kept } = admitMessage(await readTimes(`${dir}/sent`), now, rate);
        if (!ok) {
          await writeTimes(dir, kept);
          return "limited" as const;
        }
        await writeTimes(dir, [...kept, now]);
        return async () => {
          await withLock(dir, async () => {
            const times = await readTimes(`${dir}/sent`);
            const at = times.lastIndexOf(now);
            if (at >= 0) times.splice(at, 1);
            await writeTimes(dir, times);
          }).catch(() => {});
        };
      });
    },
  };
}
