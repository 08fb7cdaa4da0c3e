/**
 * The integration tier's harness: runs the BUILT programs (dist/rsendmail,
 * dist/sshsendmail) end to end with no daemons and no root, in the style of
 * rsync's rrsync tests.
 *
 * - A fake `ssh` (fake_ssh.sh) takes the client's ssh argv, skips the
 *   transport options, sets SSH_ORIGINAL_COMMAND and SSH_CONNECTION and execs
 *   dist/rsendmail with the key's admin options, as sshd runs a forced command.
 * - A recording `sendmail` (fake_sendmail.sh) writes its argv, environment
 *   and stdin into the case directory and exits with the case's code.
 * - The programs may run only /usr/sbin/sendmail and /usr/bin/ssh (their
 *   Deno permissions, scripts/permissions.ts): every case runs inside
 *   `unshare --user --map-root-user --mount`, where namespace.sh bind-mounts
 *   the two scripts over those paths, then runs the program in a nested user
 *   namespace as uid 65534 (an ordinary account, as in production). An
 *   ordinary user may do all that where the kernel allows unprivileged user
 *   namespaces (Debian 11+ does by default); nothing outside the namespace
 *   changes, and no root is needed.
 * - Every child starts with an empty environment (Deno's clearEnv, as
 *   `env -i`), plus only what the case names.
 * - The relay's syslog lines go to a recording socket in the case directory
 *   (`--syslog-socket`): logger(1) falls back to a stream socket. Deno 2.9
 *   scopes a Unix socket's permission to its exact path, and the path is
 *   random, hence the test's plain --allow-net (it already may run unshare,
 *   which runs anything).
 *
 * Cases are tables shaped like Deno's own `__test__.jsonc` spec files (see
 * relay_cases.jsonc): `args`, `env`, `stdin`, `exitCode`, `stdout` and
 * `stderr` with `[WILDCARD]`/`[WILDLINE]`, plus what the fakes recorded.
 *
 * Everything is written under one temporary directory in /tmp (the relay's
 * permissions allow writes only under /tmp and /var/tmp), removed at the end.
 * No product module is imported: the tier drives the built files only.
 *
 * @module
 */

import assert from "node:assert/strict";

/** The checkout this file belongs to. */
export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** The built relay. */
export const RSENDMAIL = `${ROOT}/dist/rsendmail`;
/** The built client. */
export const SSHSENDMAIL = `${ROOT}/dist/sshsendmail`;
/** Where the fakes' templates live. */
const HERE = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const NAMESPACE_SH = `${HERE}/namespace.sh`;
const UNSHARE = "/usr/bin/unshare";
/** `unshare --user --map-root-user --mount`, spelt out. */
const UNSHARE_ARGS = ["--user", "--map-root-user", "--mount"];
/** How long one program may take before the case fails (a hang, not a slow machine). */
const RUN_TIMEOUT_MS = 30_000;
/** Paths written into the fakes unquoted: only these characters. */
const SAFE_PATH_REGEXP = /^\/[A-Za-z0-9._\/-]+$/;
/** The relay's admin options every case gets first: its state and syslog stay in the case. */
const BED_RELAY_ARGS = ["--state-dir", "{{dir}}/state", "--syslog-socket", "{{dir}}/log.sock"];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ------------------------------------------------------------------ the table

/** How the fake ssh behaves in one case. */
export interface FakeSsh {
  /** Exported to the relay: what an sshd's AcceptEnv would let through. */
  env?: Record<string, string>;
  /** ssh fails by itself with this code (the relay never runs). */
  exit?: number;
  /** ssh's own stderr when it fails by itself. */
  stderr?: string;
  /** Only this many bytes of stdin reach the relay. */
  truncate?: number;
  /** Every `a` on stdin reaches the relay as `b` (same size, other bytes). */
  corrupt?: boolean;
  /** Printed on stdout before the relay starts (a login banner). */
  stdout?: string;
  /** `"without-env-i"`: start the bundle with its own first line minus env's -i. */
  launcher?: "without-env-i";
}

/** How the recording sendmail behaves in one case. */
export interface FakeSendmail {
  exit?: number;
  stderr?: string;
}

/** One recorded call of a fake, as expected: every string a pattern. */
export interface ExpectedCall {
  /** The whole argv, `$0` first, word by word. */
  argv?: string[];
  /** The environment it started with, sorted, exactly. */
  env?: string[];
  /** What it read on stdin. */
  stdin?: string;
  /** ssh only: the remote command (the last word). */
  command?: string;
}

