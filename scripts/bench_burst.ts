/**
 * S3 of the satellite service section (bench_service.ts): a burst of 5
 * users × `perUser` messages, each user's sends one after another, the users
 * at once; first spawn → the relay's last record. The same number of drops
 * written at once by the bench shows the service and the relay alone.
 * Floors: the relay's `/usr/sbin/sendmail -oi` run that many times
 * serially (what a relay running one sendmail at a time does per message),
 * and as many empty scripts under sshsendmail's shebang as the same 5 users
 * at once (the submitters' start-up alone).
 *
 * @module
 */

import { done, type Options, progress } from "./bench_common.ts";
import { asUser, directSendmail, type Sample, timeOnce } from "./bench_run.ts";
import { exitFindings, fmt, type Goal, table } from "./bench_report.ts";
import type { MailGroup } from "./bench_delivery.ts";
import { dist, RecordTimes, sendGroup, type ServiceCtx, writeDrop } from "./bench_spool.ts";

/** Issue 11's goal for the burst. */
const GOAL_RATE = 100;

const secs = (ms: number) => (ms / 1000).toFixed(2);
const rate = (n: number, ms: number) => (n / (ms / 1000)).toFixed(1);

export async function benchBurst(
  ctx: ServiceCtx,
  o: Options,
): Promise<{ text: string; groups: MailGroup[]; goals: Goal[]; findings: string[] }> {
  const { bed, users, rcpt, msg } = ctx;
  // Nothing watches the record while the burst runs (RecordTimes): S2's
  // inotify watch stops here, its events cost the chain CPU.
  await ctx.watch.close(false);
  const record = new RecordTimes(ctx.watch.dir);
  /** When the n-th record (1-based) was written, once there are n. */
  const nth = async (n: number) => {
    await record.until(n, 300_000);
    return (await record.times([n]))[0]!;
  };
  const burstN = users.length * o.perUser;
  const burstBefore = await record.count();
  const b0 = performance.now();
  const burstFlat: Sample[] = (await Promise.all(users.map(async (u, k) => {
    const out: Sample[] = [];
    for (let j = 0; j < o.perUser; j++) {
      if (k === 0 && j % 10 === 0) await progress(`service: burst ${j}/${o.perUser} per user`);
      out.push(await timeOnce(ctx.sendAs(u, "burst", k * o.perUser + j)));
    }
    return out;
  }))).flat();
  const bSubmitted = performance.now();
  const burstOk = burstFlat.filter((s) => s.code === 0).length;
  const bLast = await nth(burstBefore + burstOk);
  const burstWall = bLast - b0;

  await progress("service: serial sendmail floor");
  const floorSamples: Sample[] = [];
  const f0 = performance.now();
  for (let i = 0; i < burstN; i++) {
    floorSamples.push(
      await timeOnce(directSendmail(rcpt, msg("floor-sendmail", i))),
    );
  }
  const floorWall = performance.now() - f0;

  await progress("service: empty-script floor");
  const e0 = performance.now();
  const emptySamples = (await Promise.all(users.map(async (u) => {
    const out: Sample[] = [];
    for (let j = 0; j < o.perUser; j++) {
      out.push(await timeOnce(asUser(u.name, u.home, ctx.emptyClient, [])));
    }
    return out;
  }))).flat();
  const emptyWall = performance.now() - e0;

  // The service and the relay alone: the same number of drops appear at once.
  await progress("service: drops written at once");
  const preBefore = await record.count();
  const p0 = performance.now();
  let preFailures = 0;
  for (let i = 0; i < burstN; i++) {
    await writeDrop(bed, users[i % users.length]!, ["-oi", "--", rcpt], msg("predrop", i))
      .catch(() => preFailures++);
  }
  const pWritten = performance.now();
  const preWall = (await nth(preBefore + burstN - preFailures)) - p0;
  await done("service: burst");

  const groups: MailGroup[] = [
    sendGroup("burst", `burst: ${users.length} users × ${o.perUser} at once`, burstFlat),
    sendGroup("floor-sendmail", `floor-sendmail: ${burstN} serial \`sendmail -oi\``, floorSamples),
    {
      id: "service.predrop",
      label: `service.predrop: ${burstN} drops written at once by the bench`,
      sent: burstN,
      failed: preFailures,
    },
  ];
  const burstRate = burstOk / (burstWall / 1000);
  const goals: Goal[] = [{
    what: `service burst: ${burstN} messages from ${users.length} users at once (issue 11)`,
    goal: `≥ ${GOAL_RATE} msg/s`,
    measured: `${burstRate.toFixed(1)} msg/s`,
    met: burstRate >= GOAL_RATE,
  }];
  const burstSub = dist(burstFlat.filter((s) => s.code === 0).map((s) => s.ms));
  const subMs = bSubmitted - b0;
  const text = [
    `### S3. Burst: ${burstN} messages, ${users.length} users × ${o.perUser} at once`,
    "",
    table(["run", "messages", "wall (s)", "msg/s"], [
      [
        "ours: first spawn → the relay's last record",
        String(burstOk),
        secs(burstWall),
        burstRate.toFixed(1),
      ],
      [
        "  of which submitting (first spawn → last submitter's exit)",
        String(burstFlat.length),
        secs(subMs),
        rate(burstFlat.length, subMs),
      ],
      ["  then the relay's tail (last exit → last record)", "", secs(bLast - bSubmitted), ""],
      [
        `the service + relay alone: ${burstN} drops written at once (by the bench, as the ${users.length} users) → last record`,
        String(burstN - preFailures),
        secs(preWall),
        rate(burstN - preFailures, preWall),
      ],
      ["  of which writing the drops", "", secs(pWritten - p0), ""],
      [
        `floor: the relay's \`/usr/sbin/sendmail -oi\`, ${burstN} times serially`,
        String(burstN),
        secs(floorWall),
        rate(burstN, floorWall),
      ],
      [
        `floor: ${burstN} empty scripts (sshsendmail's shebang), same ${users.length} users at once`,
        String(emptySamples.length),
        secs(emptyWall),
        rate(emptySamples.length, emptyWall),
      ],
    ]),
    "",
    `Each user's sends run one after another, the ${users.length} users at once ` +
    `(${users.map((u) => u.name).join(", ")}); a submitter took ${fmt(burstSub.median)} ms ` +
    `median, ${fmt(burstSub.p95)} ms p95 under this load. The serial-sendmail floor is what ` +
    "a relay running one sendmail at a time can reach (section 3 measures the relay's " +
    `\`--parallel\`); the empty-script floor is what starting ${burstN} Deno submitters costs ` +
    `on ${navigator.hardwareConcurrency} CPUs before any mail work.`,
  ].join("\n");
  const findings = exitFindings("service", [
    ["burst sends", burstFlat],
    ["serial sendmail floor", floorSamples],
    ["empty-script floor", emptySamples],
  ]);
  return { text, groups, goals, findings };
}
