/**
 * Section 6 of `deno task bench`, memory: the satellite service's and the
 * relay's RSS across `rssN` (5 000) messages in one session, on a fresh
 * service bed (tests/e2e/_service.ts). The bench writes the drops itself
 * exactly as the submitter does (owned by 5 users in turn, 0644, renamed
 * into place), keeping at most `WINDOW` not yet accepted, so that the phase
 * is about the service and the relay, not about starting submitters. The
 * service streams them over its one `rsendmail --batch` session; the relay
 * delivers through the real Postfix. VmRSS/VmHWM of both processes
 * (/proc/<pid>/status; the relay's found by its unique `--label`) are read
 * when 500, 1 000, 2 000 … were accepted (the relay's duplicate record).
 *
 * @module
 */

import { ensureUser } from "../tests/e2e/_bed.ts";
import { type Account, account, startServiceBed } from "../tests/e2e/_service.ts";
import {
  DIST_RSENDMAIL,
  done,
  makeMessage,
  type Options,
  progress,
  type SectionResult,
  sleep,
  tagOf,
} from "./bench_common.ts";
import { type Goal, goalTable, table } from "./bench_report.ts";
import { DirWatch, memoryOf, relayPidOf, USERS, writeDrop } from "./bench_spool.ts";

/** Issue 15: flat (≤ 10% growth after the first 500); issue 11: the service's peak. */
const GOALS = { growth: 0.1, servicePeakMiB: 64 };
const MARKS = [500, 1000, 2000, 3000, 4000, 5000];
/** Drops written but not yet accepted by the relay, at most. */
const WINDOW = 64;

type Mem = Awaited<ReturnType<typeof memoryOf>>;
interface Row {
  at: number;
  ms: number;
  service: Mem;
  relay: Mem | undefined;
  relayPid: number | undefined;
}

const mibOf = (
  kib: number | undefined,
) => (kib === undefined || !Number.isFinite(kib) ? "–" : (kib / 1024).toFixed(1));
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "–");

