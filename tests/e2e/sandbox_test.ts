/**
 * The permission sandbox of each built artefact: the exact flags in the
 * shebang of dist/rsendmail and dist/sshsendmail are the ones kept in
 * scripts/permissions.ts, and a probe run under those same flags is refused
 * everything outside them (attack: code execution inside the relay or the
 * client trying to run a shell, read secrets, or reach the network), while
 * what the programs need stays granted (positive controls).
 *
 * @module
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  CLIENT_FLAGS,
  RUN_FLAGS,
  SERVER_FLAGS,
  SERVER_LAUNCH,
  SERVER_TUNING,
} from "../../scripts/permissions.ts";
import { ROOT as root } from "./_bed.ts";

/** The deno path and flags of an artefact's first line (after env's launcher words). */
async function shebangOf(path: string): Promise<string[]> {
  return (await launchOf(path)).rest;
}

/** The first line split: env's launcher words, then deno and its flags. */
async function launchOf(path: string): Promise<{ launch: string[]; rest: string[] }> {
  const head = (await Deno.readTextFile(path)).split("\n", 1)[0]!;
  const parts = head.replace(/^#!\/usr\/bin\/env -S /, "").split(" ");
  const at = parts.findIndex((p) => p.startsWith("/"));
  return { launch: parts.slice(0, at), rest: parts.slice(at) };
}

/** Runs a JS probe with exactly the artefact's deno and flags; returns its JSON verdicts. */
async function probe(program: string, code: string): Promise<Record<string, string>> {
  const [deno, ...flags] = await shebangOf(`${root}/dist/${program}`);
  const dir = await Deno.makeTempDir({ prefix: "rsm-sandbox-" });
  const file = `${dir}/probe`;
  await Deno.writeTextFile(file, code);
  const out = await new Deno.Command(deno!, {
    args: ["run", ...flags, file],
    stdout: "piped",
    stderr: "piped",
    env: { SSH_ORIGINAL_COMMAND: "x", HOME: "/root" },
  }).output();
  await Deno.remove(dir, { recursive: true });
  const text = new TextDecoder().decode(out.stdout);
  ok(out.success, `probe failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text);
}

const PROBE_LIB = `
const verdict = {};
async function attempt(name, fn) {
  try { await fn(); verdict[name] = "granted"; }
  catch (e) { verdict[name] = (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) ? "denied" : "granted:" + e.name; }
}
const run = (p, args = []) => new Deno.Command(p, { args, stdout: "null", stderr: "null", stdin: "null" }).output();
`;

Deno.test("dist/ artefacts carry exactly the permission flags of scripts/permissions.ts", async () => {
  const server = await shebangOf(`${root}/dist/rsendmail`);
  const client = await shebangOf(`${root}/dist/sshsendmail`);
  // The tuning flags are left out where the line would not fit (scripts/build.ts).
  const tuned = server.includes(SERVER_TUNING[0]!);
  deepStrictEqual(server.slice(1), [
    ...RUN_FLAGS,
    ...(tuned ? SERVER_TUNING : []),
    ...SERVER_FLAGS,
  ]);
  deepStrictEqual(client.slice(1), [...RUN_FLAGS, ...CLIENT_FLAGS]);
  deepStrictEqual((await launchOf(`${root}/dist/rsendmail`)).launch, [...SERVER_LAUNCH]);
  deepStrictEqual((await launchOf(`${root}/dist/sshsendmail`)).launch, []);
  for (const flags of [server, client]) {
    ok(!flags.some((f) => f === "-A" || f.startsWith("--allow-all")), "never -A");
    ok(flags[0]!.startsWith("/"), "the runtime is reached by an absolute path, not PATH");
  }
});

Deno.test("rsendmail's sandbox refuses a shell, other programs, secrets, the network", async () => {
  const v = await probe(
    "rsendmail",
    PROBE_LIB + `
await attempt("run /bin/sh", () => run("/bin/sh", ["-c", "true"]));
await attempt("run sh by name", () => run("sh"));
await attempt("run /usr/bin/ssh", () => run("/usr/bin/ssh", ["-V"]));
await attempt("run /bin/sendmail (other path)", () => run("/usr/lib/sendmail", ["-bv", "x"]));
await attempt("read /etc/passwd", () => Deno.readTextFile("/etc/passwd"));
await attempt("read /etc/shadow", () => Deno.readTextFile("/etc/shadow"));
await attempt("read ~/.ssh", () => Deno.readDir("/root/.ssh")[Symbol.asyncIterator]().next());
await attempt("write /etc/x", () => Deno.writeTextFile("/etc/rsm-sandbox-x", "x"));
await attempt("write /usr/sbin/sendmail", () => Deno.writeTextFile("/usr/sbin/sendmail", "x", { append: true }));
await attempt("tcp 127.0.0.1:22", () => Deno.connect({ hostname: "127.0.0.1", port: 22 }));
await attempt("listen tcp", () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
await attempt("env HOME", () => { Deno.env.get("HOME"); });
await attempt("env LD_PRELOAD", () => { Deno.env.get("LD_PRELOAD"); });
await attempt("ffi", () => Deno.dlopen("/lib/x86_64-linux-gnu/libc.so.6", {}));
// positive controls: what the relay needs
await attempt("env R", () => { Deno.env.get("R"); });
await attempt("env SSH_ORIGINAL_COMMAND (the launcher hands it over as R)", () => { Deno.env.get("SSH_ORIGINAL_COMMAND"); });
await attempt("write spool /tmp", async () => { const p = "/tmp/rsm-sandbox-" + crypto.randomUUID(); await Deno.writeTextFile(p, "x"); await Deno.remove(p); });
await attempt("run /usr/sbin/sendmail", () => run("/usr/sbin/sendmail", ["-bv", "nobody"]));
await attempt("run /usr/bin/logger", () => run("/usr/bin/logger", ["--socket-errors=off", "-u", "/nonexistent", "x"]));
await attempt("uid", () => Deno.uid());
console.log(JSON.stringify(verdict));
`,
  );
  for (
    const name of [
      "run /bin/sh",
      "run sh by name",
      "run /usr/bin/ssh",
      "run /bin/sendmail (other path)",
      "read /etc/passwd",
      "read /etc/shadow",
      "read ~/.ssh",
      "write /etc/x",
      "write /usr/sbin/sendmail",
      "tcp 127.0.0.1:22",
      "listen tcp",
      "env HOME",
      "env LD_PRELOAD",
      "env SSH_ORIGINAL_COMMAND (the launcher hands it over as R)",
      "ffi",
    ]
  ) strictEqual(v[name], "denied", `${name}: ${v[name]}`);
  for (
    const name of [
      "env R",
      "write spool /tmp",
      "run /usr/sbin/sendmail",
      "run /usr/bin/logger",
      "uid",
    ]
  ) strictEqual(v[name], "granted", `${name}: ${v[name]}`);
});

Deno.test("sshsendmail's sandbox runs only ssh (and cat for nullmailer's fd 3)", async () => {
  const v = await probe(
    "sshsendmail",
    PROBE_LIB + `
await attempt("run /bin/sh", () => run("/bin/sh", ["-c", "true"]));
await attempt("run /usr/bin/ssh-keygen", () => run("/usr/bin/ssh-keygen", ["-V"]));
await attempt("run /usr/sbin/sendmail", () => run("/usr/sbin/sendmail", ["-bv", "x"]));
await attempt("write /usr/bin/ssh", () => Deno.writeTextFile("/usr/bin/ssh", "x", { append: true }));
await attempt("write /root/.ssh", () => Deno.writeTextFile("/root/.ssh/rsm-sandbox-x", "x"));
await attempt("tcp 127.0.0.1:22", () => Deno.connect({ hostname: "127.0.0.1", port: 22 }));
await attempt("ffi", () => Deno.dlopen("/lib/x86_64-linux-gnu/libc.so.6", {}));
await attempt("run /usr/bin/ssh", () => run("/usr/bin/ssh", ["-V"]));
await attempt("run /bin/cat", () => run("/bin/cat", ["/dev/null"]));
await attempt("write /tmp", async () => { const p = "/tmp/rsm-sandbox-" + crypto.randomUUID(); await Deno.writeTextFile(p, "x"); await Deno.remove(p); });
console.log(JSON.stringify(verdict));
`,
  );
  for (
    const name of [
      "run /bin/sh",
      "run /usr/bin/ssh-keygen",
      "run /usr/sbin/sendmail",
      "write /usr/bin/ssh",
      "write /root/.ssh",
      "tcp 127.0.0.1:22",
      "ffi",
    ]
  ) strictEqual(v[name], "denied", `${name}: ${v[name]}`);
  for (const name of ["run /usr/bin/ssh", "run /bin/cat", "write /tmp"]) {
    strictEqual(v[name], "granted", `${name}: ${v[name]}`);
  }
});

Deno.test("the relay runs with a clean environment: DENO_V8_FLAGS, LD_PRELOAD and others from sshd cannot steer it", async () => {
  const env = {
    SSH_ORIGINAL_COMMAND: "sendmail --help",
    SSH_CONNECTION: "127.0.0.1 1 127.0.0.1 22",
    DENO_V8_FLAGS: "--stack-size=1",
    DENO_DIR: "/nonexistent",
    NO_COLOR: "1",
    RUST_BACKTRACE: "full",
  };
  const out = await new Deno.Command(`${root}/dist/rsendmail`, {
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  // The request is refused as usual (a peer's --help): no crash, one line.
  strictEqual(out.code, 64, stderr);
  strictEqual(stderr, "5.5.4 rsendmail: option --help is not allowed\n");
  // Positive control: without the hostile variables, the same line.
  const plain = await new Deno.Command(`${root}/dist/rsendmail`, {
    clearEnv: true,
    env: { SSH_ORIGINAL_COMMAND: env.SSH_ORIGINAL_COMMAND, SSH_CONNECTION: env.SSH_CONNECTION },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  strictEqual(plain.code, 64);
  strictEqual(new TextDecoder().decode(plain.stderr), stderr);
  // And a probe under the same launcher sees only the two variables.
  const probe = await new Deno.Command("/usr/bin/env", {
    args: ["-S", `${SERVER_LAUNCH.join(" ")} /usr/bin/printenv`],
    clearEnv: true,
    env,
    stdout: "piped",
  }).output();
  deepStrictEqual(
    new TextDecoder().decode(probe.stdout).trim().split("\n").sort(),
    ["P=127.0.0.1 1 127.0.0.1 22", "R=sendmail --help"],
  );
});