/**
 * One row. Strings may hold `{{dir}}` (the case directory), `{{size}}` and
 * `{{sha256}}` (of `stdin`); expected strings may hold `[WILDCARD]` (any
 * text) and `[WILDLINE]` (the rest of a line).
 */
export interface Case {
  /** sshsendmail's arguments: the client runs, with the fake ssh as /usr/bin/ssh. */
  args?: string[];
  /** Without `args`: the remote command given to the fake ssh (null: none). */
  request?: string | null;
  /** The forced command's admin options (after the bed's --state-dir and --syslog-socket). */
  relay?: string[];
  /** Written to {{dir}}/sshsendmail.conf. */
  config?: string;
  /** The program's whole environment (default: empty). */
  env?: Record<string, string>;
  stdin?: string;
  fakeSsh?: FakeSsh;
  fakeSendmail?: FakeSendmail;
  /** Run the same thing this many times (the outcome is the last run's). */
  runs?: number;
  exitCode?: number;
  stdout?: string;
  stderr?: string;
  /** The relay's syslog lines, all of them. */
  log?: string;
  /** Every call of the recording sendmail, in order ([]: it never ran). */
  sendmail: ExpectedCall[];
  /** Every call of the fake ssh (client cases), in order. */
  ssh?: ExpectedCall[];
  /** The row that differs only by the attack and succeeds (required when mail is refused). */
  control?: string;
  /** Why the row is there, for the reader. */
  why?: string;
}

const CASE_KEYS = new Set([
  "args",
  "request",
  "relay",
  "config",
  "env",
  "stdin",
  "fakeSsh",
  "fakeSendmail",
  "runs",
  "exitCode",
  "stdout",
  "stderr",
  "log",
  "sendmail",
  "ssh",
  "control",
  "why",
]);
const FAKE_SSH_KEYS = new Set([
  "env",
  "exit",
  "stderr",
  "truncate",
  "corrupt",
  "stdout",
  "launcher",
]);
const FAKE_SENDMAIL_KEYS = new Set(["exit", "stderr"]);
const CALL_KEYS = new Set(["argv", "env", "stdin", "command"]);

/**
 * JSON with `//` and `/* *\/` comments (no trailing commas), as Deno's
 * `__test__.jsonc` files are written.
 */
export function parseJsonc(text: string): unknown {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
      out += text.slice(start, i + 1);
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) throw new SyntaxError("unterminated comment");
      out += text.slice(i, end + 2).replace(/[^\n]/g, " ");
      i = end + 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out);
}

function checkKeys(where: string, value: unknown, keys: Set<string>): void {
  assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), where);
  for (const key of Object.keys(value)) {
    assert.ok(keys.has(key), `${where}: unknown key ${JSON.stringify(key)}`);
  }
}

/**
 * Reads a case table (`{"tests": {name: case}}`), refusing unknown keys (a
 * misspelt expectation would otherwise be silently unchecked) and refusal
 * rows without a positive control.
 */
export async function loadCases(file: string): Promise<Record<string, Case>> {
  const table = parseJsonc(await Deno.readTextFile(`${HERE}/${file}`)) as {
    tests: Record<string, Case>;
  };
  checkKeys(file, table, new Set(["tests"]));
  for (const [name, c] of Object.entries(table.tests)) {
    const where = `${file}: ${name}`;
    checkKeys(where, c, CASE_KEYS);
    if (c.fakeSsh) checkKeys(`${where}: fakeSsh`, c.fakeSsh, FAKE_SSH_KEYS);
    if (c.fakeSendmail) checkKeys(`${where}: fakeSendmail`, c.fakeSendmail, FAKE_SENDMAIL_KEYS);
    assert.ok(Array.isArray(c.sendmail), `${where}: say what sendmail received ([] for nothing)`);
    for (const call of [...c.sendmail, ...(c.ssh ?? [])]) {
      checkKeys(`${where}: call`, call, CALL_KEYS);
    }
    assert.ok((c.args === undefined) !== (c.request === undefined), `${where}: args or request`);
    if (c.sendmail.length === 0) {
      assert.ok(c.control, `${where}: a refusal needs a positive control beside it`);
    }
    if (c.control !== undefined) {
      const control = table.tests[c.control];
      assert.ok(control, `${where}: no control row ${JSON.stringify(c.control)}`);
      assert.ok(
        (control.exitCode ?? 0) === 0 && control.sendmail.length > 0,
        `${where}: its control ${JSON.stringify(c.control)} must deliver`,
      );
    }
  }
  return table.tests;
}

// ---------------------------------------------------------------- matching

