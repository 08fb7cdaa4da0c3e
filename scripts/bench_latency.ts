/**
 * Section 5's S2 (bench_service.ts sets up its bed): submit → relay
 * accepted, the service warm (its batch session open from the message
 * before), messages one after another. "Accepted" is the relay's duplicate
 * record of the id (bench_spool.ts's DirWatch); the stages in between are
 * seen the same way (drop/, incoming/, queue/new/). Interleaved with
 * them: after every message the relay's own `/usr/sbin/sendmail -oi` of a
 * message (the floor of the relay's part), and every `coldEvery` messages
 * one cold send of upstream 1.1.4 and one of ours with `queue = no`.
 *
 * @module
 */

import {
  BENCH_USER,
  done,
  type Options,
  progress,
  SENDER,
  UP_SSHSENDMAIL,
} from "./bench_common.ts";
import { directSendmail, type Sample, type Spec, timeOnce } from "./bench_run.ts";
import { exitFindings, fmt, table } from "./bench_report.ts";
import type { MailGroup } from "./bench_delivery.ts";
import { DirWatch, type Dist, dist, ID_RE, sendGroup, type ServiceCtx } from "./bench_spool.ts";
import type { Account } from "../tests/e2e/_service.ts";

/** What S2 needs beyond the service's bed: the direct (`queue = no`) client's config and watch. */
export interface LatencyCtx extends ServiceCtx {
  /** The relay's record of the direct client's key label. */
  watchDirect: DirWatch;
  /** A config with `queue = no` and the bench account's own key. */
  directConf: string;
  /** `cmd args` as `u` through setpriv. */
  as(
    u: Account,
    cmd: string,
    args: string[],
    stdin?: Uint8Array,
    env?: Record<string, string>,
  ): Spec;
}

/** S2's figures (ms), its tables, its send groups and what went wrong. */
export interface LatencyResult {
  figures: { lat: Dist; sub: Dist; aft: Dist; up: Dist; fl: Dist };
  text: string;
  groups: MailGroup[];
  findings: string[];
}

