/**
 * Distribution end to end (issue 5): `deno task package` builds the three
 * Debian packages; `dpkg -i` installs them on this machine; the INSTALLED
 * /usr/sbin/sshsendmail delivers a message through the test bed's sshd to a
 * key whose forced command is the INSTALLED /usr/sbin/rsendmail, into the
 * real Postfix; both man pages render without a warning; `dpkg -r` keeps
 * the conffile, `dpkg --purge` leaves nothing of ours. The same round trip
 * for scripts/install and --uninstall into a temp prefix. Also `--help` and
 * `--version` of both programs, and the man pages' source against the
 * options the code accepts.
 *
 * Needs root, dpkg, man-db and groff-base. Whatever of ours existed before
 * (/etc/sshsendmail*, /var/spool/sshsendmail) is put back afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { run, startPostfix, startRelay, takeMail } from "./_bed.ts";
import { parseMessage, takeByToken, token, uidOf, viaRelay } from "./_standalone.ts";
import { CLIENT_FLAGS, RUN_FLAGS, SERVER_FLAGS } from "../../scripts/permissions.ts";
import { PAGES } from "../../docs/manual.ts";

const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const DENO = `${root}/node_modules/.bin/deno`;
const RUNTIME = "/usr/lib/rsendmail-ng/deno";
const PACKAGES = ["rsendmail-ng-runtime", "rsendmail-ng-relay", "rsendmail-ng-client"];
const SPOOL = "/var/spool/sshsendmail";
/** Every path the packages may leave behind. */
const OURS = [
  "/usr/sbin/rsendmail",
  "/usr/sbin/sshsendmail",
  "/usr/lib/rsendmail-ng",
  "/usr/share/man/man8/rsendmail.8.gz",
  "/usr/share/man/man8/sshsendmail.8.gz",
  ...PACKAGES.map((p) => `/usr/share/doc/${p}`),
  "/lib/systemd/system/sshsendmail-flush.service",
  "/lib/systemd/system/sshsendmail-flush.timer",
  "/usr/lib/systemd/user/sshsendmail-flush.service",
  "/usr/lib/systemd/user/sshsendmail-flush.timer",
  "/etc/sshsendmail.conf",
  "/etc/sshsendmail.conf.bak",
  "/etc/sshsendmail",
];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function readVersion(file: string): Promise<string> {
  const m = /^(?:export )?const VERSION = "([^"]+)";$/m.exec(await Deno.readTextFile(file));
  assert.ok(m, `no VERSION in ${file}`);
  return m[1]!;
}