/**
 * True when `actual` matches `pattern`: literal text where `[WILDCARD]`
 * matches anything (newlines too) and `[WILDLINE]` the rest of a line, as
 * in Deno's spec tests. Computed as the set of positions each piece can end
 * at, so no pattern can make it backtrack for ever.
 */
export function matchesPattern(pattern: string, actual: string): boolean {
  const n = actual.length;
  let can = Array.from({ length: n + 1 }, (_, p) => p === 0);
  for (const piece of pattern.split(/(\[WILDCARD\]|\[WILDLINE\])/)) {
    if (piece === "") continue;
    const next = new Array<boolean>(n + 1).fill(false);
    if (piece === "[WILDCARD]" || piece === "[WILDLINE]") {
      let on = false;
      for (let p = 0; p <= n; p++) {
        if (piece === "[WILDLINE]" && p > 0 && actual[p - 1] === "\n") on = false;
        on ||= can[p]!;
        next[p] = on;
      }
    } else {
      for (let p = 0; p + piece.length <= n; p++) {
        if (can[p] && actual.startsWith(piece, p)) next[p + piece.length] = true;
      }
    }
    can = next;
  }
  return can[n]!;
}

// ---------------------------------------------------------------- running

/** One recorded call of a fake. */
export interface Call {
  argv: string[];
  env: string[];
  stdin: string;
}

/** What one case did. */
export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  log: string;
  sendmail: Call[];
  ssh: Call[];
}

/** Replaces `{{dir}}`, `{{size}}` and `{{sha256}}` in every string of `value`. */
function substitute<T>(value: T, vars: Record<string, string>): T {
  if (typeof value === "string") {
    return value.replace(/\{\{(\w+)\}\}/g, (m, name: string) => vars[name] ?? m) as T;
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, vars)) as T;
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substitute(v, vars)]),
    ) as T;
  }
  return value;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The words of a bundle's first line: `#!/usr/bin/env -S WORD…` (the build never quotes). */
export async function shebangWords(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  const line = text.slice(0, text.indexOf("\n"));
  const prefix = "#!/usr/bin/env -S ";
  assert.ok(line.startsWith(prefix), `${path}: first line is not ${prefix}…`);
  return line.slice(prefix.length).split(" ");
}

/** The Deno the bundle's first line runs. */
export async function interpreterOf(path: string): Promise<string> {
  const words = await shebangWords(path);
  const deno = words.find((w) => w.startsWith("/"));
  assert.ok(deno, `${path}: no interpreter in the first line`);
  return deno;
}

/** Writes a fake from its template with the case's paths in place. */
async function writeFake(
  template: string,
  dest: string,
  vars: Record<string, string>,
): Promise<void> {
  let text = await Deno.readTextFile(`${HERE}/${template}`);
  for (const [name, value] of Object.entries(vars)) {
    assert.match(value, SAFE_PATH_REGEXP, `${name} must be a plain absolute path`);
    text = text.replaceAll(`@${name}@`, value);
  }
  await Deno.writeTextFile(dest, text, { mode: 0o755 });
  await Deno.chmod(dest, 0o755);
}

/** Reads the calls a fake recorded as `PREFIX.N.argv` (and .env, .stdin). */
async function readCalls(dir: string, prefix: string): Promise<Call[]> {
  const calls: Call[] = [];
  const words = (text: string) => text.split("\0").slice(0, -1);
  for (let n = 1;; n++) {
    const base = `${dir}/${prefix}.${n}`;
    let argv: string;
    try {
      argv = await Deno.readTextFile(`${base}.argv`);
    } catch {
      return calls;
    }
    const read = (suffix: string) => Deno.readTextFile(`${base}.${suffix}`).catch(() => "");
    calls.push({
      argv: words(argv),
      env: words(await read("env")).sort(),
      stdin: await read("stdin"),
    });
  }
}

/**
 * The recording syslog: a stream socket at `path` whose lines are kept.
 * `close()` first sends a marker through the socket itself: connections are
 * accepted in order, so once the marker is in, every logger(1) connection
 * made before it has been accepted and read.
 */
function recordSyslog(path: string) {
  const listener = Deno.listen({ transport: "unix", path });
  const marker = `--end-of-log-${crypto.randomUUID()}--`;
  let text = "";
  let markerSeen!: () => void;
  const sawMarker = new Promise<void>((resolve) => (markerSeen = resolve));
  const reads: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      reads.push((async () => {
        let got = "";
        for await (const chunk of conn.readable) got += decoder.decode(chunk, { stream: true });
        if (got === marker) markerSeen();
        else text += got;
      })());
    }
  })();
  return {
    /**
     * `lines`: how many lines the case expects. The relay hands its lines to
     * logger(1) and exits without waiting for it, so a logger may connect
     * after the relay ended: wait (up to 5 s) for them before the marker.
     */
    async close(lines = 0): Promise<string> {
      for (let waited = 0; waited < 5000 && text.split("\n").length - 1 < lines; waited += 10) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const conn = await Deno.connect({ transport: "unix", path });
      await conn.write(encoder.encode(marker));
      conn.close();
      await sawMarker;
      listener.close();
      await accepting;
      await Promise.all(reads);
      return text;
    },
  };
}

