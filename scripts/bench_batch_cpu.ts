/**
 * Where section 3's CPU goes: the machine's busy share over a run
 * (/proc/stat), each process of the chain's own CPU time (/proc/<pid>/stat:
 * the service, its ssh, the relay's sshd and the relay), and the tables
 * that set them against what the goal's rate allows on this machine's CPUs.
 * Deno grants /proc only with --allow-all: cat reads it (as bench_spool's
 * memoryOf does).
 *
 * @module
 */

import { run } from "../tests/e2e/_bed.ts";
import { table } from "./bench_report.ts";
import { relayPidOf } from "./bench_spool.ts";

export const CPUS = navigator.hardwareConcurrency;

/** Linux reports a process's CPU time in USER_HZ ticks, 100 a second on every architecture. */
const USER_HZ = 100;

/** The machine's CPU counters (/proc/stat's first line): busy and total jiffies. */
export async function cpuTicks(): Promise<{ busy: number; total: number }> {
  const line = (await run("/bin/cat", ["/proc/stat"])).stdout.split("\n")[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

export const busyShare = (a: { busy: number; total: number }, b: { busy: number; total: number }) =>
  (b.busy - a.busy) / Math.max(1, b.total - a.total);

/** CPU time per message (ms), the whole machine's, from a busy share over a wall. */
export const cpuPerMessage = (busy: number, wallMs: number, messages: number) =>
  busy * CPUS * wallMs / Math.max(1, messages);

/** One process's CPU time so far (user + system, ms); undefined when it is gone. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  return (await procStat(pid))?.cpuMs;
}

/** One process's parent, name and CPU time so far (user + system, ms). */
async function procStat(
  pid: number,
): Promise<{ ppid: number; comm: string; cpuMs: number } | undefined> {
  const text = (await run("/bin/cat", [`/proc/${pid}/stat`], { check: false })).stdout;
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  // After "pid (comm) ": state ppid … utime (14th field) stime (15th).
  const f = text.slice(close + 2).trim().split(/\s+/);
  return {
    ppid: Number(f[1]),
    comm: text.slice(text.indexOf("(") + 1, close),
    cpuMs: (Number(f[11]) + Number(f[12])) * 1000 / USER_HZ,
  };
}

/** CPU time (ms) each long-lived process of one batch run used, from its start. */
export interface ChainCpu {
  service: number;
  ssh: number;
  sshd: number;
  relay: number;
}

/**
 * The chain's processes, read while they still run (each started with this
 * run: the service by the bench, the rest by it): the service (`servicePid`),
 * its ssh child, the relay forced with `--label <label>` and the sshd
 * session process above it. Undefined when one is gone.
 */
export async function chainCpu(servicePid: number, label: string): Promise<ChainCpu | undefined> {
  const relayPid = await relayPidOf(label);
  const sshPid = Number(
    (await run("/usr/bin/pgrep", ["-P", String(servicePid), "-x", "ssh"], { check: false }))
      .stdout.split("\n")[0],
  );
  if (relayPid === undefined || !Number.isInteger(sshPid) || sshPid <= 0) return undefined;
  const [service, ssh, relay] = await Promise.all(
    [servicePid, sshPid, relayPid].map(procStat),
  );
  // sshd runs the forced command through the account's shell, which may
  // not exec it: the session's sshd is the nearest sshd above the relay.
  let sshd = relay && await procStat(relay.ppid);
  for (let up = 0; up < 3 && sshd && !sshd.comm.startsWith("sshd"); up++) {
    sshd = await procStat(sshd.ppid);
  }
  if (!service || !ssh || !relay || !sshd?.comm.startsWith("sshd")) return undefined;
  return { service: service.cpuMs, ssh: ssh.cpuMs, sshd: sshd.cpuMs, relay: relay.cpuMs };
}

/** What section 3's CPU tables are made from (ms of CPU per message, medians). */
export interface CpuFigures {
  /** The serial sendmail floor's rate (msg/s). */
  floorRate: number;
  /** The goal's multiple of the floor's rate. */
  goalRate: number;
  /** Sendmail and Postfix alone: the lower of the ceiling rows. */
  postfix: number;
  /** The best relay row: its id and the whole machine's CPU per message. */
  best: { id: string; cpuMs: number };
  /** Per relay row, each process of the chain (per message), when read. */
  byProcess: { what: string; cpu: ChainCpu | undefined; wholeMs: number }[];
}

/**
 * What CPU alone allows: when every CPU is busy, the rate is CPUs ÷ CPU
 * time per message. The goal's rate needs the whole chain under a budget
 * per message; sendmail and Postfix alone take the ceiling rows' share.
 * Then each process of the chain, so that the part over the budget has
 * names.
 */
export function cpuTables(c: CpuFigures): string[] {
  const goalRate = c.goalRate * c.floorRate;
  const budget = CPUS * 1000 / goalRate;
  const rateOf = (ms: number) => (CPUS * 1000 / ms).toFixed(1);
  const times = (ms: number) => `${(CPUS * 1000 / ms / c.floorRate).toFixed(2)}×`;
  const ms = (x: number | undefined) => (x === undefined ? "–" : x.toFixed(2));
  return [
    table([
      "CPU per message on this machine's " + `${CPUS} CPUs`,
      "ms",
      "rate it allows (msg/s)",
      "÷ floor",
    ], [
      [
        `the goal's rate (${c.goalRate}× the floor) allows at most`,
        budget.toFixed(1),
        goalRate.toFixed(1),
        `${c.goalRate.toFixed(2)}×`,
      ],
      [
        "sendmail and Postfix alone (the ceiling rows, lower)",
        c.postfix.toFixed(1),
        rateOf(c.postfix),
        times(c.postfix),
      ],
      [
        `the whole chain, best relay row (\`${c.best.id}\`)`,
        c.best.cpuMs.toFixed(1),
        rateOf(c.best.cpuMs),
        times(c.best.cpuMs),
      ],
    ]),
    "",
    `So the goal leaves the service, ssh, sshd and the relay together ` +
    `${Math.max(0, budget - c.postfix).toFixed(1)} ms of CPU per message here; they use ` +
    `${Math.max(0, c.best.cpuMs - c.postfix).toFixed(1)} ms (the whole chain less Postfix's ` +
    "share), and by their own counters:",
    "",
    table(
      [
        "CPU ms per message, by process",
        "the service",
        "its ssh",
        "the relay's sshd",
        "the relay",
        "these four",
        "the rest (sendmail, Postfix, kernel, the bench)",
      ],
      c.byProcess.map(({ what, cpu, wholeMs }) => {
        const own = cpu && cpu.service + cpu.ssh + cpu.sshd + cpu.relay;
        return [
          what,
          ms(cpu?.service),
          ms(cpu?.ssh),
          ms(cpu?.sshd),
          ms(cpu?.relay),
          ms(own),
          ms(own === undefined ? undefined : wholeMs - own),
        ];
      }),
    ),
    "",
    "Each process's own user and system time (/proc/<pid>/stat), read just before the " +
    "service stops, over the run's messages: the service's from the flush on (its start and " +
    "its reading of the queue left out; in the intake row, from its start, taking the drops " +
    "in included), ssh's and sshd's with the handshake. The rest is the whole machine's CPU " +
    "per message less these four.",
  ];
}
