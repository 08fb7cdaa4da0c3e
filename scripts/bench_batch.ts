/**
 * Section 3 of `deno task bench`, the batch: N queued messages through one
 * relay batch session, driven the way the satellite service drives it. The
 * bench writes N drops (as a submitter writes them) while the service is
 * stopped, then starts the service (tests/e2e/_service.ts): it takes them
 * into its queue and streams them over one `rsendmail --batch` session. The
 * relay's key is forced to `rsendmail --label L` (default), or to
 * `rsendmail --parallel P --label L` for P = 1, 2, 4; a relay that does not
 * know `--parallel` refuses the option, which is detected first and shown
 * as n/a. "Accepted" is the relay's duplicate record of each id
 * (`/var/tmp/rsendmail-<uid>/<label>/<id>`, written once its sendmail
 * exited), watched by inotify. The floor is the relay's sendmail run N
 * times one after another. Every round runs the floor and each variant
 * once, round-robin; medians over the rounds.
 *
 * @module
 */

import { type Account, account, startServiceBed } from "../tests/e2e/_service.ts";
import {
  baseEnv,
  BENCH_USER,
  DIST_RSENDMAIL,
  done,
  makeMessage,
  type Options,
  progress,
  RELAY_USER,
  type Sample,
  type SectionResult,
  SENDER,
  SENDMAIL,
  tagOf,
  timeOnce,
} from "./bench_common.ts";
import {
  busyShare,
  type ChainCpu,
  chainCpu,
  cpuPerMessage,
  cpuTables,
  cpuTicks,
} from "./bench_batch_cpu.ts";
import { type Goal, goalTable, quantile, table } from "./bench_report.ts";
import type { MailGroup } from "./bench_delivery.ts";
import { DirWatch, writeDrop } from "./bench_spool.ts";

/** Issue 15: a batch at least 1.5× the serial sendmail floor's rate. */
const GOAL_RATE = 1.5;
const PARALLEL = [1, 2, 4];
const NA = "n/a (relay has no --parallel)";

/**
 * Whether dist/rsendmail knows `--parallel`: an unknown admin option ends
 * the admin options, and a forced command with words left over is refused
 * as a configuration error before the request is read. The same request
 * (no recipients: refused as usage) with and without the option must end
 * alike.
 */
export async function relayHasParallel(): Promise<boolean> {
  const probe = async (args: string[]) =>
    (await timeOnce({
      cmd: DIST_RSENDMAIL,
      args,
      env: baseEnv({ SSH_ORIGINAL_COMMAND: `sendmail -f ${SENDER}` }),
      stdin: new Uint8Array(),
    })).code;
  return (await probe(["--parallel", "2"])) === (await probe([]));
}

interface Run {
  /** Service start → the relay's N-th record. */
  wall: number;
  /** Messages a second between the relay's first and N-th record. */
  rate: number;
  accepted: number;
  /** Share of both CPUs busy over the wall. */
  busy: number;
  /** CPU time the whole machine spent per message over the wall (ms). */
  cpuMs: number;
  /** Each process of the chain's CPU time over the run (ms), when read. */
  chain: ChainCpu | undefined;
}

