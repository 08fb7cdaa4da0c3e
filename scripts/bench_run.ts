/**
 * How the sections run what they time: one command from spawn to exit
 * (`timeOnce`), a command as a local account (`asUser`), and cases
 * measured round-robin with their delivery groups. The paths, options and
 * message makers are in scripts/bench_common.ts.
 *
 * @module
 */

import {
  baseEnv,
  decoder,
  done,
  LOGIN_PATH,
  progress,
  SENDER,
  SENDMAIL,
  SETPRIV,
  sleep,
} from "./bench_common.ts";
import type { MailGroup } from "./bench_delivery.ts";
import { run, waitFor } from "../tests/e2e/_bed.ts";

/** One command to time. */
export interface Spec {
  cmd: string;
  args: string[];
  env: Record<string, string>;
  stdin?: Uint8Array;
}

export interface Sample {
  ms: number;
  code: number;
  stderr: string;
}

export async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  return text;
}

/**
 * The relay's sendmail run directly on one message (as root, the bench's
 * environment): the floors of sections 3 and 5 and section 3's ceilings.
 */
export function directSendmail(rcpt: string, stdin: Uint8Array): Spec {
  return { cmd: SENDMAIL, args: ["-oi", "-f", SENDER, "--", rcpt], env: baseEnv(), stdin };
}

/**
 * Waits until Postfix's queue is empty (`postqueue -j` lists nothing): a
 * batch case then starts with Postfix idle, not still delivering the
 * previous case's messages on the same two CPUs. Gives up after `ms`.
 */
export async function postfixIdle(ms = 300_000): Promise<void> {
  await waitFor("Postfix's queue to empty", async () => {
    const queue = await run("/usr/sbin/postqueue", ["-j"], { check: false });
    return queue.code === 0 && queue.stdout === "";
  }, ms);
}

/** Times spawn → exit. stderr is read concurrently (a ControlPersist master may hold it). */
export async function timeOnce(spec: Spec): Promise<Sample> {
  const t0 = performance.now();
  const child = new Deno.Command(spec.cmd, {
    args: spec.args,
    clearEnv: true,
    env: spec.env,
    stdin: spec.stdin === undefined ? "null" : "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = readAll(child.stderr);
  if (spec.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(spec.stdin);
      await writer.close();
    } catch {
      // exited early: its status tells
    }
  }
  const status = await child.status;
  const ms = performance.now() - t0;
  const text = await Promise.race([stderr, sleep(2000).then(() => "(stderr held open)")]);
  return { ms, code: status.code, stderr: text };
}

/** A command as a local account (setpriv, a login-like environment). */
export function asUser(
  user: string,
  home: string,
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
  env: Record<string, string> = {},
): Spec {
  return {
    cmd: SETPRIV,
    args: [`--reuid=${user}`, `--regid=${user}`, "--init-groups", "--", cmd, ...args],
    env: { PATH: LOGIN_PATH, LANG: "C", HOME: home, USER: user, LOGNAME: user, ...env },
    ...(stdin === undefined ? {} : { stdin }),
  };
}

/** A benchmarked case: builds the command for round `i` (mail cases tag their message). */
export interface Case {
  id: string;
  spec: (i: number) => Spec;
  /** Expects one delivered message per successful run. */
  mail: boolean;
  samples: Sample[];
  failures: string[];
}

/** A list of cases and its maker. */
export function caseList(): {
  cases: Case[];
  mk: (id: string, mail: boolean, spec: (i: number) => Spec) => Case;
} {
  const cases: Case[] = [];
  return {
    cases,
    mk: (id, mail, spec) => {
      const c: Case = { id, spec, mail, samples: [], failures: [] };
      cases.push(c);
      return c;
    },
  };
}

/** Runs every case round-robin: warm-up rounds (discarded), then measured rounds. */
export async function measure(
  cases: Case[],
  o: { warmup: number; runs: number },
  title: string,
): Promise<void> {
  const total = o.warmup + o.runs;
  for (let i = 0; i < total; i++) {
    await progress(`${title}: round ${i + 1}/${total}`);
    for (const c of cases) {
      const s = await timeOnce(c.spec(i));
      if (s.code !== 0) c.failures.push(`exit ${s.code}: ${s.stderr.trim().split("\n")[0]}`);
      if (i >= o.warmup) c.samples.push(s);
    }
  }
  await done(`${title}: ${total} rounds`);
}

/** The cases' delivery groups (every run of a mail case, warm-up included). */
export function caseGroups(section: string, cases: Case[], o: { warmup: number; runs: number }) {
  return cases.filter((c) => c.mail).map((c): MailGroup => ({
    id: `${section}.${c.id}`,
    label: `${section}.${c.id}`,
    sent: o.warmup + o.runs,
    failed: c.failures.length,
  }));
}
