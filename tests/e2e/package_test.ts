/**
 * Distribution end to end (issues 5 and 14). `deno task package` builds the
 * four Debian packages with debhelper (dpkg-buildpackage from debian/); a
 * second build gives the same bytes (SOURCE_DATE_EPOCH, clamped mtimes);
 * lintian finds no error and no warning, and every override says why.
 *
 * On this machine (whose Postfix the other tests use, so without
 * rsendmail-ng-mta): `dpkg -i` installs runtime, relay and client; the
 * INSTALLED /usr/sbin/sshsendmail delivers a message through the test bed's
 * sshd to a key whose forced command is the INSTALLED /usr/sbin/rsendmail,
 * into the real Postfix; both man pages render without a warning; the
 * client package installs over an old per-user spool (the account made,
 * the spool laid out by --init-spool, each old queue migrated as its owner
 * and its message delivered later, nothing followed); `setup` edits only
 * its own lines of the packaged conffile (the admin's lines and the
 * template's comments stay), hands the key to the account, and the
 * installed service, started as its unit starts it, delivers a local
 * user's mail; a reinstall, and a reinstall after `dpkg -r`, keep the
 * admin's conffile; `dpkg --purge` keeps a spool where mail waits (and its
 * account) and otherwise leaves nothing of ours.
 *
 * In a throwaway Debian made with debootstrap (tests/e2e/_chroot.ts): with
 * runtime, client and rsendmail-ng-mta installed, `apt-get install
 * bsd-mailx cron mutt` installs no other MTA (without ours it would pull
 * exim4: checked first), and `mail -s x root` from a user there arrives at
 * the test bed's relay (adminaddr). When debootstrap cannot reach the
 * archive apt uses, the MTA part is checked with `apt-get install
 * --simulate` against a copy of this machine's dpkg status with the MTAs
 * taken out and ours put in, and the test says so; the mail part is then
 * not run (RSENDMAIL_TEST_NO_DEBOOTSTRAP=1 takes that path on purpose).
 *
 * The same install round trip for scripts/install and --uninstall into a
 * temp prefix. Also `--help` and `--version` of both programs, and the man
 * pages' source against the options the code accepts.
 *
 * Needs root, dpkg, debhelper, lintian, debootstrap, man-db and groff-base
 * (scripts/bootstrap); systemd does not run here, so the unit is enabled
 * (deb-systemd-helper) but not started, and the tests start the service
 * themselves. Whatever of ours existed before (/etc/sshsendmail*,
 * /var/spool/sshsendmail, the account sshsendmail) is put back afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  account,
  exists,
  type Mailbox,
  removeInstalledKeys,
  ROOT as root,
  run,
  startPostfix,
  startRelay,
  takeByToken,
  takeMail,
  token,
  uidOf,
} from "./_bed.ts";
import { parseMessage, viaRelay } from "./_standalone.ts";
import { CLIENT_FLAGS, RUN_FLAGS, SERVER_FLAGS, SERVER_TUNING } from "../../scripts/permissions.ts";
import { EXAMPLE_CONFIG, PAGES } from "../../docs/manual.ts";
import {
  type Archive,
  ArchiveUnreachable,
  baseTarball,
  debCacheOf,
  machineArchive,
  openChroot,
} from "./_chroot.ts";

const DENO = `${root}/node_modules/.bin/deno`;
const RUNTIME = "/usr/lib/rsendmail-ng/deno";
/** What this machine gets (rsendmail-ng-mta would replace the Postfix the other tests use). */
const PACKAGES = ["rsendmail-ng-runtime", "rsendmail-ng-relay", "rsendmail-ng-client"];
const MTA = "rsendmail-ng-mta";
/** Every binary package debian/control defines. */
const ALL = [...PACKAGES, MTA];
/** Packages of Debian that provide mail-transport-agent (what must not come in beside ours). */
const OTHER_MTAS =
  /^(exim4[a-z-]*|postfix|nullmailer|msmtp-mta|dma|ssmtp|sendmail[a-z-]*|opensmtpd|courier-mta|citadel-mta|masqmail|esmtp-run|xmail|lsb-invalid-mta)$/;
const SPOOL = "/var/spool/sshsendmail";
const SERVICE = "sshsendmail";
const UNIT = "sshsendmail.service";
const DSH = "/var/lib/systemd/deb-systemd-helper";
/** Every path the packages may leave behind (the spool and account are checked apart). */
const OURS = [
  "/usr/sbin/rsendmail",
  "/usr/sbin/sshsendmail",
  "/usr/lib/rsendmail-ng",
  "/usr/share/man/man8/rsendmail.8.gz",
  "/usr/share/man/man8/sshsendmail.8.gz",
  ...PACKAGES.map((p) => `/usr/share/doc/${p}`),
  `/lib/systemd/system/${UNIT}`,
  `/etc/systemd/system/${UNIT}`,
  `/etc/systemd/system/multi-user.target.wants/${UNIT}`,
  `${DSH}-enabled/${UNIT}.dsh-also`,
  `${DSH}-enabled/multi-user.target.wants/${UNIT}`,
  `${DSH}-masked/${UNIT}`,
  "/etc/sshsendmail.conf",
  "/etc/sshsendmail.conf.bak",
  "/etc/sshsendmail",
];

/** The passwd line of an account, or undefined. */
async function passwdOf(name: string): Promise<string | undefined> {
  const res = await run("/usr/bin/getent", ["passwd", name], { check: false });
  return res.code === 0 ? res.stdout.trim() : undefined;
}

/** Runs a command as the service account (what the maintainer scripts do inside the spool). */
function asService(args: string[]) {
  return run("/usr/bin/setpriv", [
    `--reuid=${SERVICE}`,
    `--regid=${SERVICE}`,
    "--clear-groups",
    ...args,
  ]);
}

/** The spool as `sshsendmail --init-spool` makes it (lib/client/spool_layout.ts). */
async function assertLayout(): Promise<void> {
  assert.equal(await ownerMode(SPOOL), "root:root 755", "the top is root's");
  const parts: Array<[string, string]> = [
    ["drop", "sshsendmail:sshsendmail 1733"],
    ["root", "root:sshsendmail 750"],
    ["incoming", "sshsendmail:sshsendmail 700"],
    ["queue", "sshsendmail:sshsendmail 700"],
    ["hold", "sshsendmail:sshsendmail 700"],
    ["reply", "sshsendmail:sshsendmail 711"],
    [".cache", "sshsendmail:sshsendmail 700"],
  ];
  for (const [part, want] of parts) assert.equal(await ownerMode(`${SPOOL}/${part}`), want, part);
}