export async function benchBatch(
  o: Options,
  runId: string,
  rcpt: string,
): Promise<SectionResult> {
  const n = o.batchN;
  const parallel = await relayHasParallel();
  const label = (v: string) => `bench-${runId}-batch-${v}`;
  const variants = [
    { id: "default", admin: "" },
    ...(parallel ? PARALLEL.map((p) => ({ id: `p${p}`, admin: `--parallel ${p} ` })) : []),
  ];
  const bed = await startServiceBed({
    keyOptions: `restrict,command="${DIST_RSENDMAIL} --label ${label("default")}"`,
    deferStart: true,
  });
  const relayUid = (await account(bed.relay.user)).uid;
  const sender: Account = await account(BENCH_USER);
  const keys = new Map<string, string>([["default", bed.key]]);
  const watches = new Map<string, DirWatch>();
  const runs = new Map<string, Run[]>(variants.map((v) => [v.id, []]));
  const floor: { wall: number; samples: Sample[]; busy: number }[] = [];
  /** The machine's ceiling: the same sendmail runs, P at once, nothing else (P = 2, 4). */
  const ceiling = new Map<number, { wall: number; samples: Sample[]; busy: number }[]>(
    PARALLEL.filter((p) => p > 1).map((p) => [p, []]),
  );
  /** Drops that could not be written, per variant over the rounds. */
  const unwritten = new Map<string, number>(variants.map((v) => [v.id, 0]));
  const findings: string[] = [];
  try {
    for (const v of variants) {
      if (v.id !== "default") {
        keys.set(
          v.id,
          await bed.relay.addKey(
            `restrict,command="${DIST_RSENDMAIL} ${v.admin}--label ${label(v.id)}"`,
            bed.service.name,
          ),
        );
      }
      watches.set(v.id, await DirWatch.record(relayUid, label(v.id)));
    }
    const msg = (id: string, i: number) => makeMessage(1024, tagOf(runId, "batch", id, i), rcpt);
    for (let r = 0; r < o.batchRounds; r++) {
      await progress(`batch: round ${r + 1}/${o.batchRounds}, serial sendmail floor`);
      const samples: Sample[] = [];
      const c0 = await cpuTicks();
      const f0 = performance.now();
      for (let i = 0; i < n; i++) {
        samples.push(
          await timeOnce({
            cmd: SENDMAIL,
            args: ["-oi", "-f", SENDER, "--", rcpt],
            env: baseEnv(),
            stdin: msg("floor", r * n + i),
          }),
        );
      }
      floor.push({ wall: performance.now() - f0, samples, busy: busyShare(c0, await cpuTicks()) });
      for (const [p, runs] of ceiling) {
        await progress(`batch: round ${r + 1}/${o.batchRounds}, sendmail ${p} at once`);
        const samples: Sample[] = [];
        let next = 0;
        const c0 = await cpuTicks();
        const f0 = performance.now();
        await Promise.all(Array.from({ length: p }, async () => {
          for (let i = next++; i < n; i = next++) {
            samples.push(
              await timeOnce({
                cmd: SENDMAIL,
                args: ["-oi", "-f", SENDER, "--", rcpt],
                env: baseEnv(),
                stdin: msg(`ceiling${p}`, r * n + i),
              }),
            );
          }
        }));
        runs.push({ wall: performance.now() - f0, samples, busy: busyShare(c0, await cpuTicks()) });
      }
      for (const v of variants) {
        await progress(`batch: round ${r + 1}/${o.batchRounds}, ${v.id}`);
        const watch = watches.get(v.id)!;
        await bed.writeConfig([`identity = ${keys.get(v.id)}`]);
        let failed = 0;
        for (let i = 0; i < n; i++) {
          await writeDrop(bed, sender, ["-oi", "--", rcpt], msg(v.id, r * n + i))
            .catch(() => failed++);
        }
        const before = watch.count();
        const c0 = await cpuTicks();
        const t0 = performance.now();
        await bed.start();
        const first = await watch.nth(before + 1, 60_000);
        const last = await watch.nth(before + n - failed, 600_000);
        const busy = busyShare(c0, await cpuTicks());
        const chain = await chainCpu(bed.pid()!, label(v.id));
        await bed.stopService();
        runs.get(v.id)!.push({
          wall: last - t0,
          rate: (n - failed - 1) / ((last - first) / 1000),
          accepted: n - failed,
          busy,
          cpuMs: cpuPerMessage(busy, last - t0, n - failed),
          chain,
        });
        unwritten.set(v.id, unwritten.get(v.id)! + failed);
      }
    }
    await done(`batch: ${o.batchRounds} rounds`);
  } finally {
    await bed.stop();
    for (const w of watches.values()) await w.close(true);
  }
  const failedOf = (fs: { samples: Sample[] }[]) =>
    fs.flatMap((f) => f.samples).filter((s) => s.code !== 0).length;
  const failedFloor = failedOf(floor);
  if (failedFloor > 0) findings.push(`batch floor: ${failedFloor} sendmail runs failed`);
  const groups: MailGroup[] = [
    ...variants.map((v) => ({
      id: `batch.${v.id}`,
      label: `batch.${v.id}: ${o.batchRounds} × ${n} drops`,
      sent: o.batchRounds * n,
      failed: unwritten.get(v.id)!,
    })),
    {
      id: "batch.floor",
      label: `batch.floor: ${o.batchRounds} × ${n} serial \`sendmail -oi\``,
      sent: o.batchRounds * n,
      failed: failedFloor,
    },
    ...[...ceiling].map(([p, fs]) => ({
      id: `batch.ceiling${p}`,
      label: `batch.ceiling${p}: ${o.batchRounds} × ${n} \`sendmail -oi\`, ${p} at once`,
      sent: o.batchRounds * n,
      failed: failedOf(fs),
    })),
  ];

  const median = (xs: number[]) => quantile(xs.slice().sort((a, b) => a - b), 0.5);
  const floorRate = median(floor.map((f) => n / (f.wall / 1000)));
  const floorWall = median(floor.map((f) => f.wall));
  const pctOf = (x: number) => `${Math.round(x * 100)}%`;
  const rowOf = (id: string, what: string) => {
    const rs = runs.get(id);
    if (rs === undefined) return [what, "", NA, "–", "–", "–", "–"];
    const rate = median(rs.map((x) => x.rate));
    return [
      what,
      String(rs[0]?.accepted ?? 0),
      (median(rs.map((x) => x.wall)) / 1000).toFixed(2),
      rate.toFixed(1),
      `${(rate / floorRate).toFixed(2)}×`,
      pctOf(median(rs.map((x) => x.busy))),
      median(rs.map((x) => x.cpuMs)).toFixed(1),
    ];
  };
  const cpuOf = (fs: { wall: number; busy: number }[]) =>
    median(fs.map((f) => cpuPerMessage(f.busy, f.wall, n)));
  const rateOfVariant = (id: string) => median((runs.get(id) ?? []).map((x) => x.rate));
  const best = Math.max(...PARALLEL.filter((p) => p > 1).map((p) => rateOfVariant(`p${p}`)));
  const rateOf = (fs: { wall: number }[]) => median(fs.map((f) => n / (f.wall / 1000)));
  const ceilingRate = Math.max(...[...ceiling.values()].map(rateOf));
  const bestId = parallel
    ? PARALLEL.filter((p) => p > 1).map((p) => `p${p}`)
      .reduce((a, b) => (rateOfVariant(b) > rateOfVariant(a) ? b : a))
    : "default";
  const cpuMsOf = (id: string) => median((runs.get(id) ?? []).map((x) => x.cpuMs));
  /** Each process's median CPU per message over the rounds where all four were read. */
  const chainOf = (id: string): ChainCpu | undefined => {
    const rs = (runs.get(id) ?? []).filter((r) => r.chain !== undefined);
    if (rs.length === 0) return undefined;
    const per = (k: keyof ChainCpu) => median(rs.map((r) => r.chain![k] / r.accepted));
    return { service: per("service"), ssh: per("ssh"), sshd: per("sshd"), relay: per("relay") };
  };
  const goals: Goal[] = [{
    what: "batch: best of `--parallel 2` / `4` ÷ the serial sendmail floor",
    goal: `≥ ${GOAL_RATE.toFixed(1)}×`,
    measured: parallel ? `${(best / floorRate).toFixed(2)}×` : NA,
    met: parallel ? best / floorRate >= GOAL_RATE : undefined,
  }];
  if (!parallel) findings.push(`batch: ${NA}; only the default row was measured`);
  else if (!goals[0]!.met) {
    findings.push(`batch: ${goals[0]!.measured} the serial floor (goal ≥ ${GOAL_RATE}×)`);
  }
  const text = [
    `## 3. Batch: ${n} queued ~1 KB messages through one relay batch session (the satellite service)`,
    "",
    table([
      "relay's forced command",
      "messages",
      "wall (s)",
      "msg/s",
      "÷ floor",
      "CPUs busy",
      "CPU ms per message",
    ], [
      rowOf("default", "`rsendmail --label L` (default)"),
      ...PARALLEL.map((p) => rowOf(`p${p}`, `\`rsendmail --parallel ${p} --label L\``)),
      [
        `**floor**: the relay's \`/usr/sbin/sendmail -oi\`, ${n} times one after another`,
        String(n),
        (floorWall / 1000).toFixed(2),
        floorRate.toFixed(1),
        "1.00×",
        pctOf(median(floor.map((f) => f.busy))),
        cpuOf(floor).toFixed(1),
      ],
      ...[...ceiling].map(([p, fs]) => [
        `ceiling: the same sendmail, ${p} at once, nothing else running`,
        String(n),
        (median(fs.map((f) => f.wall)) / 1000).toFixed(2),
        rateOf(fs).toFixed(1),
        `${(rateOf(fs) / floorRate).toFixed(2)}×`,
        pctOf(median(fs.map((f) => f.busy))),
        cpuOf(fs).toFixed(1),
      ]),
    ]),
    "",
    `Driven as the satellite service drives the relay: the bench writes ${n} drops (as ` +
    `${BENCH_USER}, exactly as the submitter writes them) while the service is stopped, then ` +
    "starts it; it takes them into its queue and streams them over one `rsendmail --batch` " +
    `session (ssh as the service account to \`${RELAY_USER}\`). The wall runs from the ` +
    "service's start to the relay's last record; msg/s counts from the relay's first record " +
    "to its last (the service's start-up and the ssh handshake left out); medians of " +
    `${o.batchRounds} round${o.batchRounds === 1 ? "" : "s"}, each running the floor and every ` +
    "variant once. The floor runs as root straight from the bench (no setpriv), one after " +
    "another: what a relay that runs its sendmail once per message, one at a time, can reach. " +
    "CPUs busy: the share of both " +
    "CPUs in use over each run (/proc/stat), Postfix's own delivery included: at 90% and more, " +
    "the machine, not the relay's concurrency, sets the rate. The ceiling rows run the floor's " +
    "sendmail 2 or 4 at a time with nothing else on the machine: Postfix's own intake and " +
    "delivery at full concurrency, the most a relay of any design reaches here before its own " +
    "work, ssh and the satellite's are counted. CPU ms per message: the whole machine's CPU " +
    "time over the run (busy share × CPUs × wall) divided by the messages; for the relay rows " +
    "it holds everything the chain does (the service's intake and delivery, ssh, sshd, the " +
    "relay, sendmail and Postfix).",
    "",
    ...cpuTables({
      floorRate,
      goalRate: GOAL_RATE,
      postfix: Math.min(...[...ceiling.values()].map(cpuOf)),
      best: { id: bestId, cpuMs: cpuMsOf(bestId) },
      byProcess: variants.map((v) => ({
        what: v.id === "default" ? "`rsendmail` (default)" : `\`--parallel ${v.id.slice(1)}\``,
        cpu: chainOf(v.id),
        wholeMs: cpuMsOf(v.id),
      })),
    }),
    "",
    `The machine's ceiling (the better of sendmail 2 or 4 at once) is ` +
    `${(ceilingRate / floorRate).toFixed(2)}× the serial floor; the best relay row reaches ` +
    `${parallel ? `${(best / ceilingRate).toFixed(2)}×` : NA} of that ceiling.`,
    "",
    goalTable(goals),
  ].join("\n");
  return { key: "batch", text, groups, goals, findings };
}