export async function benchMemory(
  o: Options,
  runId: string,
  rcpt: string,
): Promise<SectionResult> {
  const label = `bench-${runId}-rss`;
  const users: Account[] = [];
  for (const name of USERS) {
    ensureUser(name, "/usr/sbin/nologin");
    users.push(await account(name));
  }
  const bed = await startServiceBed({
    keyOptions: `restrict,command="${DIST_RSENDMAIL} --label ${label}"`,
  });
  const watch = await DirWatch.record(bed.relay, label);
  const rows: Row[] = [];
  let written = 0;
  let failed = 0;
  try {
    const pid = bed.pid()!;
    await sleep(500);
    rows.push({
      at: 0,
      ms: 0,
      service: await memoryOf(pid),
      relay: undefined,
      relayPid: undefined,
    });
    const marks = MARKS.filter((m) => m <= o.rssN);
    if (!marks.includes(o.rssN)) marks.push(o.rssN);
    const t0 = performance.now();
    const writer = (async () => {
      while (written < o.rssN) {
        if (written - watch.count() >= WINDOW) {
          await watch.nth(written - WINDOW + 1, 120_000);
          continue;
        }
        const u = users[written % users.length]!;
        await writeDrop(
          bed,
          u,
          ["-oi", "--", rcpt],
          makeMessage(1024, tagOf(runId, "memory", "rss", written), rcpt),
        )
          .catch(() => failed++);
        written++;
      }
    })();
    for (const mark of marks) {
      const t = await watch.nth(mark - failed, 600_000);
      const relayPid = await relayPidOf(label);
      rows.push({
        at: mark,
        ms: t - t0,
        service: await memoryOf(pid),
        relay: relayPid === undefined ? undefined : await memoryOf(relayPid),
        relayPid,
      });
      await progress(`memory: ${mark}/${o.rssN} accepted`);
    }
    await writer;
    await done("memory: done");
  } finally {
    await bed.stop();
    await watch.close(true);
  }

  const base = rows.find((r) => r.at === MARKS[0]) ?? rows[1]!;
  const last = rows[rows.length - 1]!;
  const pids = new Set(rows.map((r) => r.relayPid).filter((p) => p !== undefined));
  // The largest VmRSS sampled after the base, not the last one: a full
  // collection just before the end must not hide the growth before it.
  const most = (f: (r: Row) => Mem | undefined) =>
    Math.max(...rows.filter((r) => r.at >= base.at).map((r) => f(r)?.rss ?? NaN));
  const growth = (f: (r: Row) => Mem | undefined) => {
    const a = f(base)?.rss;
    const b = most(f);
    return a === undefined || !Number.isFinite(b) ? NaN : (b - a) / a;
  };
  const peak = (f: (r: Row) => Mem | undefined) => Math.max(...rows.map((r) => f(r)?.hwm ?? 0));
  const svc = (r: Row) => r.service;
  const rel = (r: Row) => r.relay;
  const oneSession = pids.size === 1;
  const goals: Goal[] = [
    {
      what: `memory: the service's VmRSS growth after ${base.at} messages (largest sample)`,
      goal: `≤ ${GOALS.growth * 100}%`,
      measured: `${pct(growth(svc))} (${mibOf(base.service.rss)} → ${mibOf(most(svc))} MiB)`,
      met: growth(svc) <= GOALS.growth,
    },
    {
      what:
        `memory: the relay's VmRSS growth after ${base.at} messages (one batch session, largest sample)`,
      goal: `≤ ${GOALS.growth * 100}%`,
      measured: `${pct(growth(rel))} (${mibOf(base.relay?.rss)} → ${mibOf(most(rel))} MiB)`,
      met: oneSession && Number.isFinite(growth(rel)) ? growth(rel) <= GOALS.growth : undefined,
    },
    {
      what: "memory: the service's peak (VmHWM, issue 11)",
      goal: `≤ ${GOALS.servicePeakMiB} MiB`,
      measured: `${mibOf(peak(svc))} MiB`,
      met: peak(svc) / 1024 <= GOALS.servicePeakMiB,
    },
  ];
  const wall = last.ms;
  const text = [
    `## 6. Memory: the service and the relay across ${o.rssN} messages in one session`,
    "",
    table(
      [
        "sampled",
        "wall (s)",
        "service VmRSS (MiB)",
        "service VmHWM",
        `vs after ${base.at}`,
        "service RssAnon",
        "service fds",
        "relay VmRSS (MiB)",
        "relay VmHWM",
        `vs after ${base.at}`,
        "relay RssAnon",
      ],
      rows.map((r) => [
        r.at === 0 ? "started, idle" : `after ${r.at}`,
        r.at === 0 ? "" : (r.ms / 1000).toFixed(2),
        mibOf(r.service.rss),
        mibOf(r.service.hwm),
        r.at >= base.at ? pct(r.service.rss / base.service.rss - 1) : "",
        mibOf(r.service.anon),
        String(r.service.fds),
        mibOf(r.relay?.rss),
        mibOf(r.relay?.hwm),
        r.at >= base.at && r.relay && base.relay ? pct(r.relay.rss / base.relay.rss - 1) : "",
        mibOf(r.relay?.anon),
      ]),
    ),
    "",
    table(["peak (VmHWM)", "MiB"], [
      ["service (`sshsendmail --serve`, the unit's environment)", mibOf(peak(svc))],
      ["relay (`rsendmail --batch`, the Deno process)", mibOf(peak(rel))],
    ]),
    "",
    `The service started fresh for this run; the bench wrote the ${o.rssN} drops itself, as ` +
    `the submitter writes them, owned by the ${users.length} users in turn, at most ${WINDOW} ` +
    `not yet accepted. The relay delivered them through the real Postfix: ` +
    `${(wall / 1000).toFixed(2)} s for ${o.rssN} (${(o.rssN / (wall / 1000)).toFixed(1)} msg/s). ` +
    `The relay's process was found by its key's unique \`--label\` (${
      oneSession
        ? "one process, one batch session, throughout"
        : `${pids.size} processes: the session was re-opened`
    }). VmRSS minus RssAnon is file-backed, mostly the pages of the deno binary itself. ` +
    "The service's unit exposes V8's gc (`--expose-gc`), and the service collects in full " +
    "every 200 replies; the relay runs with its shebang's `--optimize-for-size` only.",
    "",
    goalTable(goals),
  ].join("\n");
  const findings: string[] = [];
  if (failed > 0) findings.push(`memory: ${failed} drops could not be written`);
  if (!oneSession) {
    findings.push(`memory: the relay's batch session was re-opened (${pids.size} processes seen)`);
  }
  for (const g of goals) {
    if (g.met === false) findings.push(`${g.what}: ${g.measured} (goal ${g.goal})`);
  }
  return {
    key: "memory",
    text,
    groups: [{
      id: "memory.rss",
      label: `memory.rss: ${o.rssN} drops, one session`,
      sent: o.rssN,
      failed,
    }],
    goals,
    findings,
  };
}