/** Owner name and permission bits of a path (not followed). */
async function ownerMode(path: string): Promise<string> {
  return (await run("/usr/bin/stat", ["-c", "%U:%G %a", path])).stdout.trim();
}

/**
 * Puts the account back as it was before a test: recreated with its old
 * ids if a purge deleted it, deleted if the test made it.
 */
async function restoreAccount(before: string | undefined): Promise<void> {
  const now = await passwdOf(SERVICE);
  if (before === undefined && now !== undefined) {
    await run("/usr/sbin/deluser", ["--system", "--quiet", SERVICE], { check: false });
    await run("/usr/sbin/delgroup", ["--system", "--quiet", SERVICE], { check: false });
  } else if (before !== undefined && now === undefined) {
    const [, , uid, gid, , home, shell] = before.split(":");
    await run("/usr/sbin/groupadd", ["--system", "--gid", gid!, SERVICE], { check: false });
    await run("/usr/sbin/useradd", [
      "--system",
      "--uid",
      uid!,
      "--gid",
      gid!,
      "--home-dir",
      home!,
      "--no-create-home",
      "--shell",
      shell!,
      SERVICE,
    ]);
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
      `restrict,command="${sbin}/rsendmail --label ${label} --require-integrity --state-dir ${relay.stateDir}"`,
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
async function assertSetup(migrated: string): Promise<void> {
  const postfix = await startPostfix();
  const box = postfix.mailbox("rsmpkg");
  const relay = await startRelay();
  try {
    // The admin's own lines in the packaged template, before setup runs.
    const conf = "/etc/sshsendmail.conf";
    assert.equal(await Deno.readTextFile(conf), EXAMPLE_CONFIG, "the package's template");
    const mine = ["# the admin's own", `adminaddr = rsmpkg@${postfix.domain}`, "max_age = 5d", ""];
    await Deno.writeTextFile(conf, mine.join("\n"), { append: true });
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
    assert.match(
      res.stdout,
      /\[1\/5\] key: created \/etc\/sshsendmail\/id_ed25519 .*, owned by sshsendmail \(0600\) in \/etc\/sshsendmail \(root, 0755\)/,
    );
    assert.match(res.stdout, /restrict,command="\/usr\/sbin\/rsendmail --label /);
    assert.match(
      res.stdout,
      /\[4\/5\] config: wrote \/etc\/sshsendmail.conf \(set host, port, identity, known_hosts; every other line kept/,
    );
    // Only setup's lines changed: the template and the admin's lines are as they were.
    assert.equal(
      await Deno.readTextFile(conf),
      EXAMPLE_CONFIG + mine.join("\n") + [
        `host = ${relay.user}@${relay.host}`,
        `port = ${relay.port}`,
        "identity = /etc/sshsendmail/id_ed25519",
        "known_hosts = /etc/sshsendmail/known_hosts",
        "",
      ].join("\n"),
    );
    assert.match(res.stdout, /\[5\/5\] test message to .*: accepted by the relay/);
    const mail = new TextDecoder().decode(await takeMail(box));
    assert.match(mail, /^Subject: sshsendmail test from /m);
    assert.equal(await ownerMode("/etc/sshsendmail/id_ed25519"), "sshsendmail:sshsendmail 600");
    assert.equal(await ownerMode("/etc/sshsendmail"), "root:root 755");
    assert.equal(await ownerMode("/etc/sshsendmail/known_hosts"), "root:root 644");
    await assertService(`${box.user}@${postfix.domain}`, box, migrated);
  } finally {
    await removeInstalledKeys(relay);
    await relay.stop();
  }
}

/**
 * The installed service as sshsendmail.service runs it (its User= and
 * ExecStart=, with the package's /etc/sshsendmail.conf that setup wrote):
 * a local user's sendmail returns at once and the message arrives; the
 * user's mailq is then empty; the message postinst migrated from the old
 * queue arrives too; SIGTERM ends the service with 0.
 */
async function assertService(rcpt: string, box: Mailbox, migrated: string): Promise<void> {
  const unit = await Deno.readTextFile(`/lib/systemd/system/${UNIT}`);
  const user = /^User=(\S+)$/m.exec(unit)?.[1];
  const argv = /^ExecStart=(.+)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  assert.equal(user, SERVICE);
  const home = (await passwdOf(SERVICE))!.split(":")[5]!;
  await Deno.remove(`${SPOOL}/reply/alive`).catch(() => {});
  const service = new Deno.Command("/usr/bin/setpriv", {
    args: [`--reuid=${user}`, `--regid=${user}`, "--init-groups", "--", ...argv],
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", HOME: home, LANG: "C.UTF-8", DENO_DIR: "/nonexistent" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = service.output();
  try {
    const deadline = Date.now() + 10_000;
    while (!/^\d+\n$/.test(await Deno.readTextFile(`${SPOOL}/reply/alive`).catch(() => ""))) {
      assert.ok(Date.now() < deadline, "the installed service did not start within 10 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const sender = await account("rsmpkgsend");
    const tok = token("pkgsvc");
    const as = [
      `--reuid=${sender.uid}`,
      `--regid=${sender.gid}`,
      "--init-groups",
      "/usr/bin/env",
      "-i",
      "PATH=/usr/bin:/bin",
      `HOME=${sender.home}`,
      "/usr/sbin/sshsendmail",
    ];
    const res = await run("/usr/bin/setpriv", [...as, "-oi", rcpt], {
      stdin: `Subject: ${tok}\n\nbody ${tok}\n`,
      check: false,
    });
    assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""]);
    await takeByToken(box, `body ${tok}`);
    // The old queue's message, migrated into the drop directory by postinst.
    await takeByToken(box, `queued before the service ${migrated}`);
    const q = await run("/usr/bin/setpriv", [...as, "-bp"], { check: false });
    assert.equal(q.stdout, "Mail queue is empty\n", q.stderr);
  } finally {
    try {
      service.kill("SIGTERM");
    } catch {
      // it ended already; its status tells
    }
    const out = await output;
    const text = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `the service ended with ${out.code}: ${text}`);
  }
}

/**
 * An old per-user spool (before the service): root's 1777 top directory
 * with a user's queue holding one message for `rcpt`, root's queue, and a
 * numbered entry that points elsewhere.
 */
async function makeOldSpool(
  rcpt: string,
): Promise<{ old: Account; other: Account; decoy: string; tok: string }> {
  const old = await account("rsmpkgold");
  await run("/usr/bin/install", ["-d", "-m", "1777", SPOOL]);
  const queue = `${SPOOL}/${old.uid}`;
  for (const sub of ["", "/new", "/tmp", "/state", "/failed"]) {
    await run("/usr/bin/install", [
      "-d",
      "-m",
      "0700",
      "-o",
      old.name,
      "-g",
      old.name,
      queue + sub,
    ]);
  }
  // One message in the old queue file format (lib/client/queue_io.ts): a JSON header line, then the body.
  const tok = token("pkgold");
  const body = new TextEncoder().encode(`Subject: ${tok}\n\nqueued before the service ${tok}\n`);
  const sha256 = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", body)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const id = `m${crypto.randomUUID().replaceAll("-", "")}`;
  const header = {
    v: 1,
    id,
    sender: null,
    recipients: [rcpt],
    extractRecipients: false,
    created: Date.now(),
    size: body.length,
    sha256,
  };
  const head = new TextEncoder().encode(`${JSON.stringify(header)}\n`);
  const file = `${queue}/new/${id}`;
  await Deno.writeFile(file, new Uint8Array([...head, ...body]), { mode: 0o600 });
  await Deno.chown(file, old.uid, old.gid);
  await run("/usr/bin/install", ["-d", "-m", "0700", `${SPOOL}/0`, `${SPOOL}/0/new`]);
  await Deno.writeTextFile(`${SPOOL}/0/new/m0`, "root's old mail\n");
  // A numbered symlink whose target that uid owns: never followed.
  const other = await account("rsmpkgdecoy");
  const decoy = await Deno.makeTempDir({ prefix: "rsm-pkg-decoy-" });
  await run("/usr/bin/install", ["-d", "-m", "0700", "-o", other.name, `${decoy}/new`]);
  await Deno.chown(decoy, other.uid, other.gid);
  await Deno.symlink(decoy, `${SPOOL}/${other.uid}`);
  return { old, other, decoy, tok };
}

type Account = Awaited<ReturnType<typeof account>>;

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
  const client = await Deno.readTextFile(`${root}/lib/client/client_args.ts`);
  const own = client.slice(client.indexOf("OWN_OPTIONS"), client.indexOf("} as const"));
  for (const m of own.matchAll(/^\s+"?([a-z-]+)"?: \{ type/gm)) {
    if (m[1] === "loglevel") continue; // upstream's spelling, accepted silently
    assert.ok(text.includes(`--${m[1]}`), `sshsendmail(8) documents --${m[1]}`);
  }
  const relay = await Deno.readTextFile(`${root}/lib/shared/relay_config.ts`);
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

/** The .deb of each package debian/control defines, as `deno task package` names them. */
async function debPaths(): Promise<Record<string, string>> {
  const version = await readVersion(`${root}/client.ts`);
  const arch = (await run("/usr/bin/dpkg", ["--print-architecture"])).stdout.trim();
  return Object.fromEntries(
    ALL.map((p) => [p, `${root}/dist/pkg/${p}_${version}_${p === PACKAGES[0] ? arch : "all"}.deb`]),
  );
}

/** `deno task package` as the tests run it (gzip: much faster than xz). */
async function buildPackages(): Promise<void> {
  await run(DENO, ["task", "package"], { env: { NO_COLOR: "1", RSENDMAIL_PKG_COMPRESS: "gzip" } });
}

async function sha256Of(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One file of a .deb's data (`./etc/x`), as text. */
async function debFile(deb: string, path: string): Promise<string> {
  const res = await run("/bin/sh", [
    "-c",
    'dpkg-deb --fsys-tarfile "$1" | tar -xO "$2"',
    "sh",
    deb,
    path,
  ]);
  return res.stdout;
}

/** `tar -tv` lines of a .deb's data, with full UTC times. */
async function debListing(deb: string): Promise<string[]> {
  const res = await run("/bin/sh", [
    "-c",
    'dpkg-deb --fsys-tarfile "$1" | TZ=UTC tar -tv --full-time',
    "sh",
    deb,
  ]);
  return res.stdout.trim().split("\n");
}

/** A maintainer script of a .deb. */
async function debScript(deb: string, name: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "rsm-pkg-ctl-" });
  try {
    await run("/usr/bin/dpkg-deb", ["--control", deb, dir]);
    return await Deno.readTextFile(`${dir}/${name}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * lintian's verdict: no error and no warning (overrides aside), and no
 * override that matches nothing; every override in debian/ comes after a
 * comment that says why.
 */
async function assertLintian(changes: string): Promise<void> {
  const res = await run("/usr/bin/lintian", [
    "--display-info",
    "--tag-display-limit",
    "0",
    "--fail-on",
    "error,warning",
    changes,
  ], { check: false, env: { LANG: "C.UTF-8" } });
  const tags = res.stdout.split("\n").filter((l) => /^[EWIXPON]: /.test(l));
  const bad = tags.filter((l) => /^[EW]: /.test(l) || /(unused|mismatched)-override/.test(l));
  assert.deepEqual(bad, [], res.stdout + res.stderr);
  assert.equal(res.code, 0, res.stdout + res.stderr);
  let overrides = 0;
  for (const e of await Array.fromAsync(Deno.readDir(`${root}/debian`))) {
    if (!e.name.endsWith(".lintian-overrides")) continue;
    const lines = (await Deno.readTextFile(`${root}/debian/${e.name}`)).split("\n");
    for (const [i, line] of lines.entries()) {
      if (line.trim() === "" || line.startsWith("#")) continue;
      overrides++;
      const tag = (l: string) => l.split(/\s+/)[1];
      let j = i - 1;
      while (j >= 0 && !lines[j]!.startsWith("#") && tag(lines[j]!) === tag(line)) j--;
      assert.ok(j >= 0 && lines[j]!.startsWith("#"), `${e.name}:${i + 1}: no reason for ${line}`);
    }
  }
  assert.ok(overrides > 0);
}

Deno.test("Debian packages: debhelper build, reproducible, lintian, install, deliver, remove, purge", async (t) => {
  const version = await readVersion(`${root}/client.ts`);
  assert.equal(await readVersion(`${root}/server.ts`), version, "one version for both programs");
  const debs = await debPaths();
  const hostDebs = PACKAGES.map((p) => debs[p]!);
  const accountBefore = await passwdOf(SERVICE);
  const restore = await setAside([
    "/etc/sshsendmail.conf",
    "/etc/sshsendmail.conf.bak",
    "/etc/sshsendmail",
    SPOOL,
  ]);
  // A run that died halfway leaves the packages installed.
  await run("/usr/bin/dpkg", ["--purge", ...ALL], { check: false });
  try {
    await t.step("deno task package: dpkg-buildpackage with debhelper", async () => {
      await buildPackages();
      const changelog = await run("/usr/bin/dpkg-parsechangelog", [
        "-l",
        `${root}/debian/changelog`,
        "-S",
        "Version",
      ]);
      assert.equal(changelog.stdout.trim(), version, "debian/changelog's version is VERSION");
      for (const [p, deb] of Object.entries(debs)) {
        const info = await run("/usr/bin/dpkg-deb", [
          "--field",
          deb,
          "Package",
          "Version",
          "Source",
        ]);
        assert.equal(info.stdout, `Package: ${p}\nVersion: ${version}\nSource: rsendmail-ng\n`);
      }
      const changes = await Deno.readTextFile(
        `${root}/dist/pkg/rsendmail-ng_${version}_amd64.changes`,
      );
      for (const p of ALL) {
        assert.match(changes, new RegExp(`^ ${p} - `, "m"), "listed in .changes");
      }
      const client = debs["rsendmail-ng-client"]!;
      const conffiles = await run("/usr/bin/dpkg-deb", ["--info", client, "conffiles"]);
      assert.equal(conffiles.stdout.trim(), "/etc/sshsendmail.conf");
      assert.equal(
        await debFile(client, "./etc/sshsendmail.conf"),
        EXAMPLE_CONFIG,
        "the conffile is the commented template",
      );
      const files = (await run("/usr/bin/dpkg-deb", ["--contents", client])).stdout;
      assert.match(files, /\.\/usr\/sbin\/sshsendmail\n/);
      assert.match(files, /\.\/lib\/systemd\/system\/sshsendmail\.service\n/);
      assert.match(files, /\.\/usr\/share\/man\/man8\/sshsendmail\.8\.gz\n/);
      assert.doesNotMatch(files, /flush|systemd\/user/, "the old flush units are gone");
      const depends = await run("/usr/bin/dpkg-deb", ["--field", client, "Depends"]);
      assert.match(depends.stdout, /\badduser\b/);
      assert.match(depends.stdout, /rsendmail-ng-runtime \(>= 0/);
      for (const p of PACKAGES) {
        const c = (await run("/usr/bin/dpkg-deb", ["--contents", debs[p]!])).stdout;
        assert.doesNotMatch(c, /\.\/usr\/bin\//, `${p}: nothing in /usr/bin (Debian's rsendmail)`);
      }
      // Maintainer scripts: the account library in both, debhelper's unit handling.
      const postinst = await debScript(client, "postinst");
      assert.match(postinst, /^sshsendmail_account\(\) \{$/m);
      assert.match(postinst, /deb-systemd-helper enable 'sshsendmail\.service'/);
      assert.doesNotMatch(postinst, /#DEBHELPER#|#SERVICE_ACCOUNT_SH#/);
      assert.ok(
        postinst.indexOf("sshsendmail_migrate /usr/sbin/sshsendmail") <
          postinst.indexOf("deb-systemd-invoke $_dh_action"),
        "the account and spool exist before the unit starts",
      );
      assert.match(await debScript(client, "postrm"), /^sshsendmail_remove_spool\(\) \{$/m);
      // The MTA package: the virtual-package idiom, and the four names as links.
      const mta = debs[MTA]!;
      const fields = await run("/usr/bin/dpkg-deb", [
        "--field",
        mta,
        "Provides",
        "Conflicts",
        "Replaces",
        "Depends",
      ]);
      assert.equal(
        fields.stdout,
        "Provides: mail-transport-agent\nConflicts: mail-transport-agent\n" +
          `Replaces: mail-transport-agent\nDepends: rsendmail-ng-client (= ${version})\n`,
      );
      const links = (await debListing(mta)).filter((l) => l.startsWith("l"))
        .map((l) => l.replace(/^.* \.\//, "/"));
      for (
        const [path, target] of [
          ["/usr/sbin/sendmail", "sshsendmail"],
          ["/usr/lib/sendmail", "../sbin/sshsendmail"],
          ["/usr/bin/mailq", "../sbin/sshsendmail"],
          ["/usr/sbin/newaliases", "sshsendmail"],
        ]
      ) {
        assert.ok(links.includes(`${path} -> ${target}`), `${path}: ${links.join(", ")}`);
      }
      // Every file's mtime is the changelog's date (SOURCE_DATE_EPOCH).
      const epoch = Number(
        (await run("/usr/bin/dpkg-parsechangelog", [
          "-l",
          `${root}/debian/changelog`,
          "-S",
          "Timestamp",
        ])).stdout.trim(),
      );
      const when = new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
      for (const deb of Object.values(debs)) {
        for (const line of await debListing(deb)) {
          assert.ok(line.includes(` ${when} `), `${deb}: ${line} (want ${when})`);
        }
      }
      // The tests' own artefacts are not the packaged ones.
      assert.ok(!(await shebang(`${root}/dist/rsendmail`)).includes(RUNTIME));
    });

    await t.step("reproducible: a second build gives the same bytes", async () => {
      const first = await Promise.all(Object.values(debs).map(sha256Of));
      await buildPackages();
      const second = await Promise.all(Object.values(debs).map(sha256Of));
      assert.deepEqual(second, first);
    });

    await t.step("lintian: no error, no warning, every override with its reason", async () => {
      await assertLintian(`${root}/dist/pkg/rsendmail-ng_${version}_amd64.changes`);
    });

    let migrated = "";
    await t.step("dpkg -i runtime, relay and client, over an old per-user spool", async () => {
      const postfix = await startPostfix();
      const { old, other, decoy, tok } = await makeOldSpool(`rsmpkg@${postfix.domain}`);
      migrated = tok;
      const res = await run("/usr/bin/dpkg", ["-i", ...hostDebs]);
      const verify = await run("/usr/bin/dpkg", ["--verify", ...PACKAGES]);
      assert.equal(verify.stdout, "", "installed files match md5sums");
      const pw = (await passwdOf(SERVICE))?.split(":") ?? [];
      assert.deepEqual([pw[0], pw[5], pw[6]], [SERVICE, SPOOL, "/usr/sbin/nologin"]);
      const uid = Number(pw[2]);
      assert.ok(uid > 0 && uid < 1000, `a system account (uid ${uid})`);
      await assertLayout();
      // What the account runs outside the unit (the Postfix pipe: pipe(8)
      // sets HOME to the account's home, the spool) keeps Deno's caches in
      // .cache/, so the next start neither parses nor compiles afresh.
      await asService([
        "/usr/bin/env",
        "-i",
        "PATH=/usr/bin:/bin",
        `HOME=${SPOOL}`,
        "/usr/sbin/sshsendmail",
        "--version",
      ]);
      assert.ok(
        await exists(`${SPOOL}/.cache/deno/v8_code_cache_v2`),
        "Deno's code cache is in the account's .cache",
      );
      // The user's old queue was migrated as its owner: its message is a
      // drop of that uid, and the directory it emptied is gone.
      assert.ok(!(await exists(`${SPOOL}/${old.uid}`)), "the old queue is taken over");
      const drops = await Array.fromAsync(Deno.readDir(`${SPOOL}/drop`));
      assert.equal(drops.length, 1, JSON.stringify(drops));
      assert.match(drops[0]!.name, /^d[0-9a-f]{32}$/);
      assert.equal((await Deno.lstat(`${SPOOL}/drop/${drops[0]!.name}`)).uid, old.uid);
      assert.match(res.stderr, /root's old queue \/var\/spool\/sshsendmail\/0 is not taken over/);
      assert.equal(await Deno.readTextFile(`${SPOOL}/0/new/m0`), "root's old mail\n");
      assert.equal(await ownerMode(`${SPOOL}/0`), "root:root 700");
      assert.ok(
        (await Deno.lstat(`${decoy}/new`)).isDirectory,
        "a numbered symlink is not followed",
      );
      assert.equal(await ownerMode(decoy), `${other.name}:${other.name} 700`);
      assert.ok((await Deno.lstat(`${SPOOL}/${other.uid}`)).isSymlink);
      await Deno.remove(decoy, { recursive: true });
      for (const left of ["0", `${other.uid}`]) {
        await Deno.remove(`${SPOOL}/${left}`, { recursive: true });
      }
      for (
        const [program, tuning, flags] of [["rsendmail", SERVER_TUNING, SERVER_FLAGS], [
          "sshsendmail",
          [],
          CLIENT_FLAGS,
        ]] as const
      ) {
        const words = await shebang(`/usr/sbin/${program}`);
        assert.deepEqual(words.slice(words.indexOf(RUNTIME)), [
          RUNTIME,
          ...RUN_FLAGS,
          ...tuning,
          ...flags,
        ]);
        assert.ok(!words.some((w) => w === "-A" || w.startsWith("--allow-all")));
      }
      const unit = await Deno.readTextFile(`/lib/systemd/system/${UNIT}`);
      assert.match(unit, /^ExecStart=\/usr\/sbin\/sshsendmail --serve$/m);
      assert.match(unit, /^User=sshsendmail$/m);
      assert.match(unit, /^ReadWritePaths=\/var\/spool\/sshsendmail$/m);
      assert.ok(
        (await Deno.lstat(`/etc/systemd/system/multi-user.target.wants/${UNIT}`)).isSymlink,
        "the unit is enabled",
      );
      if (await exists("/usr/bin/systemd-analyze")) {
        const v = await run("/usr/bin/systemd-analyze", ["verify", `/lib/systemd/system/${UNIT}`], {
          check: false,
        });
        assert.equal(v.code, 0, v.stdout + v.stderr);
      }
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
      "installed sshsendmail setup: edits its lines of the conffile, then delivers",
      async () => {
        await assertSetup(migrated);
      },
    );

    let adminConf = "";
    await t.step("a reinstall keeps the admin's conffile (dpkg asks nothing)", async () => {
      adminConf = await Deno.readTextFile("/etc/sshsendmail.conf");
      assert.notEqual(adminConf, EXAMPLE_CONFIG);
      const res = await run("/usr/bin/dpkg", ["-i", ...hostDebs]);
      assert.doesNotMatch(res.stdout + res.stderr, /Configuration file .* modified/);
      assert.equal(await Deno.readTextFile("/etc/sshsendmail.conf"), adminConf);
      const verify = await run("/usr/bin/dpkg", ["--verify", "rsendmail-ng-client"], {
        check: false,
      });
      assert.match(verify.stdout, /^\?\?5\?{6} c \/etc\/sshsendmail\.conf$/m, "a changed conffile");
      for (const suffix of [".dpkg-dist", ".dpkg-new", ".dpkg-old"]) {
        assert.ok(!(await exists(`/etc/sshsendmail.conf${suffix}`)), suffix);
      }
      // The key setup handed to the account is still the account's.
      assert.equal(await ownerMode("/etc/sshsendmail/id_ed25519"), "sshsendmail:sshsendmail 600");
    });

    await t.step("dpkg -r keeps the conffile, the account and the spool", async () => {
      await run("/usr/bin/dpkg", ["-r", ...PACKAGES]);
      assert.equal(await Deno.readTextFile("/etc/sshsendmail.conf"), adminConf);
      assert.ok(!(await exists("/usr/sbin/sshsendmail")));
      assert.ok(await passwdOf(SERVICE), "the account stays until purge");
      await assertLayout();
    });

    await t.step("reinstalled after dpkg -r: the admin's conffile is the one in use", async () => {
      await run("/usr/bin/dpkg", ["-i", ...hostDebs]);
      assert.equal(await Deno.readTextFile("/etc/sshsendmail.conf"), adminConf);
      const test = await run("/usr/sbin/sshsendmail", ["--help"]);
      assert.match(test.stdout, /^usage: sshsendmail /);
    });

    const assertPurged = async () => {
      for (const p of ALL) {
        const s = await run("/usr/bin/dpkg-query", ["-W", "-f=${Status}", p], { check: false });
        assert.ok(s.code !== 0 || !s.stdout.includes("installed"), `${p} is gone: ${s.stdout}`);
      }
      for (const path of OURS) assert.ok(!(await exists(path)), `${path} left after purge`);
    };

    await t.step("--purge keeps a spool where mail waits, and its account", async () => {
      const waiting = `${SPOOL}/queue/new/mpkgtest`;
      await asService([
        "/bin/sh",
        "-c",
        'mkdir -p "${1%/*}" && echo waiting > "$1"',
        "sh",
        waiting,
      ]);
      const res = await run("/usr/bin/dpkg", ["--purge", ...PACKAGES]);
      await assertPurged();
      assert.equal(await Deno.readTextFile(waiting), "waiting\n");
      assert.ok(await passwdOf(SERVICE), "the spool's account stays with it");
      assert.match(res.stderr, /kept \/var\/spool\/sshsendmail/);
      await Deno.remove(waiting);
    });

    await t.step("reinstalled, then purged with no mail: nothing of ours is left", async () => {
      await run("/usr/bin/dpkg", ["-i", ...hostDebs]);
      assert.equal(
        await Deno.readTextFile("/etc/sshsendmail.conf"),
        EXAMPLE_CONFIG,
        "after a purge, the package's template again",
      );
      // A symlink in the spool is removed, never followed (the cleanup runs as the account).
      const decoy = await Deno.makeTempFile({ prefix: "rsm-pkg-decoy-" });
      await asService(["/bin/ln", "-s", decoy, `${SPOOL}/reply/link`]);
      // userdel refuses an account a process runs as: another test's service
      // left running (not this test's to end) keeps the account.
      const busy = await run("/usr/bin/pgrep", ["-u", SERVICE], { check: false });
      await run("/usr/bin/dpkg", ["--purge", ...PACKAGES]);
      await assertPurged();
      assert.ok(!(await exists(SPOOL)), "the spool goes when no mail waits in it");
      if (busy.code === 0) {
        console.log(
          `NOTE: processes run as ${SERVICE} (${busy.stdout.trim()}): its deletion not checked`,
        );
      } else {
        assert.equal(await passwdOf(SERVICE), undefined, "the account goes with its spool");
        const group = await run("/usr/bin/getent", ["group", SERVICE], { check: false });
        assert.notEqual(group.code, 0, "and its group");
      }
      assert.ok(await exists(decoy), "a link's target is left alone");
      await Deno.remove(decoy);
      // Debian's own rsendmail, if installed, is untouched.
      for (const p of ["/usr/bin/rsendmail", "/usr/bin/sshsendmail"]) {
        const owner = await run("/usr/bin/dpkg", ["-S", p], { check: false });
        if (owner.code === 0) assert.ok(await exists(p), `${p} of package rsendmail`);
      }
    });
  } finally {
    await run("/usr/bin/dpkg", ["--purge", ...ALL], { check: false });
    await restore();
    await restoreAccount(accountBefore);
  }
});

/** `Inst PACKAGE` lines of `apt-get install --simulate` output. */
function installs(out: string): string[] {
  return [...out.matchAll(/^Inst (\S+)/gm)].map((m) => m[1]!);
}

/**
 * No throwaway root (debootstrap cannot reach the archive): apt decides
 * against a copy of this machine's dpkg status where every MTA, what
 * depends on one, and bsd-mailx, cron and mutt are not installed, and
 * runtime, client and rsendmail-ng-mta are.
 */
async function simulateAgainstStatusCopy(debs: Record<string, string>): Promise<void> {
  const status = await Deno.readTextFile("/var/lib/dpkg/status");
  let stanzas = status.split(/\n\n+/).filter((s) => s.trim() !== "");
  const name = (s: string) => /^Package: (\S+)$/m.exec(s)?.[1] ?? "";
  const field = (s: string, f: string) => new RegExp(`^${f}: (.*)$`, "m").exec(s)?.[1] ?? "";
  const gone = new Set(["bsd-mailx", "cron", "cron-daemon-common", "mutt"]);
  for (const s of stanzas) {
    if (OTHER_MTAS.test(name(s)) || /\bmail-transport-agent\b/.test(field(s, "Provides"))) {
      gone.add(name(s));
    }
  }
  // Whatever needs a package taken out goes too (a consistent status).
  for (let more = true; more;) {
    more = false;
    for (const s of stanzas) {
      if (gone.has(name(s))) continue;
      const deps = `${field(s, "Depends")}, ${field(s, "Pre-Depends")}`.split(",");
      if (
        deps.some((d) =>
          d.trim() !== "" &&
          d.split("|").every((alt) => {
            const n = alt.trim().split(/[\s(:]/)[0]!;
            return gone.has(n) || n === "mail-transport-agent" || n === "default-mta";
          })
        )
      ) {
        gone.add(name(s));
        more = true;
      }
    }
  }
  stanzas = stanzas.filter((s) => !gone.has(name(s)));
  const ours: string[] = [];
  for (const p of [PACKAGES[0]!, PACKAGES[2]!, MTA]) {
    const control = (await run("/usr/bin/dpkg-deb", ["--field", debs[p]!])).stdout.trim();
    ours.push(control.replace(/^(Package: .*)$/m, "$1\nStatus: install ok installed"));
  }
  const dir = await Deno.makeTempDir({ prefix: "rsm-pkg-status-" });
  const simulate = async (extra: string[]) => {
    await Deno.writeTextFile(`${dir}/status`, [...stanzas, ...extra].join("\n\n") + "\n");
    const res = await run("/usr/bin/apt-get", [
      "-o",
      `Dir::State::status=${dir}/status`,
      "install",
      "--simulate",
      "bsd-mailx",
      "cron",
      "mutt",
    ], { env: { LANG: "C" } });
    const inst = installs(res.stdout);
    assert.ok(inst.includes("bsd-mailx") && inst.includes("mutt"), res.stdout);
    return { inst, out: res.stdout };
  };
  try {
    // Positive control: without ours, apt brings an MTA.
    const without = await simulate([]);
    assert.ok(without.inst.some((p) => OTHER_MTAS.test(p)), without.out);
    const withOurs = await simulate(ours);
    assert.deepEqual(withOurs.inst.filter((p) => OTHER_MTAS.test(p)), [], withOurs.out);
    assert.doesNotMatch(withOurs.out, /^Remv rsendmail-ng/m, withOurs.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("rsendmail-ng-mta in a throwaway Debian: bsd-mailx, cron and mutt pull in no other MTA; mail -s x root arrives at the relay", async (t) => {
  const debs = await debPaths();
  if (!(await Promise.all(Object.values(debs).map(exists))).every(Boolean)) await buildPackages();
  const archive: Archive = await machineArchive();
  let tarball: string;
  try {
    if (Deno.env.get("RSENDMAIL_TEST_NO_DEBOOTSTRAP") === "1") {
      throw new ArchiveUnreachable("RSENDMAIL_TEST_NO_DEBOOTSTRAP=1 (the fallback, on purpose)");
    }
    tarball = await baseTarball(archive);
  } catch (err) {
    if (!(err instanceof ArchiveUnreachable)) throw err;
    console.log(
      `NOTE: ${err.message}\nNOTE: no throwaway root: the MTA check runs as apt-get --simulate against a copy of the dpkg status; the mail -s check is not run`,
    );
    await t.step("apt-get --simulate against a copy of the dpkg status", async () => {
      await simulateAgainstStatusCopy(debs);
    });
    return;
  }
  const root_ = await openChroot(tarball, await debCacheOf(archive));
  const { dir } = root_;
  let service: Deno.ChildProcess | undefined;
  try {
    await t.step("without our packages, bsd-mailx would pull in an MTA", async () => {
      await root_.run(["apt-get", "update", "-qq"]);
      const sim = await root_.run([
        "apt-get",
        "install",
        "--simulate",
        "bsd-mailx",
        "cron",
        "mutt",
      ]);
      assert.ok(installs(sim.stdout).some((p) => OTHER_MTAS.test(p)), sim.stdout);
    });

    await t.step("apt-get install runtime, client and rsendmail-ng-mta", async () => {
      await Deno.mkdir(`${dir}/tmp/debs`);
      for (const p of [PACKAGES[0]!, PACKAGES[2]!, MTA]) {
        await Deno.copyFile(debs[p]!, `${dir}/tmp/debs/${p}.deb`);
      }
      await root_.run([
        "apt-get",
        "install",
        "-y",
        "-q",
        ...[PACKAGES[0]!, PACKAGES[2]!, MTA].map((p) => `/tmp/debs/${p}.deb`),
      ]);
      const owner = await root_.run(["dpkg", "-S", "/usr/sbin/sendmail"]);
      assert.equal(owner.stdout, `${MTA}: /usr/sbin/sendmail\n`);
      for (
        const link of [
          "/usr/sbin/sendmail",
          "/usr/lib/sendmail",
          "/usr/bin/mailq",
          "/usr/sbin/newaliases",
        ]
      ) {
        const r = await root_.run(["readlink", "-f", link]);
        assert.equal(r.stdout, "/usr/sbin/sshsendmail\n", link);
      }
      const pw = (await root_.run(["getent", "passwd", SERVICE])).stdout.split(":");
      assert.deepEqual([pw[5], pw[6]?.trim()], [SPOOL, "/usr/sbin/nologin"]);
    });

    await t.step("apt-get install bsd-mailx cron mutt: no other MTA comes in", async () => {
      const res = await root_.run(["apt-get", "install", "-y", "-q", "bsd-mailx", "cron", "mutt"]);
      assert.doesNotMatch(res.stdout, /^Removing rsendmail-ng/m, res.stdout);
      const q = await root_.run([
        "dpkg-query",
        "-W",
        "-f=${Package}\t${db:Status-Abbrev}\t${Provides}\n",
      ]);
      const installed = q.stdout.trim().split("\n").map((l) => l.split("\t"))
        .filter(([, st]) => st!.startsWith("ii"));
      const names = installed.map(([p]) => p!);
      for (const p of ["bsd-mailx", "cron", "mutt", MTA, PACKAGES[2]!]) {
        assert.ok(names.includes(p), `${p} is installed`);
      }
      const mtas = installed.filter(([p, , provides]) =>
        OTHER_MTAS.test(p!) || /\bmail-transport-agent\b/.test(provides ?? "")
      ).map(([p]) => p);
      assert.deepEqual(mtas, [MTA], "ours is the only MTA");
    });

    await t.step("mail -s x root from a user arrives at the relay", async () => {
      const postfix = await startPostfix();
      // bsd-mailx runs `sendmail -i -t` (recipients from To:): "root" reaches
      // the relay unqualified, and the relay's Postfix delivers it to its root.
      const box: Mailbox = { user: "root", dir: "/root/Maildir" };
      const relay = await startRelay();
      try {
        // The admin's lines first: setup keeps them.
        const mine = "# the admin's own\nmax_age = 5d\n";
        await Deno.writeTextFile(`${dir}/etc/sshsendmail.conf`, mine, { append: true });
        const admin = await relay.addKey("");
        await Deno.copyFile(admin, `${dir}/root/admin_key`);
        await Deno.chmod(`${dir}/root/admin_key`, 0o600);
        const setup = await root_.run([
          "sshsendmail",
          "setup",
          "--host",
          `${relay.user}@${relay.host}`,
          "--port",
          String(relay.port),
          "--rsendmail",
          `${root}/dist/rsendmail`,
          "--label",
          "pkgchroot",
          "--install-with",
          relay.user,
          "--admin-identity",
          "/root/admin_key",
        ], { check: false });
        assert.equal(setup.code, 0, setup.stdout + setup.stderr);
        const conf = await Deno.readTextFile(`${dir}/etc/sshsendmail.conf`);
        assert.ok(conf.startsWith(EXAMPLE_CONFIG + mine), conf);
        assert.match(conf, new RegExp(`^host = ${relay.user}@${relay.host}$`, "m"));
        // The service as its unit runs it (User=, ExecStart=, Environment=).
        const unit = await Deno.readTextFile(`${dir}/lib/systemd/system/${UNIT}`);
        const argv = /^ExecStart=(.+)$/m.exec(unit)![1]!.trim().split(/\s+/);
        const env = /^Environment=(.+)$/m.exec(unit)![1]!.trim().split(/\s+/);
        await Deno.remove(`${dir}${SPOOL}/reply/alive`).catch(() => {});
        service = new Deno.Command("/usr/sbin/chroot", {
          args: [
            dir,
            "/usr/bin/setpriv",
            `--reuid=${SERVICE}`,
            `--regid=${SERVICE}`,
            "--init-groups",
            "--",
            "/usr/bin/env",
            "-i",
            "PATH=/usr/bin:/bin",
            `HOME=${SPOOL}`,
            ...env,
            ...argv,
          ],
          clearEnv: true,
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).spawn();
        const deadline = Date.now() + 15_000;
        while (
          !/^\d+\n$/.test(await Deno.readTextFile(`${dir}${SPOOL}/reply/alive`).catch(() => ""))
        ) {
          assert.ok(Date.now() < deadline, "the service did not start within 15 s");
          await new Promise((r) => setTimeout(r, 50));
        }
        await root_.run(["useradd", "--create-home", "rsmmailer"]);
        const as = (words: string[], stdin?: string) =>
          root_.run([
            "setpriv",
            "--reuid=rsmmailer",
            "--regid=rsmmailer",
            "--init-groups",
            "--",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "HOME=/home/rsmmailer",
            "USER=rsmmailer",
            "LOGNAME=rsmmailer",
            ...words,
          ], { check: false, ...(stdin === undefined ? {} : { stdin }) });
        const tok = token("pkgmail");
        const mail = await as(["mail", "-s", `x ${tok}`, "root"], `body ${tok}\n`);
        assert.deepEqual([mail.code, mail.stdout, mail.stderr], [0, "", ""]);
        let arrived: string;
        try {
          arrived = await takeByToken(box, `body ${tok}`, 30_000);
        } catch (err) {
          // What the service holds and said, for the failure report.
          const list = await root_.run(["sshsendmail", "--list"], { check: false });
          service!.kill("SIGTERM");
          const out = await service!.output();
          service = undefined;
          throw new Error(
            `${(err as Error).message}\nmailq: ${list.stdout}${list.stderr}\nservice: ${
              new TextDecoder().decode(out.stderr)
            }`,
          );
        }
        const msg = parseMessage(arrived);
        assert.ok(viaRelay(msg, await uidOf(relay.user)), "arrived through the relay account");
        assert.match(
          arrived,
          new RegExp(`^Delivered-To: root@${postfix.domain.replace(".", "\\.")}$`, "m"),
        );
        assert.match(arrived, new RegExp(`^Subject: x ${tok}$`, "m"));
        const q = await as(["mailq"]);
        assert.equal(q.stdout, "Mail queue is empty\n", q.stderr);
        const na = await as(["/usr/sbin/newaliases"]);
        assert.equal(na.code, 0, na.stderr);
      } finally {
        await removeInstalledKeys(relay);
        await relay.stop();
      }
    });
  } finally {
    if (service !== undefined) {
      try {
        service.kill("SIGTERM");
      } catch {
        // ended already
      }
      const out = await service.output();
      if (out.code !== 0) console.log(new TextDecoder().decode(out.stderr));
    }
    await root_.close();
  }
});

Deno.test("scripts/install: install into a prefix, deliver, --uninstall leaves nothing", async () => {
  const version = await readVersion(`${root}/client.ts`);
  // Short: the relay's first line (env -S -i ... PREFIX/lib/rsendmail-ng/deno run flags)
  // must stay within the kernel's 255 bytes.
  const base = await Deno.makeTempDir({ dir: "/tmp", prefix: "ri" });
  // The relay account must reach the installed rsendmail and its Deno.
  await Deno.chmod(base, 0o755);
  const prefix = `${base}/usr`;
  const install = `${root}/scripts/install`;
  const accountBefore = await passwdOf(SERVICE);
  const restore = await setAside(["/etc/sshsendmail", SPOOL]);
  try {
    const res = await run(install, ["--prefix", prefix, "--sysconfdir", `${base}/etc`]);
    assert.ok(await passwdOf(SERVICE), "the account is made");
    await assertLayout();
    if (!(await exists("/run/systemd/system"))) {
      assert.match(res.stdout, /systemd does not run here: start .*\/sbin\/sshsendmail --serve/);
    }
    for (const p of ["rsendmail", "sshsendmail"]) {
      // The interpreter is the first absolute path (the relay's env -S -i launcher words come first).
      const words = await shebang(`${prefix}/sbin/${p}`);
      assert.equal(words.find((w) => w.startsWith("/")), `${prefix}/lib/rsendmail-ng/deno`);
    }
    assert.ok(await exists(`${base}/etc/sshsendmail.conf`));
    assert.match(
      await Deno.readTextFile(`${prefix}/lib/systemd/system/${UNIT}`),
      new RegExp(`^ExecStart=${prefix}/sbin/sshsendmail --serve$`, "m"),
    );
    await assertPrograms(`${prefix}/sbin`, version);
    await assertManClean(`${prefix}/share/man/man8/rsendmail.8.gz`, "RSENDMAIL(8)");
    await assertManClean(`${prefix}/share/man/man8/sshsendmail.8.gz`, "SSHSENDMAIL(8)");
    await assertDelivery(`${prefix}/sbin`, "insttest");
    const again = await run(install, ["--prefix", prefix], { check: false });
    assert.notEqual(again.code, 0, "a second install over the first is refused");
    // --uninstall keeps a spool where mail waits (and always the account).
    const waiting = `${SPOOL}/queue/new/minsttest`;
    await asService(["/bin/sh", "-c", 'mkdir -p "${1%/*}" && echo waiting > "$1"', "sh", waiting]);
    const kept = await run(install, ["--uninstall", "--prefix", prefix]);
    assert.match(kept.stderr, /kept \/var\/spool\/sshsendmail/);
    assert.equal(await Deno.readTextFile(waiting), "waiting\n");
    assert.ok(await passwdOf(SERVICE), "--uninstall keeps the account");
    const left = await Array.fromAsync(Deno.readDir(base));
    assert.deepEqual(left.map((e) => e.name), [], "nothing left under the prefix");
  } finally {
    await Deno.remove(base, { recursive: true }).catch(() => {});
    await run("/bin/rm", ["-rf", SPOOL]);
    await restore();
    await restoreAccount(accountBefore);
  }
});
