/**
 * Section 1 of `deno task bench`, the relay side: `dist/rsendmail`
 * (SSH_ORIGINAL_COMMAND set, the message on stdin, spawning the real
 * /usr/sbin/sendmail), run as the relay account, vs its floor, a bare Deno
 * wrapper under the same shebang (same Deno, same flags) that only spawns
 * the same sendmail with the same argv on inherited stdin (written to a temp
 * dir here), vs a wrapper that reads the message first and pipes it to the
 * same sendmail (the floor of a relay that checks before it sends), vs a
 * direct `/usr/sbin/sendmail -oi`, vs upstream 1.1.4's
 * `/usr/bin/rsendmail`; for a ~1 KB and a 1 MB message. Beside them the
 * start-up floors (an empty script under each shebang, `python3 -c pass`),
 * one-line probes of single start-up costs, and ours bundled without the
 * build's eager step (scripts/eager_functions.ts): what the step saves. All
 * round-robin.
 *
 * @module
 */

import { ensureUser } from "../tests/e2e/_bed.ts";
import {
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  lazyBundle,
  makeMessage,
  type Options,
  readFirstWrapperCode,
  RELAY_USER,
  type SectionResult,
  SENDER,
  SENDMAIL,
  sendmailWrapperCode,
  shebangOf,
  tagOf,
  UP_RSENDMAIL,
  writeScript,
} from "./bench_common.ts";
import { asUser, caseGroups, caseList, measure, type Spec } from "./bench_run.ts";
import {
  caseFindings,
  detail,
  fmt,
  type Goal,
  goalTable,
  med,
  ratio,
  table,
  verdict,
} from "./bench_report.ts";

/** A difference in ms with its sign (+1.2, −0.3). */
const signed = (d: number) => `${d >= 0 ? "+" : "−"}${fmt(Math.abs(d))}`;

/** Issue 15: ours within 15% of the bare Deno wrapper (one 1 KB message). */
const GOAL_WRAPPER = 1.15;

/** One-line scripts under the same shebangs: what single start-up costs weigh. */
const PROBES = [
  ["probe-timers", "server", "first `setTimeout`/`clearTimeout`", "clearTimeout(undefined);"],
  [
    "probe-abortsignal",
    "server",
    "`AbortSignal.timeout()` instead",
    "AbortSignal.timeout(600000);",
  ],
  [
    "probe-stdin-stream",
    "server",
    "read stdin via `Deno.stdin.readable`",
    "const r = Deno.stdin.readable.getReader(); while (!(await r.read()).done);",
  ],
  [
    "probe-stdin-raw",
    "server",
    "read stdin via `Deno.stdin.read()` instead",
    "const b = new Uint8Array(65536); while ((await Deno.stdin.read(b)) !== null);",
  ],
  [
    "probe-node-util",
    "client",
    '`import { parseArgs } from "node:util"` (client, own options in unusual forms)',
    'import { parseArgs } from "node:util"; parseArgs({ args: [], options: {} });',
  ],
] as const;

