/**
 * Section 5 of `deno task bench`, the satellite service, on the bed of
 * tests/e2e/_service.ts: the real Postfix, a private sshd whose satellite
 * key forces dist/rsendmail, and `sshsendmail --serve` started as its unit
 * starts it (its account, start-stop-daemon).
 *
 * S1. The submitter: `sendmail rcpt < ~1 KB` from spawn to exit (the
 *     service running), as a non-root user through setpriv and as root, vs
 *     an empty script with the same Deno and flags, round-robin.
 * S2. Submit → relay accepted, the service warm (its batch session open
 *     from the message before), messages one after another. "Accepted" is
 *     the relay's duplicate record of the id (bench_spool.ts's DirWatch);
 *     the stages in between are seen the same way (drop/, incoming/,
 *     queue/new/, the relay's `<id>.lock`). Interleaved with them: after
 *     every message the relay's own `/usr/sbin/sendmail -oi` of a message
 *     (the floor of the relay's part), and every `coldEvery` messages one
 *     cold send of upstream 1.1.4 and one of ours with `queue = no`.
 * S3. A burst of 5 users at once (bench_burst.ts).
 *
 * Issue 15's goals: the sender's wall time ≤ 0.2× upstream's cold send;
 * submit (the submitter's exit) → relay accepted ≤ 1.5× the relay's own
 * sendmail time.
 *
 * @module
 */

import { ensureUser, run } from "../tests/e2e/_bed.ts";
import { type Account, account, startServiceBed } from "../tests/e2e/_service.ts";
import {
  asUser,
  baseEnv,
  BENCH_USER,
  caseGroups,
  caseList,
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  done,
  makeMessage,
  measure,
  type Options,
  progress,
  type Sample,
  type SectionResult,
  SENDER,
  SENDMAIL,
  shebangOf,
  type Spec,
  tagOf,
  timeOnce,
  UP_RSENDMAIL,
  UP_SSHSENDMAIL,
  writeScript,
} from "./bench_common.ts";
import { caseFindings, fmt, type Goal, goalTable, table } from "./bench_report.ts";
import type { MailGroup } from "./bench_delivery.ts";
import {
  DirWatch,
  type Dist,
  dist,
  ID_RE,
  sendGroup,
  type ServiceCtx,
  USERS,
} from "./bench_spool.ts";
import { benchBurst } from "./bench_burst.ts";