/** Runs S2. */
export async function benchLatency(ctx: LatencyCtx, o: Options): Promise<LatencyResult> {
  const { bed, bench, watch, watchDirect, directConf, rcpt, msg, sendAs, as } = ctx;
  const groups: MailGroup[] = [];
  // ---- S2. Submit → relay accepted, the service warm ------------------------------------
  const openerBefore = watch.count();
  const opener = await timeOnce(sendAs(bench, "lat-open", 0));
  groups.push(sendGroup("lat-open", "lat-open: untimed, opens the batch session", [opener]));
  if (opener.code === 0) await watch.nth(openerBefore + 1, 30_000);
  // The stages, seen from outside: the submitter creates `t<hex>` in drop/,
  // renames it to `d<hex>` (published), the service renames that into
  // incoming/ (claimed), writes `queue/new/<id>` (queued), and the relay
  // records the id (accepted). The relay's delivery lock is one of a few
  // files made once (lib/relay/dedup_io.ts): nothing to see per message.
  const hexRe = (c: string) => new RegExp(`^${c}[0-9a-f]{32}$`);
  const stageWatches = [
    new DirWatch(`${bed.spool}/drop`, hexRe("t")),
    new DirWatch(`${bed.spool}/drop`, hexRe("d")),
    new DirWatch(`${bed.spool}/incoming`, hexRe("d")),
    new DirWatch(`${bed.spool}/queue/new`, ID_RE),
  ];
  const keys = ["created", "published", "claimed", "queued", "recorded"] as const;
  const stages = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<
    typeof keys[number],
    number[]
  >;
  const latency: number[] = [];
  const submitted: number[] = [];
  const afterExit: number[] = [];
  const latSamples: Sample[] = [];
  const floorSamples: Sample[] = [];
  const upSamples: Sample[] = [];
  const directSamples: Sample[] = [];
  const directAccepted: number[] = [];
  for (let i = 0; i < o.latencyN; i++) {
    if (i % 10 === 0) await progress(`service: warm latency ${i}/${o.latencyN}`);
    const before = watch.count();
    const marks = stageWatches.map((w) => w.count());
    const t0 = performance.now();
    const s = await timeOnce(sendAs(bench, "lat", i));
    latSamples.push(s);
    if (s.code === 0) {
      const accepted = await watch.nth(before + 1, 30_000);
      const seen = await Promise.all(stageWatches.map((w, k) => w.nth(marks[k]! + 1, 1000)))
        .catch(() => undefined);
      if (seen) {
        const at = [t0, ...seen, accepted];
        keys.forEach((k, j) => stages[k].push(at[j + 1]! - at[j]!));
      }
      latency.push(accepted - t0);
      submitted.push(s.ms);
      afterExit.push(accepted - (t0 + s.ms));
    }
    // The relay's own sendmail, interleaved message by message.
    floorSamples.push(
      await timeOnce(directSendmail(rcpt, msg("relay-sendmail", i))),
    );
    if (i % o.coldEvery !== 0) continue;
    const up = as(bench, UP_SSHSENDMAIL, ["--host", "rsm-up-svc", "-f", SENDER, rcpt]);
    upSamples.push(await timeOnce({ ...up, stdin: msg("upstream-cold", upSamples.length) }));
    const dBefore = watchDirect.count();
    const d0 = performance.now();
    const d = await timeOnce(
      as(bench, bed.sendmail, ["-f", SENDER, rcpt], msg("direct-cold", directSamples.length), {
        SSHSENDMAIL_CONFIG: directConf,
      }),
    );
    directSamples.push(d);
    if (d.code === 0) directAccepted.push((await watchDirect.nth(dBefore + 1, 10_000)) - d0);
  }
  for (const w of stageWatches) await w.close(false);
  groups.push(
    sendGroup("lat", "lat: warm latency run", latSamples),
    sendGroup("relay-sendmail", "relay-sendmail: the floor of S2, interleaved", floorSamples),
    sendGroup("upstream-cold", "upstream-cold: upstream 1.1.4, one cold send each", upSamples),
    sendGroup(
      "direct-cold",
      "direct-cold: ours, `queue = no`, one cold send each",
      directSamples,
    ),
  );
  await done("service: warm latency");

  const ok = (xs: Sample[]) => dist(xs.filter((s) => s.code === 0).map((s) => s.ms));
  const lat = dist(latency);
  const sub = dist(submitted);
  const aft = dist(afterExit);
  const up = ok(upSamples);
  const fl = ok(floorSamples);
  const row2 = (label: string, x: Dist) => [label, String(x.n), fmt(x.median), fmt(x.p95)];
  const text = [
    "### S2. Submit → relay accepted, one ~1 KB message at a time (ms)",
    "",
    table(["path", "messages", "median", "p95"], [
      row2("ours, service warm: spawn of `sendmail` → the relay's record of the id", lat),
      row2("  of which the submitter, spawn → exit (the sender's wall time)", sub),
      row2("  of which the service + relay, submitter's exit → record (submit → accepted)", aft),
      row2("floor: the relay's own `/usr/sbin/sendmail -oi`, after each warm message", fl),
      row2(
        "ours, `queue = no`: one cold send (own key, ssh per message), spawn → exit",
        ok(directSamples),
      ),
      row2("  same, spawn → the relay's record of the id", dist(directAccepted)),
      row2(
        "upstream 1.1.4: one cold send (its sshsendmail → ssh → its rsendmail), spawn → exit",
        up,
      ),
    ]),
    "",
    table(
      ["stages of a warm message (seen by inotify from outside)", "messages", "median", "p95"],
      [
        ["spawn → `t<hex>` created in drop/ (Deno start-up, bundle, config)", stages.created],
        ["→ renamed to `d<hex>` (message written, fdatasync, rename)", stages.published],
        ["→ claimed: renamed into incoming/ by the service (its pick-up)", stages.claimed],
        [
          "→ queued: `queue/new/<id>` (checks, copy, local policy, write + fsync + rename)",
          stages.queued,
        ],
        [
          "→ the relay's record (the frame over ssh, the id's lock, duplicate check, spool, " +
          "`/usr/sbin/sendmail`, record)",
          stages.recorded,
        ],
      ].map(([label, xs]) => row2(label as string, dist(xs as number[]))),
    ),
    "",
    `As ${BENCH_USER} through setpriv. The warm messages go one after another (the next is ` +
    "spawned when the relay recorded the one before), over the service's one batch session, " +
    "opened by an untimed message first. The relay's rsendmail writes " +
    "`<state-dir>/rsendmail-<uid>/<label>/<id>` right after its `/usr/sbin/sendmail` exited " +
    "(lib/relay/dedup_io.ts); the bench watches that directory (inotify through Deno.watchFs) " +
    "and takes the time it sees the id. After each warm message the bench runs the relay's " +
    "sendmail itself (as root, straight from the bench) on a message of the same size: the " +
    `floor of the relay's part. A cold send of each kind every ${o.coldEvery} warm messages, ` +
    "interleaved, so that drift in the load hits all alike; a cold client exits once the " +
    "relay answered, so its wall time is its submit → accepted.",
  ].join("\n");
  const findings = exitFindings("service", [
    ["S2 sends", latSamples],
    ["upstream cold sends", upSamples],
    ["queue = no cold sends", directSamples],
    ["S2 sendmail floor", floorSamples],
  ]);
  return { figures: { lat, sub, aft, up, fl }, text, groups, findings };
}