export async function benchRelay(
  o: Options,
  runId: string,
  rcpt: string,
): Promise<SectionResult> {
  const home = ensureUser(RELAY_USER, "/bin/sh");
  const dir = await Deno.makeTempDir({ prefix: "rsm-bench-relay-" });
  await Deno.chmod(dir, 0o755);
  const shebang = {
    server: await shebangOf(DIST_RSENDMAIL),
    client: await shebangOf(DIST_SSHSENDMAIL),
  };
  const as = (cmd: string, args: string[], stdin?: Uint8Array, env?: Record<string, string>) =>
    asUser(RELAY_USER, home, cmd, args, stdin, env);
  const script = async (name: string, head: string, code: string) => {
    await writeScript(`${dir}/${name}`, `${head}\n${code}`);
    return `${dir}/${name}`;
  };
  const emptyServer = await script("empty-server", shebang.server, "");
  const emptyClient = await script("empty-client", shebang.client, "");
  const wrapper = await script("wrapper", shebang.server, sendmailWrapperCode(rcpt));
  const readFirst = await script("read-first", shebang.server, readFirstWrapperCode(rcpt));
  const lazy = await lazyBundle("server.ts", shebang.server, `${dir}/lazy`);
  const probeMsg = makeMessage(1024, tagOf(runId, "relay", "probe", 0), rcpt);

  const { cases, mk } = caseList();
  const floorTrue = mk("setpriv-true", false, () => as("/bin/true", []));
  const floorServer = mk("deno-empty-server", false, () => as(emptyServer, []));
  const floorClient = mk("deno-empty-client", false, () => as(emptyClient, []));
  const floorPy = mk("python3-pass", false, () => as("/usr/bin/python3", ["-c", "pass"]));
  const probes = [];
  for (const [id, which, label, code] of PROBES) {
    const path = await script(id, shebang[which], `${code}\n`);
    const stdin = id.startsWith("probe-stdin") ? probeMsg : undefined;
    probes.push({ label, which, c: mk(id, false, () => as(path, [], stdin)) });
  }
  const peer = { SSH_CONNECTION: "127.0.0.1 50000 127.0.0.1 22" };
  const sizes = [{ name: "1 KB", bytes: 1024 }, { name: "1 MB", bytes: 1 << 20 }];
  const bySize = sizes.map((size) => {
    const m = (id: string) => (i: number) =>
      makeMessage(size.bytes, tagOf(runId, "relay", id, i), rcpt);
    const c = (id: string, spec: (msg: Uint8Array) => Spec) =>
      mk(`${id}-${size.bytes}`, true, (i) => spec(m(`${id}-${size.bytes}`)(i)));
    /** A forced command run as sshd runs it: the request in SSH_ORIGINAL_COMMAND. */
    const forced = (id: string, program: string, request: string, admin: string[] = []) =>
      c(id, (msg) =>
        as(program, admin, msg, {
          SSH_ORIGINAL_COMMAND: `${request} -f ${SENDER} ${rcpt}`,
          ...peer,
        }));
    return {
      size,
      direct: c("direct", (msg) => as(SENDMAIL, ["-oi", "-f", SENDER, "--", rcpt], msg)),
      wrapper: forced("wrapper", wrapper, "sendmail"),
      readFirst: forced("readfirst", readFirst, "sendmail"),
      ours: forced("ours", DIST_RSENDMAIL, "sendmail"),
      lazy: forced("lazy", lazy, "sendmail"),
      // The same, but no syslog line on success, so no logger(1) started.
      quiet: forced("quiet", DIST_RSENDMAIL, "sendmail", ["--log-level", "warning"]),
      up: forced("upstream", UP_RSENDMAIL, "rsendmail"),
    };
  });
  try {
    await measure(cases, o, "relay side");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  const small = bySize[0]!;
  const goalRatio = med(small.ours) / med(small.wrapper);
  const goals: Goal[] = [{
    what: "relay side, 1 KB: ours / bare Deno wrapper",
    goal: `≤ ${GOAL_WRAPPER.toFixed(2)}×`,
    measured: ratio(med(small.ours), med(small.wrapper)),
    met: goalRatio <= GOAL_WRAPPER,
  }];
  const rows = bySize.map(({ size, direct, wrapper, ours, up }, k) => [
    size.name,
    fmt(med(direct)),
    fmt(med(wrapper)),
    fmt(med(ours)),
    ratio(med(ours), med(wrapper)),
    k === 0 ? `≤ ${GOAL_WRAPPER.toFixed(2)}×` : "",
    k === 0 ? verdict(goals[0]!.met) : "",
    fmt(med(up)),
    ratio(med(up), med(wrapper)),
    ratio(med(ours), med(direct)),
  ]);
  const readFirstRows = bySize.map(({ size, wrapper, readFirst, ours, quiet }) => [
    size.name,
    fmt(med(wrapper)),
    fmt(med(readFirst)),
    signed(med(readFirst) - med(wrapper)),
    fmt(med(quiet)),
    signed(med(ours) - med(quiet)),
    fmt(med(ours)),
    ratio(med(ours), med(readFirst)),
    ratio(med(quiet), med(wrapper)),
  ]);
  const eagerRows = bySize.map(({ size, lazy, ours }) => [
    size.name,
    fmt(med(lazy)),
    fmt(med(ours)),
    signed(med(ours) - med(lazy)),
  ]);
  const startUp = med(floorServer) - med(floorTrue);
  const overhead = med(small.ours) - med(small.wrapper);
  const text = [
    "## 1. Relay side: one message, `SSH_ORIGINAL_COMMAND` set, message on stdin, as the relay account (ms, medians)",
    "",
    table([
      "message",
      "direct `sendmail -oi`",
      "floor: bare Deno wrapper",
      "rsendmail (ours)",
      "ours / wrapper",
      "goal",
      "ours",
      "upstream 1.1.4",
      "upstream / wrapper",
      "ours / direct",
    ], rows),
    "",
    "The floor is a script under dist/rsendmail's own shebang (the same Deno, the same flags " +
    "and permissions) that only spawns the same `/usr/sbin/sendmail -oi -f SENDER -- RCPT` " +
    "with stdin, stdout and stderr inherited and exits with its code: any relay written for " +
    "`deno run` pays it. Every case runs as the relay account " +
    `\`${RELAY_USER}\` through \`setpriv\`, as sshd runs a forced command; ` +
    `ours costs ${fmt(overhead)} ms more than the wrapper for a small message.`,
    "",
    table([
      "message",
      "floor: bare Deno wrapper",
      "wrapper that reads the message first",
      "reading first costs",
      "ours, `--log-level warning`",
      "its syslog line costs",
      "rsendmail (ours)",
      "ours / reading-first wrapper",
      "ours without the line / wrapper",
    ], readFirstRows),
    "",
    "A relay that checks a message (its size, its SHA-256, its headers) before sendmail gets a " +
    "byte of it cannot hand sendmail its own stdin: it reads the message, then writes it into " +
    "a pipe, and keeps sendmail's stderr from the peer. The reading-first wrapper does only " +
    "that (no check; the whole message in memory, then sendmail on a piped stdin and stderr, " +
    "Web streams in Deno) under the same shebang: the floor of such a relay. The goal stays " +
    "against the bare wrapper, as issue 15 sets it. `--log-level warning` is ours with no " +
    "syslog line for a delivered message: the line is written by logger(1), a process of its " +
    "own (Deno grants no /dev/log short of `--allow-all`), which starts while sendmail runs " +
    "and takes a CPU from it and from Postfix; the difference is what one line per message " +
    "costs.",
    "",
    table([
      "message",
      "ours bundled without the eager step",
      "rsendmail (ours)",
      "the eager step",
    ], eagerRows),
    "",
    "`deno task build` makes every top-level function of the bundle eager " +
    "(scripts/eager_functions.ts): V8 then compiles it with the module, and its bytecode is " +
    "kept in Deno's code cache, which Deno writes before the module runs; a function left " +
    "lazy is compiled anew in each run that calls it. The first column is the same source " +
    "bundled without the step, under the same shebang.",
    "",
    table(["start-up floor (as the relay account)", "ms"], [
      ["`setpriv … /bin/true` (harness floor)", fmt(med(floorTrue))],
      ["empty script, rsendmail's shebang (Deno start-up)", fmt(med(floorServer))],
      ["empty script, sshsendmail's shebang (Deno start-up)", fmt(med(floorClient))],
      ["`python3 -c pass` (Python start-up)", fmt(med(floorPy))],
    ]),
    "",
    table(
      ["start-up probe: one-line script, same shebang", "ms", "vs empty script"],
      probes.map((p) => {
        const d = med(p.c) - med(p.which === "server" ? floorServer : floorClient);
        return [p.label, fmt(med(p.c)), signed(d)];
      }),
    ),
    "",
    `Deno's bare start-up with rsendmail's flags is ${fmt(startUp)} ms here (empty script ` +
    `minus \`setpriv … /bin/true\`); ours adds ${fmt(med(small.ours) - med(small.direct))} ms ` +
    "to a direct sendmail for a small message.",
    "",
    goalTable(goals),
    "",
    detail("relay side", cases),
  ].join("\n");
  const findings = caseFindings("relay", cases);
  if (!goals[0]!.met) {
    findings.push(
      `relay side 1 KB: ours is ${
        goals[0]!.measured
      } the bare Deno wrapper (goal ≤ ${GOAL_WRAPPER}×)`,
    );
  }
  return { key: "relay", text, groups: caseGroups("relay", cases, o), goals, findings };
}