/** The shebang's words after `#!/usr/bin/env -S`. */
async function shebang(path: string): Promise<string[]> {
  const head = (await Deno.readTextFile(path)).split("\n", 1)[0]!;
  assert.match(head, /^#!\/usr\/bin\/env -S /);
  return head.replace(/^#!\/usr\/bin\/env -S /, "").split(" ");
}

/** `man -l` must render the page and say nothing on stderr. */
async function assertManClean(page: string, title: string): Promise<void> {
  const res = await run("/usr/bin/man", ["--warnings", "-l", page], {
    env: { MANWIDTH: "80", MAN_KEEP_FORMATTING: "0", PAGER: "cat", LANG: "C.UTF-8" },
  });
  assert.equal(res.stderr, "", `man --warnings -l ${page}`);
  assert.ok(res.stdout.includes(title), `${page} renders its title ${title}`);
}

/** Runs a program as a local admin would: no SSH session variables. */
function local(program: string, args: string[]) {
  const env = ["-u", "SSH_CONNECTION", "-u", "SSH_ORIGINAL_COMMAND", "-u", "SSH_CLIENT"];
  return run("/usr/bin/env", [...env, program, ...args], { check: false });
}

async function assertPrograms(sbin: string, version: string): Promise<void> {
  const v = await run(`${sbin}/sshsendmail`, ["--version"]);
  assert.equal(v.stdout, `sshsendmail ${version}\n`);
  const h = await run(`${sbin}/sshsendmail`, ["--help"]);
  assert.match(h.stdout, /^usage: sshsendmail /);
  const rv = await local(`${sbin}/rsendmail`, ["--version"]);
  assert.deepEqual([rv.code, rv.stdout], [0, `rsendmail ${version}\n`], rv.stderr);
  const rh = await local(`${sbin}/rsendmail`, ["--help"]);
  assert.equal(rh.code, 0, rh.stderr);
  assert.match(rh.stdout, /^usage: rsendmail /);
  // A peer never gets help text: its --help is one refusal line.
  const peer = await run(`${sbin}/rsendmail`, [], {
    check: false,
    env: { SSH_ORIGINAL_COMMAND: "sendmail --help", SSH_CONNECTION: "127.0.0.1 1 127.0.0.1 22" },
  });
  assert.equal(peer.code, 64);
  assert.equal(peer.stdout, "");
  assert.match(peer.stderr, /^5\.5\.4 rsendmail: /);
  // No request at all: a usage error at once, stdin never waited on.
  const none = await local(`${sbin}/rsendmail`, []);
  assert.equal(none.code, 64);
}

/** Delivers one message: installed client → sshd → installed relay program → Postfix. */
async function assertDelivery(sbin: string, label: string): Promise<void> {
  const postfix = await startPostfix();
  const box = postfix.mailbox("rsmpkg");
  const relay = await startRelay();
  const dir = await Deno.makeTempDir({ prefix: "rsm-pkg-" });
  try {
    const key = await relay.addKey(
      `restrict,command="${sbin}/rsendmail --label ${label} --require-integrity"`,
    );
    const conf = `${dir}/sshsendmail.conf`;
    await Deno.writeTextFile(
      conf,
      [
        `host = ${relay.user}@${relay.host}`,
        `port = ${relay.port}`,
        `identity = ${key}`,
        `known_hosts = ${relay.knownHosts}`,
        "queue = no",
        "",
      ].join("\n"),
    );
    const tok = token(label);
    const res = await run(`${sbin}/sshsendmail`, ["-oi", `${box.user}@${postfix.domain}`], {
      stdin: `Subject: ${tok}\n\nbody ${tok}\n.\nlast line\n`,
      env: { SSHSENDMAIL_CONFIG: conf, HOME: dir },
      check: false,
    });
    assert.deepEqual({ code: res.code, stdout: res.stdout, stderr: res.stderr }, {
      code: 0,
      stdout: "",
      stderr: "",
    });
    const msg = parseMessage(await takeByToken(box, `body ${tok}`));
    assert.ok(viaRelay(msg, await uidOf(relay.user)), "arrived through the relay account");
    assert.ok(msg.body.includes(`body ${tok}\n.\nlast line`), "a lone dot line survives");
  } finally {
    await relay.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The README's quickstart with the installed packages: `sshsendmail setup`
 * with the package defaults (/etc/sshsendmail/, /etc/sshsendmail.conf)
 * against the bed's relay, installing the key over an admin login, then the
 * test message arrives.
 */
async function assertSetup(): Promise<void> {
  const postfix = await startPostfix();
  const box = postfix.mailbox("rsmpkg");
  const relay = await startRelay();
  const installed = `/home/${relay.user}/.ssh/authorized_keys`;
  try {
    const admin = await relay.addKey("");
    const res = await run("/usr/sbin/sshsendmail", [
      "setup",
      "--host",
      `${relay.user}@${relay.host}`,
      "--port",
      String(relay.port),
      "--install-with",
      relay.user,
      "--admin-identity",
      admin,
      "--test",
      `${box.user}@${postfix.domain}`,
    ], { check: false });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /\[1\/5\] key: created \/etc\/sshsendmail\/id_ed25519/);
    assert.match(res.stdout, /restrict,command="\/usr\/sbin\/rsendmail --label /);
    assert.match(res.stdout, /\[4\/5\] config: wrote \/etc\/sshsendmail.conf/);
    assert.match(res.stdout, /\[5\/5\] test message to .*: accepted by the relay/);
    const mail = new TextDecoder().decode(await takeMail(box));
    assert.match(mail, /^Subject: sshsendmail test from /m);
  } finally {
    const text = await Deno.readTextFile(installed).catch(() => "");
    await Deno.writeTextFile(
      installed,
      text.split("\n").filter((l) => !l.includes("sshsendmail@")).join("\n"),
    ).catch(() => {});
    await relay.stop();
  }
}

/** Moves what of ours exists out of the way; returns how to put it back. */
async function setAside(paths: string[]): Promise<() => Promise<void>> {
  const stash = await Deno.makeTempDir({ prefix: "rsm-pkg-stash-" });
  const moved: Array<[string, string]> = [];
  for (const [i, p] of paths.entries()) {
    if (await exists(p)) {
      await run("/bin/mv", [p, `${stash}/${i}`]);
      moved.push([p, `${stash}/${i}`]);
    }
  }
  return async () => {
    for (const [p, s] of moved) {
      await run("/bin/rm", ["-rf", p]);
      await run("/bin/mv", [s, p]);
    }
    await Deno.remove(stash, { recursive: true });
  };
}

Deno.test("man pages: one source, every option the code accepts, no warnings", async () => {
  const res = await run(DENO, ["task", "man"], { env: { NO_COLOR: "1" } });
  assert.match(res.stdout + res.stderr, /dist\/man\/rsendmail\.8/);
  const text = PAGES.map((p) => JSON.stringify(p)).join("\n");
  const client = await Deno.readTextFile(`${root}/lib/client_args.ts`);
  const own = client.slice(client.indexOf("OWN_OPTIONS"), client.indexOf("} as const"));
  for (const m of own.matchAll(/^\s+"?([a-z-]+)"?: \{ type/gm)) {
    if (m[1] === "loglevel") continue; // upstream's spelling, accepted silently
    assert.ok(text.includes(`--${m[1]}`), `sshsendmail(8) documents --${m[1]}`);
  }
  const relay = await Deno.readTextFile(`${root}/lib/relay_config.ts`);
  for (const m of relay.matchAll(/^\s+"(--[a-z-]+)": \(c/gm)) {
    assert.ok(text.includes(m[1]!), `rsendmail(8) documents ${m[1]}`);
  }
  for (const page of PAGES) {
    const file = `${root}/dist/man/${page.name}.8`;
    const groff = await run("/usr/bin/groff", ["-man", "-ww", "-z", file]);
    assert.equal(groff.stderr, "", `groff -man -ww -z ${file}`);
    await assertManClean(file, `${page.name.toUpperCase()}(8)`);
  }
});

Deno.test("Debian packages: build, install, deliver, remove, purge", async (t) => {
  const version = await readVersion(`${root}/client.ts`);
  assert.equal(await readVersion(`${root}/server.ts`), version, "one version for both programs");
  const debs = PACKAGES.map((p, i) =>
    `${root}/dist/pkg/${p}_${version}_${i ? "all" : "amd64"}.deb`
  );
  const spoolExisted = await exists(SPOOL);
  const restore = await setAside([
    "/etc/sshsendmail.conf",
    "/etc/sshsendmail.conf.bak",
    "/etc/sshsendmail",
  ]);
  // A run that died halfway leaves the packages installed.
  await run("/usr/bin/dpkg", ["--purge", ...PACKAGES], { check: false });
  try {
    await t.step("deno task package", async () => {
      await run(DENO, ["task", "package"], {
        env: { NO_COLOR: "1", RSENDMAIL_PKG_COMPRESS: "gzip" },
      });
      for (const deb of debs) {
        const info = await run("/usr/bin/dpkg-deb", ["--field", deb, "Package", "Version"]);
        assert.match(info.stdout, new RegExp(`Version: ${version.replaceAll(".", "\\.")}`));
      }
      const client = await run("/usr/bin/dpkg-deb", ["--info", debs[2]!, "conffiles"]);
      assert.equal(client.stdout.trim(), "/etc/sshsendmail.conf");
      const files = await run("/usr/bin/dpkg-deb", ["--contents", debs[2]!]);
      assert.match(files.stdout, /\.\/usr\/sbin\/sshsendmail\n/);
      assert.doesNotMatch(
        files.stdout,
        /\.\/usr\/bin\//,
        "nothing in /usr/bin (Debian's rsendmail)",
      );
      // The tests' own artefacts are not the packaged ones.
      assert.notEqual((await shebang(`${root}/dist/rsendmail`))[0], RUNTIME);
    });

    await t.step("dpkg -i all three", async () => {
      await run("/usr/bin/dpkg", ["-i", ...debs]);
      const verify = await run("/usr/bin/dpkg", ["--verify", ...PACKAGES]);
      assert.equal(verify.stdout, "", "installed files match md5sums");
      assert.equal((await Deno.stat(SPOOL)).mode! & 0o7777, 0o1777, "spool 1777");
      for (
        const [program, flags] of [["rsendmail", SERVER_FLAGS], [
          "sshsendmail",
          CLIENT_FLAGS,
        ]] as const
      ) {
        const words = await shebang(`/usr/sbin/${program}`);
        assert.deepEqual(words, [RUNTIME, "run", ...RUN_FLAGS, ...flags]);
        assert.ok(!words.some((w) => w === "-A" || w.startsWith("--allow-all")));
      }
      const unit = await Deno.readTextFile("/lib/systemd/system/sshsendmail-flush.service");
      assert.match(unit, /^ExecStart=\/usr\/sbin\/sshsendmail --flush --due --all$/m);
    });

    await t.step("--help and --version of both installed programs", async () => {
      await assertPrograms("/usr/sbin", version);
    });

    await t.step("man -l renders both installed pages without warnings", async () => {
      await assertManClean("/usr/share/man/man8/rsendmail.8.gz", "RSENDMAIL(8)");
      await assertManClean("/usr/share/man/man8/sshsendmail.8.gz", "SSHSENDMAIL(8)");
    });

    await t.step("installed sshsendmail → sshd → installed rsendmail → Postfix", async () => {
      await assertDelivery("/usr/sbin", "pkgtest");
    });

    await t.step(
      "installed sshsendmail setup: from nothing to a delivered test message",
      async () => {
        await assertSetup();
      },
    );

    await t.step("dpkg -r keeps the conffile, --purge leaves nothing", async () => {
      await run("/usr/bin/dpkg", ["-r", ...PACKAGES]);
      assert.ok(await exists("/etc/sshsendmail.conf"), "a removed package keeps its conffile");
      assert.ok(!(await exists("/usr/sbin/sshsendmail")));
      const mailWaits = (await run("/usr/bin/find", [
        SPOOL,
        "-type",
        "f",
        "(",
        "-path",
        "*/new/*",
        "-o",
        "-path",
        "*/tmp/*",
        "-o",
        "-path",
        "*/failed/*",
        ")",
      ], { check: false })).stdout !== "";
      await run("/usr/bin/dpkg", ["--purge", ...PACKAGES]);
      for (const p of PACKAGES) {
        const s = await run("/usr/bin/dpkg-query", ["-W", "-f=${Status}", p], { check: false });
        assert.ok(s.code !== 0 || !s.stdout.includes("installed"), `${p} is gone: ${s.stdout}`);
      }
      for (const path of OURS) assert.ok(!(await exists(path)), `${path} left after purge`);
      assert.equal(await exists(SPOOL), mailWaits, "the spool goes unless mail waits in it");
      // Debian's own rsendmail, if installed, is untouched.
      for (const p of ["/usr/bin/rsendmail", "/usr/bin/sshsendmail"]) {
        const owner = await run("/usr/bin/dpkg", ["-S", p], { check: false });
        if (owner.code === 0) assert.ok(await exists(p), `${p} of package rsendmail`);
      }
    });
  } finally {
    await run("/usr/bin/dpkg", ["--purge", ...PACKAGES], { check: false });
    if (spoolExisted) await run("/usr/bin/install", ["-d", "-m", "1777", SPOOL]);
    await restore();
  }
});

Deno.test("scripts/install: install into a prefix, deliver, --uninstall leaves nothing", async () => {
  const version = await readVersion(`${root}/client.ts`);
  const base = await Deno.makeTempDir({ prefix: "rsm-inst-" });
  // The relay account must reach the installed rsendmail and its Deno.
  await Deno.chmod(base, 0o755);
  const prefix = `${base}/usr`;
  const install = `${root}/scripts/install`;
  try {
    await run(install, ["--prefix", prefix, "--sysconfdir", `${base}/etc`]);
    for (const p of ["rsendmail", "sshsendmail"]) {
      assert.equal((await shebang(`${prefix}/sbin/${p}`))[0], `${prefix}/lib/rsendmail-ng/deno`);
    }
    assert.ok(await exists(`${base}/etc/sshsendmail.conf`));
    assert.match(
      await Deno.readTextFile(`${prefix}/lib/systemd/system/sshsendmail-flush.service`),
      new RegExp(`^ExecStart=${prefix}/sbin/sshsendmail `, "m"),
    );
    await assertPrograms(`${prefix}/sbin`, version);
    await assertManClean(`${prefix}/share/man/man8/rsendmail.8.gz`, "RSENDMAIL(8)");
    await assertManClean(`${prefix}/share/man/man8/sshsendmail.8.gz`, "SSHSENDMAIL(8)");
    await assertDelivery(`${prefix}/sbin`, "insttest");
    const again = await run(install, ["--prefix", prefix], { check: false });
    assert.notEqual(again.code, 0, "a second install over the first is refused");
    await run(install, ["--uninstall", "--prefix", prefix]);
    const left = await Array.fromAsync(Deno.readDir(base));
    assert.deepEqual(left.map((e) => e.name), [], "nothing left under the prefix");
  } finally {
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
});