/** Runs argv inside a fresh user+mount namespace set up by namespace.sh for `dir`. */
export async function runInNamespace(
  dir: string,
  argv: string[],
  options: { env?: Record<string, string>; stdin?: Uint8Array } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(UNSHARE, {
    args: [...UNSHARE_ARGS, "/bin/sh", NAMESPACE_SH, dir, ...argv],
    clearEnv: true,
    env: options.env ?? {},
    cwd: dir,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).spawn();
  // Output is read while stdin is written: neither side can fill a pipe and wait.
  const output = child.output();
  const writer = child.stdin.getWriter();
  // A program that refuses early never reads its input: EPIPE is no failure.
  await writer.write(options.stdin ?? new Uint8Array()).catch(() => {});
  await writer.close().catch(() => {});
  const out = await output;
  return {
    code: out.signal === null ? out.code : -1,
    stdout: decoder.decode(out.stdout),
    stderr: `${decoder.decode(out.stderr)}${
      out.signal === null ? "" : `[killed by ${out.signal}]`
    }`,
  };
}

/**
 * Why this machine cannot run the tier, or undefined when it can: an
 * unprivileged user namespace with a private mount namespace, and the
 * built programs.
 */
export async function cannotRun(): Promise<string | undefined> {
  for (const path of [RSENDMAIL, SSHSENDMAIL]) {
    try {
      await Deno.stat(path);
    } catch {
      return `${path} is missing: run ./node_modules/.bin/deno task build first`;
    }
  }
  try {
    const out = await new Deno.Command(UNSHARE, {
      args: [...UNSHARE_ARGS, "/usr/bin/mount", "-t", "tmpfs", "rsm-int", "/tmp"],
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      return `unshare --user --map-root-user --mount failed (${
        decoder.decode(out.stderr).trim()
      }): this tier needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)`;
    }
  } catch (err) {
    return `cannot run ${UNSHARE}: ${err}`;
  }
  return undefined;
}

/** One temporary directory for a table's cases, and the runner. */
export class Bed {
  readonly root: string;
  #n = 0;

  private constructor(root: string) {
    this.root = root;
  }

  /** Checks the machine and makes the temporary directory (in /tmp: see the module doc). */
  static async open(): Promise<Bed> {
    const why = await cannotRun();
    if (why !== undefined) throw new Error(`integration tier cannot run here: ${why}`);
    return new Bed(await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-int-" }));
  }

  /** A fresh case directory holding the two fakes. */
  async caseDir(fakeSsh: FakeSsh = {}, fakeSendmail: FakeSendmail = {}): Promise<string> {
    const dir = `${this.root}/${String(++this.#n).padStart(3, "0")}`;
    await Deno.mkdir(dir);
    await Deno.mkdir(`${dir}/state`, { mode: 0o700 });
    await writeFake("fake_sendmail.sh", `${dir}/fake_sendmail.sh`, { CASE: dir });
    await writeFake("fake_ssh.sh", `${dir}/fake_ssh.sh`, { CASE: dir, RELAY: RSENDMAIL });
    const put = (name: string, text: string) => Deno.writeTextFile(`${dir}/${name}`, text);
    if (fakeSsh.env) {
      await put(
        "ssh.env",
        Object.entries(fakeSsh.env).map(([k, v]) => `${k}=${v}\n`).join(""),
      );
    }
    if (fakeSsh.exit !== undefined) await put("ssh.exit", `${fakeSsh.exit}\n`);
    if (fakeSsh.stderr !== undefined) await put("ssh.stderr", fakeSsh.stderr);
    if (fakeSsh.truncate !== undefined) await put("ssh.truncate", `${fakeSsh.truncate}\n`);
    if (fakeSsh.corrupt) await put("ssh.corrupt", "");
    if (fakeSsh.stdout !== undefined) await put("ssh.stdout", fakeSsh.stdout);
    if (fakeSsh.launcher === "without-env-i") {
      // The bundle's own first line (env -S …) with env's -i taken out.
      const words = (await shebangWords(RSENDMAIL)).filter((w) => w !== "-i");
      await put("relay.launch", `/usr/bin/env\n-S\n${words.join(" ")}\n`);
    }
    if (fakeSendmail.exit !== undefined) await put("sendmail.exit", `${fakeSendmail.exit}\n`);
    if (fakeSendmail.stderr !== undefined) await put("sendmail.stderr", fakeSendmail.stderr);
    return dir;
  }

  /** Runs one row and returns what happened, with its placeholders filled in. */
  async run(raw: Case): Promise<{ c: Case; outcome: Outcome }> {
    const stdinText = raw.stdin ?? "";
    const stdin = encoder.encode(stdinText);
    const dir = `${this.root}/${String(this.#n + 1).padStart(3, "0")}`;
    const c = substitute(raw, {
      dir,
      size: String(stdin.length),
      sha256: await sha256Hex(stdin),
    });
    assert.equal(await this.caseDir(c.fakeSsh, c.fakeSendmail), dir);
    await Deno.writeTextFile(
      `${dir}/relay.args`,
      [...substitute(BED_RELAY_ARGS, { dir }), ...(c.relay ?? ["--label", "t"])]
        .map((a) => `${a}\n`).join(""),
    );
    if (c.config !== undefined) await Deno.writeTextFile(`${dir}/sshsendmail.conf`, c.config);
    // Without `args`, the test itself is the ssh user: the fake on /usr/bin/ssh.
    const argv = c.args !== undefined ? [SSHSENDMAIL, ...c.args] : [
      "/usr/bin/ssh",
      "-T",
      "--",
      "relay.example",
      ...(c.request === null ? [] : [c.request!]),
    ];
    const syslog = recordSyslog(`${dir}/log.sock`);
    let result = { code: -1, stdout: "", stderr: "" };
    let log = "";
    try {
      for (let i = 0; i < (c.runs ?? 1); i++) {
        result = await runInNamespace(dir, argv, { env: c.env ?? {}, stdin });
      }
    } finally {
      log = await syslog.close((c.log ?? "").split("\n").length - 1);
    }
    const outcome = {
      ...result,
      log,
      sendmail: await readCalls(dir, "sendmail"),
      ssh: await readCalls(dir, "ssh"),
    };
    return { c, outcome };
  }

  /** Removes the temporary directory. */
  async close(): Promise<void> {
    await Deno.remove(this.root, { recursive: true });
  }
}

// ---------------------------------------------------------------- asserting

function matchOrFail(what: string, pattern: string, actual: string, context: string): void {
  if (!matchesPattern(pattern, actual)) {
    assert.fail(
      `${what} differs\n  expected: ${JSON.stringify(pattern)}\n  actual:   ${
        JSON.stringify(actual)
      }\n${context}`,
    );
  }
}

function checkCalls(
  what: string,
  expected: ExpectedCall[],
  actual: Call[],
  context: string,
): void {
  assert.equal(
    actual.length,
    expected.length,
    `${what} ran ${actual.length} times, expected ${expected.length}\n${context}`,
  );
  expected.forEach((want, i) => {
    const got = actual[i]!;
    const name = `${what} call ${i + 1}`;
    if (want.argv) {
      assert.equal(
        got.argv.length,
        want.argv.length,
        `${name}: argv ${JSON.stringify(got.argv)}, expected ${JSON.stringify(want.argv)}`,
      );
      want.argv.forEach((p, j) => matchOrFail(`${name}: argv[${j}]`, p, got.argv[j]!, context));
    }
    if (want.env) {
      assert.deepEqual(got.env, [...want.env].sort(), `${name}: environment\n${context}`);
    }
    if (want.stdin !== undefined) matchOrFail(`${name}: stdin`, want.stdin, got.stdin, context);
    if (want.command !== undefined) {
      matchOrFail(`${name}: remote command`, want.command, got.argv.at(-1) ?? "", context);
    }
  });
}

/** Asserts one row's expectations (placeholders already filled in) against its outcome. */
export function assertOutcome(c: Case, o: Outcome): void {
  const context = `  outcome: ${JSON.stringify(o, null, 2).replaceAll("\n", "\n  ")}`;
  assert.equal(
    o.code,
    c.exitCode ?? 0,
    `exit code ${o.code}, expected ${c.exitCode ?? 0}\n${context}`,
  );
  matchOrFail("stderr", c.stderr ?? "", o.stderr, context);
  matchOrFail("stdout", c.stdout ?? "", o.stdout, context);
  if (c.log !== undefined) matchOrFail("syslog", c.log, o.log, context);
  checkCalls("sendmail", c.sendmail, o.sendmail, context);
  if (c.ssh !== undefined) checkCalls("ssh", c.ssh, o.ssh, context);
}
