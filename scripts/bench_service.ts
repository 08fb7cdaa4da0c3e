/**
 * Section 5 of `deno task bench`, the satellite service, on the bed of
 * tests/e2e/_service.ts: the real Postfix, a private sshd whose satellite
 * key forces dist/rsendmail, and `sshsendmail --serve` started as its unit
 * starts it (its account, start-stop-daemon).
 *
 * S1. The submitter: `sendmail rcpt < ~1 KB` from spawn to exit (the
 *     service running), as a non-root user through setpriv and as root, vs
 *     an empty script with the same Deno and flags, round-robin.
 * S2. Submit → relay accepted, the service warm, beside the relay's own
 *     sendmail and cold sends of ours and upstream's (bench_latency.ts).
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
  baseEnv,
  BENCH_USER,
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  lazyBundle,
  makeMessage,
  type Options,
  type SectionResult,
  shebangOf,
  tagOf,
  UP_RSENDMAIL,
  writeScript,
} from "./bench_common.ts";
import { asUser, caseGroups, caseList, measure, type Sample, type Spec } from "./bench_run.ts";
import { caseFindings, fmt, type Goal, goalTable, table } from "./bench_report.ts";
import type { MailGroup } from "./bench_delivery.ts";
import { DirWatch, dist, type ServiceCtx, USERS } from "./bench_spool.ts";
import { benchBurst } from "./bench_burst.ts";
import { benchLatency } from "./bench_latency.ts";

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
  const watch = await DirWatch.record(bed.relay, label);
  const watchDirect = await DirWatch.record(bed.relay, directLabel);
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
    // The client bundled without the build's eager step, invoked as `sendmail` (a symlink).
    await Deno.mkdir(`${tmp}/lazy`, { mode: 0o755 });
    await Deno.symlink(
      await lazyBundle("client.ts", clientShebang, `${tmp}/lazy-client`),
      `${tmp}/lazy/sendmail`,
    );

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
    const uLazy = mk(
      "user-sendmail-lazy",
      true,
      (i) => as(bench, `${tmp}/lazy/sendmail`, [rcpt], msg("user-sendmail-lazy", i), svcEnv),
    );
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
    const ctx: ServiceCtx = { bed, bench, users, watch, rcpt, emptyClient, msg, sendAs };
    const latency = await benchLatency({ ...ctx, watchDirect, directConf, as }, o);
    groups.push(...latency.groups);

    // ---- S3. Burst -------------------------------------------------------------------------
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
    const { lat, sub, aft, up, fl } = latency.figures;
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
        row1(`as ${BENCH_USER}: the same, bundled without the eager step`, uLazy, uShebang),
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
      "and its permission flags); the last column is the submitter's own work beyond Deno's start-up. " +
      "The second row is client.ts bundled without the build's eager step " +
      "(scripts/eager_functions.ts), under the same shebang: the step's gain is its difference " +
      "from the first.",
      "",
      latency.text,
      "",
      burst.text,
      "",
      goalTable(goals),
    ].join("\n");
    const findings = [
      ...caseFindings("service", cases),
      ...latency.findings,
      ...burst.findings,
    ];
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
