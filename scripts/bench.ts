/**
 * `deno task bench`: wall-time benchmarks of the built artefacts against
 * upstream's Python rsendmail 1.1.4 (`/usr/bin/rsendmail`,
 * `/usr/bin/sshsendmail`), all measured in one run on real programs.
 *
 * 1. Relay side: `dist/rsendmail` (SSH_ORIGINAL_COMMAND set, message on
 *    stdin, spawning the real /usr/sbin/sendmail) vs a direct
 *    `/usr/sbin/sendmail -oi` of the same message vs upstream's rsendmail,
 *    for a ~1 KB and a 1 MB message, plus the start-up floors (an empty
 *    script with the bundle's own shebang, `python3 -c pass`).
 * 2. End to end through a private sshd (tests/e2e/_bed.ts): one message with
 *    `dist/sshsendmail` against a key forced to dist/rsendmail, cold and with
 *    `--reuse`, vs upstream's sshsendmail against a key forced to
 *    /usr/bin/rsendmail, plus the floor `ssh relay true` cold and warm.
 * 3. (The offline queue's `--flush` is the satellite service's now: see
 *    the service section, scripts/bench_service.ts.)
 * 4. SMTP mode (same sshd): `--smtp N` (default 100) messages in one
 *    `sshsendmail -bs -i` session (one client process whose messages share one
 *    ssh session, the relay in `--batch` mode), driven like a PHP mailer (a
 *    reply awaited per message, MAIL/RCPT/DATA pipelined) and with the whole
 *    dialogue written at once, `--smtp-runs N` (default 3) sessions each; vs
 *    N sequential command-line sends `sshsendmail -i -f … rcpt`, cold and with
 *    `reuse = yes` (ControlPersist master opened by an untimed send first).
 *    Per-message time = wall / N; target: the session ≥ 5× faster per
 *    message. The relay's peak RSS per forced command (`/usr/bin/time -a`).
 *
 * Every case runs round-robin (warm-up rounds first, then measured rounds) so
 * that drift in the machine's load hits all cases alike; the tables give
 * medians. The time is spawn → exit of the command; Postfix delivers
 * asynchronously, so delivery is checked after the timing: every message
 * carries a unique header and must arrive in the bench Maildir.
 *
 * Upstream's client has no port or known-hosts option and ssh reads
 * `~/.ssh/config` from the passwd entry (not $HOME), so the end-to-end cases
 * run as a dedicated account `rsmbench` (via setpriv, for every case alike)
 * whose `~/.ssh/config` names the relay. Mail goes to rsmbench@relay.test,
 * not rcpt1: concurrent e2e tests take whatever lands in rcpt1's Maildir.
 *
 * 5. The satellite service (issue 11): scripts/bench_service.ts, its own
 *    section ("## Satellite service") with its own bed and delivery check.
 *
 * Needs root. Options: `--runs N` (default 15), `--warmup N` (default 2),
 * `--no-build`, `--write-docs` (also writes docs/benchmarks.md; with
 * `--only service` it replaces just that section there),
 * `--only relay|e2e|flush|smtp|service`, `--flush N` (default 500), `--upstream-seq N`
 * (default 50), `--smtp N` (default 100), `--smtp-runs N` (default 3);
 * for the service section `--service-runs N` (default 50), `--service-latency N`
 * (default 100), `--service-burst N` (messages per user, 5 users; default 100),
 * `--service-rss N` (default 5000), `--quick` (15 / 30 / 20 / 1000).
 *
 * @module
 */

import { ensureUser, type Relay, run, startPostfix, startRelay } from "../tests/e2e/_bed.ts";
import {
  baseEnv,
  BENCH_USER,
  collectMail,
  countFiles,
  cpuModel,
  decoder,
  deliveryTable,
  denoVersion,
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  encoder,
  exists,
  fmt,
  LOGIN_PATH,
  type MailGroup,
  makeMessage,
  mib,
  progress,
  quantile,
  ratio,
  readAll,
  readRssKiB,
  type Report,
  ROOT,
  type Sample,
  SENDER,
  SENDMAIL,
  sleep,
  type Spec,
  table,
  TIME,
  timeOnce,
  UP_RSENDMAIL,
  UP_SSHSENDMAIL,
} from "./bench_common.ts";
import {
  benchService,
  SERVICE_DEFAULTS,
  SERVICE_QUICK,
  type ServiceBenchOptions,
} from "./bench_service.ts";

const TARGETS = { relayRatio: 2.0, cold: 330, warm: 120, flushRate: 50, smtpSpeedup: 5 };
/** Heading of the service section in docs/benchmarks.md. */
const SERVICE_HEADING = "## Satellite service";
type Only = "relay" | "e2e" | "flush" | "smtp" | "service";

interface Options {
  runs: number;
  warmup: number;
  build: boolean;
  writeDocs: boolean;
  only: Only | undefined;
  service: ServiceBenchOptions;
  flushN: number;
  upstreamSeq: number;
  smtpN: number;
  smtpRuns: number;
}