const GOALS = { latencyMedianMs: 60, senderVsUpstream: 0.2, acceptedVsSendmail: 1.5 };
export async function benchService(
  o: Options,
  runId: string,
  rcpt: string,
): Promise<SectionResult> {
  const label = `bench-${runId}-svc`;
  const directLabel = `bench-${runId}-svc-direct`;
  ensureUser(BENCH_USER, "/usr/sbin/nologin");
  const bench = await account(BENCH_USER);
  const users: Account[] = [];
  for (const name of USERS) {
    ensureUser(name, "/usr/sbin/nologin");
    users.push(await account(name));
  }
  const root: Account = { name: "root", uid: 0, gid: 0, home: "/root" };
  const bed = await startServiceBed({
    keyOptions: `restrict,command="${DIST_RSENDMAIL} --label ${label}"`,
  });
  const relayUid = (await account(bed.relay.user)).uid;
  const watch = await DirWatch.record(relayUid, label);
  const watchDirect = await DirWatch.record(relayUid, directLabel);
  const tmp = await Deno.makeTempDir({ prefix: "rsm-bench-svc-" });
  await Deno.chmod(tmp, 0o755);
  const groups: MailGroup[] = [];
  const msg = (id: string, i: number) => makeMessage(1024, tagOf(runId, "service", id, i), rcpt);
  const svcEnv = { SSHSENDMAIL_CONFIG: bed.conf };
  const as = (
    u: Account,
    cmd: string,
    args: string[],
    stdin?: Uint8Array,
    env?: Record<string, string>,
  ) => asUser(u.name, u.home, cmd, args, stdin, env);
  try {
    // The floors' scripts, readable by every account.
    const clientShebang = await shebangOf(DIST_SSHSENDMAIL);
    const deno = /^#!\/usr\/bin\/env -S (\S+)/.exec(clientShebang)?.[1] ?? Deno.execPath();
    const emptyClient = `${tmp}/empty-client`;
    const emptyJs = `${tmp}/empty.js`;
    await writeScript(emptyClient, `${clientShebang}\n`);
    await writeScript(emptyJs, "");

    // ours with queue = no: the caller's own key (bench account's), forced to rsendmail.
    const directKey = await bed.relay.addKey(
      `restrict,command="${DIST_RSENDMAIL} --label ${directLabel}"`,
      BENCH_USER,
    );
    const directConf = `${tmp}/direct.conf`;
    await Deno.writeTextFile(
      directConf,
      [
        "# written by scripts/bench_service.ts",
        `host = ${bed.relay.host}`,
        `user = ${bed.relay.user}`,
        `port = ${bed.relay.port}`,
        `identity = ${directKey}`,
        `known_hosts = ${bed.relay.knownHosts}`,
        "queue = no",
        "",
      ].join("\n"),
      { mode: 0o644 },
    );
    // upstream: its client reads ~/.ssh/config of the passwd entry.
    const upKey = await bed.relay.addKey(`restrict,command="${UP_RSENDMAIL}"`, BENCH_USER);
    const sshDir = `${bench.home}/.ssh`;
    await Deno.mkdir(sshDir, { recursive: true, mode: 0o700 });
    await run("/usr/bin/chown", [`${BENCH_USER}:`, sshDir]);
    await Deno.writeTextFile(
      `${sshDir}/config`,
      [
        `# written by scripts/bench_service.ts for the relay on port ${bed.relay.port}`,
        "Host rsm-up-svc",
        "  HostName 127.0.0.1",
        `  Port ${bed.relay.port}`,
        `  User ${bed.relay.user}`,
        `  IdentityFile ${upKey}`,
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        `  UserKnownHostsFile ${bed.relay.knownHosts}`,
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  UpdateHostKeys no",
        "  BatchMode yes",
        "  LogLevel ERROR",
        "",
      ].join("\n"),
    );
    await run("/usr/bin/chown", [`${BENCH_USER}:`, `${sshDir}/config`]);
    await Deno.chmod(`${sshDir}/config`, 0o600);

    const sendAs = (u: Account, id: string, i: number): Spec =>
      u.uid === 0
        ? { cmd: bed.sendmail, args: [rcpt], env: baseEnv(svcEnv), stdin: msg(id, i) }
        : as(u, bed.sendmail, [rcpt], msg(id, i), svcEnv);

    // ---- S1. The submitter vs an empty script ---------------------------------------------
    const { cases, mk } = caseList();
    const uSend = mk("user-sendmail", true, (i) => sendAs(bench, "user-sendmail", i));
    const uShebang = mk("user-empty-shebang", false, () => as(bench, emptyClient, []));
    const uBare = mk(
      "user-deno-run",
      false,
      () => as(bench, deno, ["run", "-q", "--no-config", emptyJs]),
    );
    const uTrue = mk("user-setpriv-true", false, () => as(bench, "/bin/true", []));
    const rSend = mk("root-sendmail", true, (i) => sendAs(root, "root-sendmail", i));
    const rShebang = mk(
      "root-empty-shebang",
      false,
      () => ({ cmd: emptyClient, args: [], env: baseEnv() }),
    );
    const rBare = mk("root-deno-run", false, () => ({
      cmd: deno,
      args: ["run", "-q", "--no-config", emptyJs],
      env: baseEnv(),
    }));
    const rounds = { warmup: o.serviceWarmup, runs: o.serviceRuns };
    await measure(cases, rounds, "service: submitter");
    groups.push(...caseGroups("service", cases, rounds));
    // Let the service drain before the latency run.
    await watch.nth(groups.reduce((a, g) => a + g.sent - g.failed, 0), 60_000);

    // ---- S2. Submit → relay accepted, the service warm ------------------------------------
    const openerBefore = watch.count();
    const opener = await timeOnce(sendAs(bench, "lat-open", 0));
    groups.push(sendGroup("lat-open", "lat-open: untimed, opens the batch session", [opener]));
    if (opener.code === 0) await watch.nth(openerBefore + 1, 30_000);
    // The stages, seen from outside: the submitter creates `t<hex>` in drop/,
    // renames it to `d<hex>` (published), the service renames that into
    // incoming/ (claimed), writes `queue/new/<id>` (queued), the relay takes
    // the id's lock `<id>.lock` (frame read) and records the id (accepted).
    const hexRe = (c: string) => new RegExp(`^${c}[0-9a-f]{32}$`);
    const stageWatches = [
      new DirWatch(`${bed.spool}/drop`, hexRe("t")),
      new DirWatch(`${bed.spool}/drop`, hexRe("d")),
      new DirWatch(`${bed.spool}/incoming`, hexRe("d")),
      new DirWatch(`${bed.spool}/queue/new`, ID_RE),
      new DirWatch(watch.dir, /^m[0-9a-f]{32}\.lock$/),
    ];
    const keys = ["created", "published", "claimed", "queued", "locked", "recorded"] as const;
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
        await timeOnce({
          cmd: SENDMAIL,
          args: ["-oi", "-f", SENDER, "--", rcpt],
          env: baseEnv(),
          stdin: msg("relay-sendmail", i),
        }),
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

    // ---- S3. Burst -------------------------------------------------------------------------
    const ctx: ServiceCtx = { bed, bench, users, watch, rcpt, emptyClient, msg, sendAs };
    const burst = await benchBurst(ctx, o);
    groups.push(...burst.groups);

    // ---- Report ----------------------------------------------------------------------------
    const d = (c: { samples: Sample[] }) => dist(c.samples.map((s) => s.ms));
    const row1 = (label: string, c: { samples: Sample[] }, base?: { samples: Sample[] }) => {
      const x = d(c);
      const diff = base ? x.median - d(base).median : NaN;
      return [
        label,
        String(x.n),
        fmt(x.median),
        fmt(x.p95),
        base ? `${diff >= 0 ? "+" : ""}${fmt(diff)}` : "",
      ];
    };
    const ok = (xs: Sample[]) => dist(xs.filter((s) => s.code === 0).map((s) => s.ms));
    const lat = dist(latency);
    const sub = dist(submitted);
    const aft = dist(afterExit);
    const up = ok(upSamples);
    const fl = ok(floorSamples);
    const row2 = (label: string, x: Dist) => [label, String(x.n), fmt(x.median), fmt(x.p95)];
    const goals: Goal[] = [
      {
        what: "service: the sender's wall time (`sendmail` spawn → exit) ÷ upstream's cold send",
        goal: `≤ ${GOALS.senderVsUpstream}×`,
        measured: `${(sub.median / up.median).toFixed(2)}× (${fmt(sub.median)} / ${
          fmt(up.median)
        } ms)`,
        met: sub.median / up.median <= GOALS.senderVsUpstream,
      },
      {
        what: "service warm: submit (submitter's exit) → relay accepted ÷ the relay's own sendmail",
        goal: `≤ ${GOALS.acceptedVsSendmail}×`,
        measured: `${(aft.median / fl.median).toFixed(2)}× (${fmt(aft.median)} / ${
          fmt(fl.median)
        } ms)`,
        met: aft.median / fl.median <= GOALS.acceptedVsSendmail,
      },
      {
        what: "service warm: `sendmail` spawn → relay accepted (issue 11)",
        goal: `median ≤ ${GOALS.latencyMedianMs} ms`,
        measured: `${fmt(lat.median)} ms`,
        met: lat.median <= GOALS.latencyMedianMs,
      },
      ...burst.goals,
    ];
    const text = [
      "## 5. Satellite service",
      "",
      "### S1. The submitter: `sendmail rcpt < ~1 KB message`, spawn → exit, the service running (ms)",
      "",
      table(["command", "runs", "median", "p95", "median − empty script (shebang)"], [
        row1(`as ${BENCH_USER} (setpriv): \`sendmail rcpt\``, uSend, uShebang),
        row1(`as ${BENCH_USER}: empty script, sshsendmail's shebang`, uShebang),
        row1(`as ${BENCH_USER}: \`deno run -q --no-config empty.js\``, uBare, uShebang),
        row1(`as ${BENCH_USER}: \`setpriv … /bin/true\` (harness floor)`, uTrue, uShebang),
        row1("as root: `sendmail rcpt`", rSend, rShebang),
        row1("as root: empty script, sshsendmail's shebang", rShebang),
        row1("as root: `deno run -q --no-config empty.js`", rBare, rShebang),
      ]),
      "",
      `${rounds.warmup} warm-up + ${rounds.runs} measured rounds, the ${cases.length} commands ` +
      "round-robin. The shebang is dist/sshsendmail's own (`deno run -q --no-config --ext=js` " +
      "and its permission flags); the last column is the submitter's own work beyond Deno's start-up.",
      "",
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
            "→ the relay takes the id's lock (frame written to ssh, read by the relay)",
            stages.locked,
          ],
          [
            "→ the relay's record (duplicate check, spool, `/usr/sbin/sendmail`, record)",
            stages.recorded,
          ],
        ].map(([label, xs]) => row2(label as string, dist(xs as number[]))),
      ),
      "",
      `As ${BENCH_USER} through setpriv. The warm messages go one after another (the next is ` +
      "spawned when the relay recorded the one before), over the service's one batch session, " +
      "opened by an untimed message first. The relay's rsendmail writes " +
      "`/var/tmp/rsendmail-<uid>/<label>/<id>` right after its `/usr/sbin/sendmail` exited " +
      "(lib/relay/dedup_io.ts); the bench watches that directory (inotify through Deno.watchFs) " +
      "and takes the time it sees the id. After each warm message the bench runs the relay's " +
      "sendmail itself (as root, straight from the bench) on a message of the same size: the " +
      `floor of the relay's part. A cold send of each kind every ${o.coldEvery} warm messages, ` +
      "interleaved, so that drift in the load hits all alike; a cold client exits once the " +
      "relay answered, so its wall time is its submit → accepted.",
      "",
      burst.text,
      "",
      goalTable(goals),
    ].join("\n");
    const findings = [...caseFindings("service", cases), ...burst.findings];
    for (
      const [what, xs] of [["S2 sends", latSamples], ["upstream cold sends", upSamples], [
        "queue = no cold sends",
        directSamples,
      ], ["S2 sendmail floor", floorSamples]] as const
    ) {
      const bad = xs.filter((s) => s.code !== 0);
      if (bad.length > 0) {
        findings.push(
          `service ${what}: ${bad.length} exited non-zero, e.g. exit ${bad[0]!.code}: ${
            bad[0]!.stderr.trim().split("\n")[0]
          }`,
        );
      }
    }
    for (const g of goals) {
      if (g.met === false) findings.push(`${g.what}: ${g.measured} (goal ${g.goal})`);
    }
    return { key: "service", text, groups, goals, findings };
  } finally {
    await bed.stop();
    await watch.close(true);
    await watchDirect.close(true);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