function parseOptions(args: readonly string[]): Options {
  const o: Options = {
    runs: 15,
    warmup: 2,
    build: true,
    writeDocs: false,
    only: undefined,
    service: { ...(args.includes("--quick") ? SERVICE_QUICK : SERVICE_DEFAULTS) },
    flushN: 500,
    upstreamSeq: 50,
    smtpN: 100,
    smtpRuns: 3,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--runs") o.runs = Math.max(10, Number(args[++i]));
    else if (a === "--warmup") o.warmup = Math.max(1, Number(args[++i]));
    else if (a === "--no-build") o.build = false;
    else if (a === "--write-docs") o.writeDocs = true;
    else if (a === "--flush") o.flushN = Math.max(100, Number(args[++i]));
    else if (a === "--upstream-seq") o.upstreamSeq = Math.max(5, Number(args[++i]));
    else if (a === "--smtp") o.smtpN = Math.max(10, Number(args[++i]));
    else if (a === "--smtp-runs") o.smtpRuns = Math.max(1, Number(args[++i]));
    else if (a === "--") continue; // `deno task bench -- …` passes it through
    else if (a === "--quick") continue; // taken above, before any --service-* option
    else if (a === "--service-runs") o.service.runs = Math.max(10, Number(args[++i]));
    else if (a === "--service-latency") o.service.latencyN = Math.max(10, Number(args[++i]));
    else if (a === "--service-burst") o.service.perUser = Math.max(1, Number(args[++i]));
    else if (a === "--service-rss") o.service.rssN = Math.max(500, Number(args[++i]));
    else if (
      a === "--only" && ["relay", "e2e", "flush", "smtp", "service"].includes(args[i + 1] ?? "")
    ) {
      o.only = args[++i] as Only;
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** A benchmarked case: builds the command for round `i` (mail cases tag their message). */
interface Case {
  id: string;
  spec: (i: number) => Spec;
  /** Expects one delivered message per successful run. */
  mail: boolean;
  samples: Sample[];
  failures: string[];
}

/** Runs every case round-robin: warm-up rounds (discarded), then measured rounds. */
async function measure(cases: Case[], opts: Options, title: string): Promise<void> {
  const total = opts.warmup + opts.runs;
  for (let i = 0; i < total; i++) {
    if (Deno.stderr.isTerminal()) {
      await Deno.stderr.write(encoder.encode(`\r${title}: round ${i + 1}/${total}   `));
    }
    for (const c of cases) {
      const s = await timeOnce(c.spec(i));
      if (s.code !== 0) c.failures.push(`exit ${s.code}: ${s.stderr.trim().split("\n")[0]}`);
      if (i >= opts.warmup) c.samples.push(s);
    }
  }
  await Deno.stderr.write(
    encoder.encode(`${Deno.stderr.isTerminal() ? "\n" : ""}${title}: ${total} rounds done\n`),
  );
}

function stats(c: Case) {
  const ms = c.samples.map((s) => s.ms).sort((a, b) => a - b);
  return {
    n: ms.length,
    median: quantile(ms, 0.5),
    p25: quantile(ms, 0.25),
    p75: quantile(ms, 0.75),
  };
}

const med = (c: Case) => stats(c).median;

/** Section 1: relay side. */
async function benchRelay(opts: Options, runId: string, rcpt: string, report: Report) {
  const dir = await Deno.makeTempDir({ prefix: "rsm-bench-" });
  const shebang = (await Deno.readTextFile(DIST_RSENDMAIL)).split("\n", 1)[0]!;
  const clientShebang = (await Deno.readTextFile(DIST_SSHSENDMAIL)).split("\n", 1)[0]!;
  const emptyServer = `${dir}/empty-server`;
  const emptyClient = `${dir}/empty-client`;
  await Deno.writeTextFile(emptyServer, `${shebang}\n`, { mode: 0o755 });
  await Deno.writeTextFile(emptyClient, `${clientShebang}\n`, { mode: 0o755 });
  // One-line scripts under the same shebangs: what single start-up costs weigh.
  const probeDefs = [
    {
      id: "probe-timers",
      shebang,
      label: "first `setTimeout`/`clearTimeout`",
      code: "clearTimeout(undefined);",
    },
    {
      id: "probe-abortsignal",
      shebang,
      label: "`AbortSignal.timeout()` instead",
      code: "AbortSignal.timeout(600000);",
    },
    {
      id: "probe-stdin-stream",
      shebang,
      label: "read stdin via `Deno.stdin.readable`",
      code: "const r = Deno.stdin.readable.getReader(); while (!(await r.read()).done);",
    },
    {
      id: "probe-stdin-raw",
      shebang,
      label: "read stdin via `Deno.stdin.read()` instead",
      code: "const b = new Uint8Array(65536); while ((await Deno.stdin.read(b)) !== null);",
    },
    {
      id: "probe-node-util",
      shebang: clientShebang,
      label: '`import { parseArgs } from "node:util"` (client)',
      code: 'import { parseArgs } from "node:util"; parseArgs({ args: [], options: {} });',
    },
  ];
  for (const p of probeDefs) {
    await Deno.writeTextFile(`${dir}/${p.id}`, `${p.shebang}\n${p.code}\n`, { mode: 0o755 });
  }
  const probeMsg = makeMessage(1024, `${runId} probe 0`, rcpt);

  const sizes = [{ name: "1 KB", bytes: 1024 }, { name: "1 MB", bytes: 1 << 20 }];
  const cases: Case[] = [];
  const mk = (id: string, mail: boolean, spec: (i: number) => Spec): Case => {
    const c = { id, spec, mail, samples: [], failures: [] };
    cases.push(c);
    return c;
  };
  const floorTrue = mk("true", false, () => ({ cmd: "/bin/true", args: [], env: baseEnv() }));
  const floorDeno = mk(
    "deno-empty-server",
    false,
    () => ({ cmd: emptyServer, args: [], env: baseEnv() }),
  );
  const floorDenoC = mk(
    "deno-empty-client",
    false,
    () => ({ cmd: emptyClient, args: [], env: baseEnv() }),
  );
  const floorPy = mk("python3-pass", false, () => ({
    cmd: "/usr/bin/python3",
    args: ["-c", "pass"],
    env: baseEnv(),
  }));
  const probes = probeDefs.map((p) => ({
    ...p,
    c: mk(p.id, false, () => ({
      cmd: `${dir}/${p.id}`,
      args: [],
      env: baseEnv(),
      ...(p.id.startsWith("probe-stdin") ? { stdin: probeMsg } : {}),
    })),
  }));
  const bySize = sizes.map((size) => {
    const tag = (id: string, i: number) => `${runId} ${id} ${i}`;
    const direct = mk(`direct-${size.bytes}`, true, (i) => ({
      cmd: SENDMAIL,
      args: ["-oi", "-f", SENDER, rcpt],
      env: baseEnv(),
      stdin: makeMessage(size.bytes, tag(`direct-${size.bytes}`, i), rcpt),
    }));
    const ours = mk(`ours-${size.bytes}`, true, (i) => ({
      cmd: DIST_RSENDMAIL,
      args: [],
      env: baseEnv({
        SSH_ORIGINAL_COMMAND: `sendmail -f ${SENDER} ${rcpt}`,
        SSH_CONNECTION: "127.0.0.1 50000 127.0.0.1 22",
      }),
      stdin: makeMessage(size.bytes, tag(`ours-${size.bytes}`, i), rcpt),
    }));
    const up = mk(`upstream-${size.bytes}`, true, (i) => ({
      cmd: UP_RSENDMAIL,
      args: [],
      env: baseEnv({
        SSH_ORIGINAL_COMMAND: `rsendmail -f ${SENDER} ${rcpt}`,
        SSH_CONNECTION: "127.0.0.1 50000 127.0.0.1 22",
      }),
      stdin: makeMessage(size.bytes, tag(`upstream-${size.bytes}`, i), rcpt),
    }));
    return { size, direct, ours, up };
  });
  await measure(cases, opts, "relay side");
  await Deno.remove(dir, { recursive: true });

  const rows = bySize.map(({ size, direct, ours, up }) => {
    const d = med(direct);
    return [
      size.name,
      fmt(d),
      fmt(med(ours)),
      ratio(med(ours), d),
      fmt(med(up)),
      ratio(med(up), d),
      `≤ ${TARGETS.relayRatio.toFixed(1)}×`,
      med(ours) / d <= TARGETS.relayRatio ? "met" : "MISSED",
    ];
  });
  const floors = [
    ["spawn `/bin/true` (harness floor)", fmt(med(floorTrue))],
    ["empty script, rsendmail's shebang (Deno start-up)", fmt(med(floorDeno))],
    ["empty script, sshsendmail's shebang (Deno start-up)", fmt(med(floorDenoC))],
    ["`python3 -c pass` (Python start-up)", fmt(med(floorPy))],
  ];
  const small = bySize[0]!;
  const probeRows = probes.map((p) => {
    const base = p.shebang === shebang ? floorDeno : floorDenoC;
    return [
      p.label,
      fmt(med(p.c)),
      `${(med(p.c) - med(base)) >= 0 ? "+" : ""}${fmt(med(p.c) - med(base))}`,
    ];
  });
  const bestRatio = (med(floorDeno) - med(floorTrue) + med(small.direct)) / med(small.direct);
  const overhead = med(small.ours) - med(small.direct);
  report.sections.push(
    [
      "### 1. Relay side: one message, `SSH_ORIGINAL_COMMAND` set, message on stdin (ms, medians)",
      "",
      table(
        [
          "message",
          "direct `sendmail -oi`",
          "rsendmail (ours)",
          "ours ratio",
          "upstream 1.1.4",
          "upstream ratio",
          "target",
          "ours",
        ],
        rows,
      ),
      "",
      table(["start-up floor", "ms"], floors),
      "",
      `Lower bound for any relay run by \`deno run\` here (Deno start-up + the direct sendmail): ` +
      `${bestRatio.toFixed(2)}× the direct sendmail.`,
      "",
      table(["start-up probe: one-line script, same shebang", "ms", "vs empty script"], probeRows),
      "",
      `Ours adds ${
        fmt(overhead)
      } ms to a direct sendmail for a small message; Deno's bare start-up ` +
      `with the same flags is ${fmt(med(floorDeno) - med(floorTrue))} ms of it ` +
      `(empty script minus /bin/true), so rsendmail's own work costs ` +
      `${fmt(overhead - (med(floorDeno) - med(floorTrue)))} ms.`,
    ].join("\n"),
  );
  report.sections.push(detail("relay side", cases));
  for (const { size, ours } of bySize) {
    if (med(ours) / med(bySize.find((b) => b.size === size)!.direct) > TARGETS.relayRatio) {
      report.findings.push(
        `relay side ${size.name}: ours misses the ${TARGETS.relayRatio}× target`,
      );
    }
  }
  return cases;
}

function detail(title: string, cases: Case[]): string {
  return [
    `<details><summary>All ${title} cases (ms)</summary>`,
    "",
    table(
      ["case", "n", "median", "p25", "p75", "failed runs"],
      cases.map((c) => {
        const s = stats(c);
        return [
          c.id,
          String(s.n),
          fmt(s.median),
          fmt(s.p25),
          fmt(s.p75),
          String(c.failures.length),
        ];
      }),
    ),
    "",
    "</details>",
  ].join("\n");
}

/** The private sshd, its keys and the bench account's ssh config, shared by sections 2 and 3. */
interface Bed {
  relay: Relay;
  home: string;
  sshDir: string;
  keyOurs: string;
  userEnv: Record<string, string>;
  /** A command run as the bench account (setpriv), with extra environment. */
  asUser(cmd: string, args: string[], stdin?: Uint8Array, env?: Record<string, string>): Spec;
  /** Options pointing dist/sshsendmail at the relay with keyOurs. */
  oursFlags: string[];
}

async function withBed<T>(fn: (bed: Bed) => Promise<T>): Promise<T> {
  const home = ensureUser(BENCH_USER, "/usr/sbin/nologin");
  const sshDir = `${home}/.ssh`;
  await Deno.mkdir(sshDir, { recursive: true, mode: 0o700 });
  await run("/usr/bin/chown", [`${BENCH_USER}:`, sshDir]);
  await Deno.chmod(sshDir, 0o700);

  const relay = await startRelay();
  try {
    const keyOurs = await relay.addKey(`restrict,command="${DIST_RSENDMAIL}"`, BENCH_USER);
    const keyUp = await relay.addKey(`restrict,command="${UP_RSENDMAIL}"`, BENCH_USER);
    const keyPlain = await relay.addKey("restrict", BENCH_USER);
    const hostBlock = (alias: string, key: string, reuse: boolean) => [
      `Host ${alias}`,
      "  HostName 127.0.0.1",
      `  Port ${relay.port}`,
      `  User ${relay.user}`,
      `  IdentityFile ${key}`,
      "  IdentitiesOnly yes",
      "  IdentityAgent none",
      `  UserKnownHostsFile ${relay.knownHosts}`,
      "  GlobalKnownHostsFile /dev/null",
      "  StrictHostKeyChecking yes",
      "  UpdateHostKeys no",
      "  BatchMode yes",
      "  LogLevel ERROR",
      ...(reuse
        ? ["  ControlMaster auto", "  ControlPath ~/.ssh/bench-%C", "  ControlPersist 60"]
        : []),
      "",
    ];
    await Deno.writeTextFile(
      `${sshDir}/config`,
      [
        `# written by scripts/bench.ts for the relay on port ${relay.port}`,
        ...hostBlock("rsm-up", keyUp, false),
        ...hostBlock("rsm-up-reuse", keyUp, true),
        ...hostBlock("rsm-plain", keyPlain, false),
        ...hostBlock("rsm-plain-reuse", keyPlain, true),
      ].join("\n"),
    );
    await run("/usr/bin/chown", [`${BENCH_USER}:`, `${sshDir}/config`]);
    await Deno.chmod(`${sshDir}/config`, 0o600);

    const userEnv = {
      PATH: LOGIN_PATH,
      LANG: "C",
      HOME: home,
      USER: BENCH_USER,
      LOGNAME: BENCH_USER,
    };
    const asUser = (
      cmd: string,
      args: string[],
      stdin?: Uint8Array,
      env: Record<string, string> = {},
    ): Spec => ({
      cmd: "/usr/bin/setpriv",
      args: [`--reuid=${BENCH_USER}`, `--regid=${BENCH_USER}`, "--init-groups", "--", cmd, ...args],
      env: { ...userEnv, ...env },
      ...(stdin === undefined ? {} : { stdin }),
    });
    const oursFlags = [
      "--host",
      `${relay.user}@${relay.host}`,
      "--port",
      String(relay.port),
      "--identity",
      keyOurs,
      "--known-hosts",
      relay.knownHosts,
    ];
    return await fn({ relay, home, sshDir, keyOurs, userEnv, asUser, oursFlags });
  } finally {
    await relay.stop();
  }
}

/** Section 2: end to end through a private sshd. */
async function benchE2e(opts: Options, runId: string, rcpt: string, report: Report, bed: Bed) {
  const { asUser, oursFlags, sshDir, userEnv } = bed;
  {
    const cases: Case[] = [];
    const mk = (id: string, mail: boolean, spec: (i: number) => Spec): Case => {
      const c = { id, spec, mail, samples: [], failures: [] };
      cases.push(c);
      return c;
    };
    const msg = (id: string, i: number) => makeMessage(1024, `${runId} ${id} ${i}`, rcpt);
    const setprivTrue = mk("setpriv-true", false, () => asUser("/bin/true", []));
    const sshCold = mk(
      "ssh-true-cold",
      false,
      () => asUser("/usr/bin/ssh", ["-T", "rsm-plain", "true"]),
    );
    const sshWarm = mk(
      "ssh-true-warm",
      false,
      () => asUser("/usr/bin/ssh", ["-T", "rsm-plain-reuse", "true"]),
    );
    const oursCold = mk(
      "ours-cold",
      true,
      (i) =>
        asUser(DIST_SSHSENDMAIL, [...oursFlags, "-f", SENDER, "--", rcpt], msg("ours-cold", i)),
    );
    const oursWarm = mk(
      "ours-warm",
      true,
      (i) =>
        asUser(
          DIST_SSHSENDMAIL,
          [...oursFlags, "--reuse", "-f", SENDER, "--", rcpt],
          msg("ours-warm", i),
        ),
    );
    const upCold = mk(
      "upstream-cold",
      true,
      (i) =>
        asUser(UP_SSHSENDMAIL, ["--host", "rsm-up", "-f", SENDER, rcpt], msg("upstream-cold", i)),
    );
    const upWarm = mk(
      "upstream-warm-sshconfig",
      true,
      (i) =>
        asUser(
          UP_SSHSENDMAIL,
          ["--host", "rsm-up-reuse", "-f", SENDER, rcpt],
          msg("upstream-warm-sshconfig", i),
        ),
    );

    try {
      await measure(cases, opts, "end to end");
    } finally {
      // Close the ControlPersist masters this run opened (by their sockets).
      for await (const e of Deno.readDir(sshDir)) {
        if (!/^(sshsendmail|bench)-/.test(e.name)) continue;
        await run("/usr/bin/setpriv", [
          `--reuid=${BENCH_USER}`,
          `--regid=${BENCH_USER}`,
          "--init-groups",
          "--",
          "/usr/bin/ssh",
          "-S",
          `${sshDir}/${e.name}`,
          "-O",
          "exit",
          "bench-master",
        ], { check: false, env: userEnv });
      }
    }

    report.sections.push(
      [
        "### 2. End to end through a real sshd on 127.0.0.1: one ~1 KB message, until the client exits (ms, medians)",
        "",
        table(["client", "cold", "warm (connection reuse)", "target cold / warm", "ours"], [
          [
            "sshsendmail (ours) → dist/rsendmail",
            fmt(med(oursCold)),
            fmt(med(oursWarm)),
            `≤ ${TARGETS.cold} / ≤ ${TARGETS.warm}`,
            `${med(oursCold) <= TARGETS.cold ? "met" : "MISSED"} / ${
              med(oursWarm) <= TARGETS.warm ? "met" : "MISSED"
            }`,
          ],
          [
            "upstream sshsendmail 1.1.4 → /usr/bin/rsendmail",
            fmt(med(upCold)),
            `${fmt(med(upWarm))} (ssh_config ControlMaster)`,
            "",
            "",
          ],
          ["floor: `ssh relay true`", fmt(med(sshCold)), fmt(med(sshWarm)), "", ""],
        ]),
        "",
        table(["above the ssh floor", "cold", "warm"], [
          ["ours", fmt(med(oursCold) - med(sshCold)), fmt(med(oursWarm) - med(sshWarm))],
          ["upstream", fmt(med(upCold) - med(sshCold)), fmt(med(upWarm) - med(sshWarm))],
        ]),
        "",
        `Every end-to-end case runs as the account \`${BENCH_USER}\` through \`setpriv\` ` +
        `(${fmt(med(setprivTrue))} ms for \`setpriv … /bin/true\`).`,
      ].join("\n"),
    );
    report.sections.push(detail("end-to-end", cases));
    if (med(oursCold) > TARGETS.cold) {
      report.findings.push("end to end: ours misses the cold target");
    }
    if (med(oursWarm) > TARGETS.warm) {
      report.findings.push("end to end: ours misses the warm target");
    }
    return cases;
  }
}

/** Reads SMTP replies (possibly multi-line) from a child's stdout. */
class ReplyReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #text = "";
  #lines: string[] = [];
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }
  /** The next complete reply's lines, or undefined at end of output. */
  async next(): Promise<string[] | undefined> {
    for (;;) {
      let nl;
      while ((nl = this.#text.indexOf("\n")) >= 0) {
        const line = this.#text.slice(0, nl).replace(/\r$/, "");
        this.#text = this.#text.slice(nl + 1);
        this.#lines.push(line);
        if (!/^\d{3}-/.test(line)) {
          const reply = this.#lines;
          this.#lines = [];
          return reply;
        }
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#text += decoder.decode(value, { stream: true });
    }
  }
  /** Drains what is left. */
  async rest(): Promise<string[][]> {
    const out: string[][] = [];
    for (let r; (r = await this.next()) !== undefined;) out.push(r);
    return out;
  }
}

/** A message as DATA: CRLF line ends, dot-stuffed, ended by the lone dot. */
function dataSection(message: Uint8Array): Uint8Array {
  const lines = decoder.decode(message).split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return encoder.encode(
    lines.map((l) => (l.startsWith(".") ? `.${l}` : l)).join("\r\n") + "\r\n.\r\n",
  );
}

/** The outcome of one `-bs` session. */
interface SmtpRun {
  mode: "step" | "full";
  ms: number;
  code: number;
  stderr: string;
  /** Replies to the final dot: relayed (`sent as`), queued (relay failed), refused. */
  sent: number;
  queued: number;
  refused: string[];
  clientKiB: number;
}

/**
 * One `sshsendmail -bs` session of `n` messages. `step`: a client that
 * waits for every reply, pipelining MAIL/RCPT/DATA per message (as
 * PIPELINING allows); `full`: the whole dialogue written at once.
 */
async function smtpSession(
  spec: Spec,
  mode: "step" | "full",
  helo: string,
  sender: string,
  rcpt: string,
  messages: Uint8Array[],
  clientRss: string,
): Promise<SmtpRun> {
  const envelope = encoder.encode(`MAIL FROM:<${sender}>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`);
  const t0 = performance.now();
  const child = new Deno.Command(spec.cmd, {
    args: spec.args,
    clearEnv: true,
    env: spec.env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = readAll(child.stderr);
  const writer = child.stdin.getWriter();
  const replies = new ReplyReader(child.stdout);
  const finals: string[] = [];
  const refused: string[] = [];
  try {
    if (mode === "full") {
      const reading = replies.rest();
      await writer.write(encoder.encode(`EHLO ${helo}\r\n`));
      for (const m of messages) {
        await writer.write(envelope);
        await writer.write(dataSection(m));
      }
      await writer.write(encoder.encode("QUIT\r\n"));
      await writer.close();
      // greeting, EHLO, then per message MAIL, RCPT, DATA, final dot; QUIT.
      const all = await reading;
      for (let i = 0; i < messages.length; i++) {
        const at = 2 + i * 4;
        const codes = all.slice(at, at + 3).map((r) => r[r.length - 1]!.slice(0, 3)).join(" ");
        if (codes !== "250 250 354") refused.push(`message ${i}: ${codes}`);
        else finals.push(all[at + 3]?.[0] ?? "(no reply)");
      }
    } else {
      await replies.next(); // greeting
      await writer.write(encoder.encode(`EHLO ${helo}\r\n`));
      await replies.next();
      for (let i = 0; i < messages.length; i++) {
        await writer.write(envelope);
        const codes = [];
        for (let k = 0; k < 3; k++) codes.push((await replies.next())?.pop()?.slice(0, 3));
        if (codes.join(" ") !== "250 250 354") {
          refused.push(`message ${i}: ${codes.join(" ")}`);
          await writer.write(encoder.encode("RSET\r\n"));
          await replies.next();
          continue;
        }
        await writer.write(dataSection(messages[i]!));
        finals.push((await replies.next())?.[0] ?? "(no reply)");
      }
      await writer.write(encoder.encode("QUIT\r\n"));
      await replies.next();
      await writer.close();
      await replies.rest();
    }
  } catch {
    // the client died early: its status and stderr tell
  }
  const status = await child.status;
  const ms = performance.now() - t0;
  const text = await Promise.race([stderr, sleep(2000).then(() => "(stderr held open)")]);
  let sent = 0;
  let queued = 0;
  for (const f of finals) {
    if (/^250 .*\bsent as\b/.test(f)) sent++;
    else if (/^250 .*\bqueued as\b/.test(f)) queued++;
    else refused.push(f);
  }
  return {
    mode,
    ms,
    code: status.code,
    stderr: text,
    sent,
    queued,
    refused,
    clientKiB: await readRssKiB(clientRss),
  };
}

/** Every peak RSS line `/usr/bin/time -a -f %M -o FILE` appended (KiB). */
async function readRssAllKiB(file: string): Promise<number[]> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.split("\n").filter((l) => /^\d+$/.test(l)).map(Number);
}

/** Closes the ControlPersist masters of the bench account (by their sockets). */
async function closeMasters(bed: Bed): Promise<void> {
  for await (const e of Deno.readDir(bed.sshDir)) {
    if (!/^(sshsendmail|bench)-/.test(e.name)) continue;
    await run("/usr/bin/setpriv", [
      `--reuid=${BENCH_USER}`,
      `--regid=${BENCH_USER}`,
      "--init-groups",
      "--",
      "/usr/bin/ssh",
      "-S",
      `${bed.sshDir}/${e.name}`,
      "-O",
      "exit",
      "bench-master",
    ], { check: false, env: bed.userEnv });
  }
}

/**
 * Section 4: `sshsendmail -bs`. N messages in one SMTP session (one client
 * process, one ssh session, the relay in `--batch` mode) vs N sequential
 * command-line sends, cold and with `reuse = yes`.
 */
async function benchSmtp(
  opts: Options,
  runId: string,
  rcpt: string,
  report: Report,
  bed: Bed,
): Promise<MailGroup[]> {
  const { relay, asUser } = bed;
  const n = opts.smtpN;
  const dir = await Deno.makeTempDir({ prefix: "rsm-bench-smtp-" });
  await run("/usr/bin/chown", [`${BENCH_USER}:`, dir]);
  await Deno.chmod(dir, 0o700);
  const relayDir = await Deno.makeTempDir({ prefix: "rsm-bench-smtprss-" });
  await run("/usr/bin/chown", [`${relay.user}:`, relayDir]);
  await Deno.chmod(relayDir, 0o755);
  // Every variant's forced command appends the relay's peak RSS to its own file.
  const variant = async (name: string, reuse: boolean) => {
    const key = await relay.addKey(
      `restrict,command="${TIME} -a -f %M -o ${relayDir}/${name} ${DIST_RSENDMAIL}"`,
      BENCH_USER,
    );
    const conf = `${dir}/${name}.conf`;
    await Deno.writeTextFile(
      conf,
      [
        "# written by scripts/bench.ts",
        `host = ${relay.host}`,
        `user = ${relay.user}`,
        `port = ${relay.port}`,
        `identity = ${key}`,
        `known_hosts = ${relay.knownHosts}`,
        "queue = no", // one batch session per SMTP session (direct -bs)
        `reuse = ${reuse ? "yes" : "no"}`,
        "",
      ].join("\n"),
    );
    await run("/usr/bin/chown", [`${BENCH_USER}:`, conf]);
    return { name, conf, rss: `${relayDir}/${name}`, queueDir: `${dir}/queue-${name}` };
  };
  const msg = (id: string, i: number) => makeMessage(1024, `${runId} ${id} ${i}`, rcpt);
  const groups: MailGroup[] = [];
  try {
    await closeMasters(bed);
    const vSession = await variant("smtp", false);
    const vCold = await variant("seq-cold", false);
    const vWarm = await variant("seq-warm", true);
    const sessions: SmtpRun[] = [];
    const sessionRun = async (mode: "step" | "full", r: number) => {
      await progress(`smtp: ${n}-message -bs session (${mode}), run ${r + 1}/${opts.smtpRuns}`);
      const id = `smtp-${mode}`;
      const messages = Array.from({ length: n }, (_, i) => msg(id, r * n + i));
      const clientRss = `${dir}/client-${mode}-${r}`;
      const s = await smtpSession(
        asUser(TIME, ["-f", "%M", "-o", clientRss, DIST_SSHSENDMAIL, "-bs", "-i"], undefined, {
          SSHSENDMAIL_CONFIG: vSession.conf,
        }),
        mode,
        "bench.relay.test",
        SENDER,
        rcpt,
        messages,
        clientRss,
      );
      sessions.push(s);
    };
    const sequential = async (v: { conf: string }, id: string) => {
      const samples: Sample[] = [];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        if (i % 10 === 0) await progress(`smtp: ${id}, ${i}/${n}`);
        samples.push(
          await timeOnce(asUser(DIST_SSHSENDMAIL, ["-i", "-f", SENDER, "--", rcpt], msg(id, i), {
            SSHSENDMAIL_CONFIG: v.conf,
          })),
        );
      }
      return { id, samples, wallMs: performance.now() - t0 };
    };
    // Round-robin, so that drift in the load hits sessions and sequential sends alike.
    const seqs: { id: string; samples: Sample[]; wallMs: number; opener?: Sample }[] = [];
    for (let r = 0; r < opts.smtpRuns; r++) {
      await sessionRun("step", r);
      await sessionRun("full", r);
      if (r === 0) seqs.push(await sequential(vCold, "seq-cold"));
      if (r === 1 || (r === 0 && opts.smtpRuns === 1)) {
        // Warm-up send (untimed, not counted): opens the ControlPersist master.
        const w = await timeOnce(asUser(
          DIST_SSHSENDMAIL,
          ["-i", "-f", SENDER, "--", rcpt],
          msg("seq-warm-open", 0),
          { SSHSENDMAIL_CONFIG: vWarm.conf },
        ));
        seqs.push({ ...await sequential(vWarm, "seq-warm"), opener: w });
      }
    }
    await closeMasters(bed);
    await Deno.stderr.write(
      encoder.encode(`${Deno.stderr.isTerminal() ? "\n" : ""}smtp: done\n`),
    );

    // Mail accounting.
    for (const mode of ["step", "full"] as const) {
      const runs = sessions.filter((s) => s.mode === mode);
      groups.push({
        id: `smtp-${mode}`,
        label:
          `smtp-${mode}: ${runs.length} \`-bs\` sessions of ${n} (non-zero = no \`250 … sent as\`)`,
        sent: runs.length * n,
        failed: runs.reduce((a, s) => a + (n - s.sent), 0),
      });
    }
    const queuedCl: Record<string, number> = {};
    for (const s of seqs) {
      const v = s.id === "seq-cold" ? vCold : vWarm;
      queuedCl[s.id] = await countFiles(`${v.queueDir}/new`);
      const failed = s.samples.filter((x) => x.code !== 0).length;
      groups.push({
        id: s.id,
        label: `${s.id}: ${n} command-line sends`,
        sent: n,
        failed: failed + queuedCl[s.id]!,
      });
      if (failed > 0 || queuedCl[s.id]! > 0) {
        const f = s.samples.find((x) => x.code !== 0);
        report.findings.push(
          `smtp ${s.id}: ${failed} sends exited non-zero, ${queuedCl[s.id]} queued` +
            (f ? ` (exit ${f.code}: ${f.stderr.trim().split("\n")[0]})` : ""),
        );
      }
    }
    for (const s of seqs) {
      if (s.opener !== undefined) {
        groups.push({
          id: "seq-warm-open",
          label: "seq-warm-open: untimed send that opens the master",
          sent: 1,
          failed: s.opener.code === 0 ? 0 : 1,
        });
      }
    }
    for (const s of sessions) {
      if (s.code !== 0 || s.sent !== n) {
        report.findings.push(
          `smtp -bs (${s.mode}): exit ${s.code}, ${s.sent}/${n} relayed, ${s.queued} queued` +
            (s.refused.length ? `, e.g. ${s.refused[0]}` : "") +
            (s.stderr.trim() ? ` (${s.stderr.trim().split("\n")[0]})` : ""),
        );
      }
    }

    // Report.
    const sorted = (xs: number[]) => xs.slice().sort((a, b) => a - b);
    const sessionMs = (mode: "step" | "full") =>
      sorted(sessions.filter((s) => s.mode === mode).map((s) => s.ms));
    const step = sessionMs("step");
    const full = sessionMs("full");
    const stepPer = quantile(step, 0.5) / n;
    const fullPer = quantile(full, 0.5) / n;
    const range = (xs: number[]) =>
      xs.length > 1 ? ` (${xs.map((x) => (x / 1000).toFixed(2)).join(", ")})` : "";
    const cold = seqs.find((s) => s.id === "seq-cold")!;
    const warm = seqs.find((s) => s.id === "seq-warm")!;
    const seqPer = (s: typeof cold) => s.wallMs / n;
    const seqMed = (s: typeof cold) => quantile(sorted(s.samples.map((x) => x.ms)), 0.5);
    const verdict = (per: number) => (per / stepPer >= TARGETS.smtpSpeedup ? "met" : "MISSED");
    const rows: string[][] = [
      [
        `ours: ${n} messages in one \`sshsendmail -bs\` session, a reply awaited per message (MAIL/RCPT/DATA pipelined)`,
        `${(quantile(step, 0.5) / 1000).toFixed(2)}${range(step)}`,
        fmt(stepPer),
        "1.00×",
        "",
        "",
      ],
      [
        `ours: ${n} messages in one \`sshsendmail -bs\` session, whole dialogue written at once`,
        `${(quantile(full, 0.5) / 1000).toFixed(2)}${range(full)}`,
        fmt(fullPer),
        `${(fullPer / stepPer).toFixed(2)}×`,
        "",
        "",
      ],
      [
        `ours: ${n} sequential \`sshsendmail -i rcpt\`, cold (\`reuse = no\`, the default)`,
        (cold.wallMs / 1000).toFixed(2),
        fmt(seqPer(cold)),
        `${(seqPer(cold) / stepPer).toFixed(1)}×`,
        `≥ ${TARGETS.smtpSpeedup}×`,
        verdict(seqPer(cold)),
      ],
      [
        `ours: ${n} sequential \`sshsendmail -i rcpt\`, warm (\`reuse = yes\`, master already open)`,
        (warm.wallMs / 1000).toFixed(2),
        fmt(seqPer(warm)),
        `${(seqPer(warm) / stepPer).toFixed(1)}×`,
        `≥ ${TARGETS.smtpSpeedup}×`,
        verdict(seqPer(warm)),
      ],
    ];
    const relayOf = async (name: string) => sorted(await readRssAllKiB(`${relayDir}/${name}`));
    const rssSession = await relayOf("smtp");
    const rssCold = await relayOf("seq-cold");
    const rssWarm = await relayOf("seq-warm");
    const clientOf = (mode: "step" | "full") =>
      sorted(sessions.filter((s) => s.mode === mode).map((s) => s.clientKiB));
    const rssRow = (label: string, xs: number[]) => [
      label,
      String(xs.length),
      mib(quantile(xs, 0.5)),
      mib(xs[xs.length - 1] ?? NaN),
    ];
    const marginalStep = (quantile(step, 0.5) - seqMed(cold)) / (n - 1);
    report.sections.push(
      [
        `### 4. SMTP mode: ${n} ~1 KB messages in one \`sshsendmail -bs\` session vs ${n} command-line sends`,
        "",
        table(
          ["client", "wall (s)", "ms per message", "÷ session's ms per message", "target", "ours"],
          rows,
        ),
        "",
        `Per message = wall / ${n}; the session's wall runs from spawn to exit of the one ` +
        `client (greeting to \`221\`), median of ${opts.smtpRuns} session${
          opts.smtpRuns === 1 ? "" : "s"
        } per mode (each in brackets); the sequential rows are one pass of ${n} sends each ` +
        `(median per send: cold ${fmt(seqMed(cold))} ms, warm ${fmt(seqMed(warm))} ms, ` +
        `the harness's gap between sends included in the wall). All as ${BENCH_USER} through ` +
        `setpriv; the session's client and every relay ran under \`${TIME}\`. ` +
        `Against one cold send, each further message in a session costs about ${
          fmt(marginalStep)
        } ms (session median minus one cold send, over ${n - 1}).`,
        "",
        table(
          ["peak RSS (MiB)", "processes", "median", "max"],
          [
            rssRow(`relay rsendmail --batch, one per ${n}-message session`, rssSession),
            rssRow("relay rsendmail, one per cold command-line send", rssCold),
            rssRow("relay rsendmail, one per warm command-line send", rssWarm),
            rssRow(`client sshsendmail -bs, reply awaited per message`, clientOf("step")),
            rssRow(`client sshsendmail -bs, whole dialogue at once`, clientOf("full")),
          ],
        ),
      ].join("\n"),
    );
    for (const [label, per] of [["cold", seqPer(cold)], ["warm", seqPer(warm)]] as const) {
      if (per / stepPer < TARGETS.smtpSpeedup) {
        report.findings.push(
          `smtp: the -bs session is only ${(per / stepPer).toFixed(1)}× faster per message ` +
            `than ${label} command-line sends (target ≥ ${TARGETS.smtpSpeedup}×)`,
        );
      }
    }
    return groups;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(relayDir, { recursive: true }).catch(() => {});
  }
}

async function build(): Promise<void> {
  const deno = Deno.execPath();
  await run(deno, [
    "run",
    "--allow-read=.",
    "--allow-write=dist",
    `--allow-run=${deno}`,
    "--allow-env",
    "scripts/build.ts",
  ]);
}

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  Deno.chdir(ROOT);
  if (Deno.uid() !== 0) throw new Error("bench needs root (test accounts, sshd, Postfix)");
  if (opts.build) await build();
  const shebangDeno = /^#!\/usr\/bin\/env -S (?:[^/ ]\S* )*(\/\S+)/.exec(
    (await Deno.readTextFile(DIST_RSENDMAIL)).split("\n", 1)[0]!,
  )?.[1] ?? Deno.execPath();
  const postfix = await startPostfix();
  const box = postfix.mailbox(BENCH_USER);
  const rcpt = `${BENCH_USER}@${postfix.domain}`;
  const runId = `r${Date.now().toString(36)}`;
  const [dv, cpu, pyv, devLog, sshv] = await Promise.all([
    denoVersion(shebangDeno),
    cpuModel(),
    run("/usr/bin/python3", ["--version"]).then((r) => r.stdout.trim()),
    exists("/dev/log"),
    run("/usr/bin/ssh", ["-V"], { check: false }).then((r) => r.stderr.trim().split(",")[0]),
  ]);
  const report: Report = {
    env: `${dv} · ${navigator.hardwareConcurrency} CPUs (${cpu}) · Linux ${Deno.osRelease()} · ` +
      `${pyv} · ${sshv} · load ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")} · ` +
      `/dev/log ${devLog ? "present" : "absent (no syslog listener)"} · ` +
      `${opts.warmup} warm-up + ${opts.runs} measured rounds, round-robin`,
    sections: [],
    findings: [],
  };
  const all: Case[] = [];
  const groups: MailGroup[] = [];
  let text: string | undefined;
  let broken = false;
  if (opts.only !== "service") {
    if (opts.only === undefined || opts.only === "relay") {
      all.push(...await benchRelay(opts, runId, rcpt, report));
    }
    if (opts.only !== "relay") {
      await withBed(async (bed) => {
        let oursCold: number | undefined;
        if (opts.only === undefined || opts.only === "e2e") {
          const cases = await benchE2e(opts, runId, rcpt, report, bed);
          all.push(...cases);
          oursCold = med(cases.find((c) => c.id === "ours-cold")!);
        }
        // The offline queue's --flush is the satellite service's now: its
        // burst and warm-latency figures are in the service section.
        void oursCold;
        if (opts.only === undefined || opts.only === "smtp") {
          groups.push(...await benchSmtp(opts, runId, rcpt, report, bed));
        }
      });
    }

    // Delivery check: every successful send must have landed, each message exactly once.
    for (const c of all) {
      if (c.mail) {
        groups.push({
          id: c.id,
          label: c.id,
          sent: opts.warmup + opts.runs,
          failed: c.failures.length,
        });
      }
    }
    const expected = new Map(groups.map((g) => [g.id, g.sent - g.failed]));
    const got = await collectMail(box.dir, runId, expected);
    const delivery = deliveryTable(groups, got);
    const deliveryRows = delivery.rows;
    report.sections.push(
      [
        `### Delivery check (Maildir of ${rcpt}, after the timed runs; every message carries a unique tag)`,
        "",
        delivery.text,
      ].join("\n"),
    );
    for (const c of all) {
      if (c.failures.length > 0) {
        report.findings.push(`${c.id}: ${c.failures.length} failed runs, e.g. ${c.failures[0]}`);
      }
    }
    if (deliveryRows.some((r) => r[6] !== "ok")) {
      report.findings.push("some messages did not arrive exactly once");
    }

    text = [
      `Environment: ${report.env}`,
      "",
      ...report.sections.flatMap((s) => [s, ""]),
      report.findings.length
        ? `Findings:\n${report.findings.map((f) => `- ${f}`).join("\n")}`
        : "All targets met.",
    ].join("\n");
    console.log(text);
    broken = groups.some((g) => g.failed > 0) || deliveryRows.some((r) => r[6] !== "ok");
  }
  let service: string | undefined;
  if (opts.only === undefined || opts.only === "service") {
    const svc = await benchService(
      opts.service,
      runId,
      `${dv} · ${navigator.hardwareConcurrency} CPUs (${cpu}) · Linux ${Deno.osRelease()} · ${sshv} · ` +
        `/dev/log ${devLog ? "present" : "absent (the service's logger(1) lines go nowhere)"}`,
    );
    service = svc.text;
    broken ||= svc.broken;
    console.log(`${text === undefined ? "" : "\n"}${service}`);
  }
  if (opts.writeDocs) {
    // The service section runs from its heading to the next `## ` heading; what
    // follows it (hand-written notes) is kept.
    const path = `${ROOT}/docs/benchmarks.md`;
    const old = await Deno.readTextFile(path).catch(() => "");
    const at = old.indexOf(`\n${SERVICE_HEADING}`);
    const end = at < 0 ? -1 : old.indexOf("\n## ", at + 1);
    const oldService = at < 0 ? undefined : old.slice(at + 1, end < 0 ? undefined : end).trimEnd();
    const after = end < 0 ? "" : old.slice(end + 1).trimEnd();
    const classic = text === undefined ? (at < 0 ? old : old.slice(0, at)).trimEnd() : [
      "# Benchmarks",
      "",
      "Generated by `deno task bench --write-docs` (scripts/bench.ts); every number below comes",
      "from one run. Wall time from spawn to exit of the command, medians; Postfix delivers",
      "asynchronously, so delivery is checked afterwards (last table). The satellite service",
      "has its own section (scripts/bench_service.ts; `--only service` reruns just that one).",
      "",
      text,
    ].join("\n");
    const parts = [classic, service ?? oldService, after].filter((x) =>
      x !== undefined && x !== ""
    );
    await Deno.writeTextFile(path, `${parts.join("\n\n")}\n`);
  }
  return broken ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
