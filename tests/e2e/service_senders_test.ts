/**
 * The satellite service with the real programs that send mail, run by real
 * accounts at the same time: mutt, bsd-mailx, git send-email, PHP speaking
 * `sendmail -bs`, and the real cron daemon (a user's crontab and an
 * /etc/cron.d job with a user field), each through the bed's `sendmail`
 * symlink. Every message must arrive once, with the envelope sender
 * `<login@sat.test>` of the uid that ran the program.
 *
 * Then the relay goes away for a while: the mail waits in the service's
 * queue, each user's `sendmail -bp` (Postfix layout) shows only their own,
 * root's shows all; when the relay is back, `sendmail -q` and the service's
 * own retry deliver every message once.
 *
 * Needs root and: cron, mutt, bsd-mailx, git-email, php-cli, rsyslog,
 * util-linux (setpriv, unshare, mount).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Account,
  account,
  closedPort,
  expectNoToken,
  type RunResult,
  sleep,
  startSyslog,
  type Syslog,
  takeByToken,
  token,
  waitFor,
} from "./_bed.ts";
import { makeCronTree, parseMessage, whileCron } from "./_standalone.ts";
import { type ServiceBed, startServiceBed } from "./_service.ts";
import { parseMailq, type Queued } from "./_mailq.ts";

const ROOT: Account = { name: "root", uid: 0, gid: 0, home: "/root" };
/** The relay's local account every message goes to (this file's own Maildir). */
const RCPT = "rsmsnd";
const PER_PROGRAM = 3;
const CRON_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/** What one sending program did: its result and the tokens its messages carry. */
interface Sent {
  what: string;
  login: string;
  res: RunResult;
  tokens: string[];
  /** Expected stdout (git send-email reports each message). */
  stdout?: string;
}

/** A private working directory (HOME) for an account inside the bed's dir. */
async function workDir(bed: ServiceBed, who: Account): Promise<string> {
  const dir = `${bed.dir}/home-${who.name}`;
  await Deno.mkdir(dir, { mode: 0o700 });
  await Deno.chown(dir, who.uid, who.gid);
  return dir;
}

/** Writes a file owned by the account (0600). */
async function ownFile(path: string, who: Account, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chown(path, who.uid, who.gid);
}

/** Runs argv as the account with HOME=home and extra environment. */
function runAs(
  bed: ServiceBed,
  who: Account,
  home: string,
  argv: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<RunResult> {
  const vars = Object.entries({ HOME: home, LC_ALL: "C.UTF-8", ...env }).map(([k, v]) =>
    `${k}=${v}`
  );
  return bed.sendAs(who, ["/usr/bin/env", ...vars, ...argv], stdin);
}

function bodyFor(tok: string): string {
  return `first line ${tok}\n.\nGrüße, 8-bit\nlast line\n`;
}

/** mutt in batch mode, as configured on a satellite (no use_envelope_from). */
async function mutt(bed: ServiceBed, who: Account, home: string, rcpt: string): Promise<Sent[]> {
  const muttrc = `${home}/muttrc`;
  await ownFile(
    muttrc,
    who,
    [
      `set sendmail="${bed.sendmail} -oem -oi"`,
      'set record=""',
      "set copy=no",
      `set folder="${home}"`,
      `set spoolfile="${home}/spool"`,
      "set hostname=sat.test",
      "set charset=utf-8",
      "set send_charset=us-ascii:utf-8",
      "",
    ].join("\n"),
  );
  return await Promise.all(Array.from({ length: PER_PROGRAM }, async (_, i) => {
    const tok = token(`mutt-${who.name}-${i}`);
    const res = await runAs(
      bed,
      who,
      home,
      ["/usr/bin/mutt", "-n", "-F", muttrc, "-s", `mutt ${tok}`, "--", rcpt],
      {},
      bodyFor(tok),
    );
    return { what: `mutt ${i}`, login: who.name, res, tokens: [tok] };
  }));
}

/** bsd-mailx `mail -s` (its sendmail set through MAILRC). */
async function mailx(bed: ServiceBed, who: Account, home: string, rcpt: string): Promise<Sent[]> {
  const mailrc = `${home}/mailrc`;
  await ownFile(mailrc, who, `set sendmail=${bed.sendmail}\n`);
  return await Promise.all(Array.from({ length: PER_PROGRAM }, async (_, i) => {
    const tok = token(`mailx-${who.name}-${i}`);
    const res = await runAs(
      bed,
      who,
      home,
      ["/usr/bin/bsd-mailx", "-s", `mailx ${tok}`, rcpt],
      { MAILRC: mailrc },
      bodyFor(tok),
    );
    return { what: `mailx ${i}`, login: who.name, res, tokens: [tok] };
  }));
}

/** git send-email of a three-commit series (three sendmail runs, one git process). */
async function gitSendEmail(
  bed: ServiceBed,
  who: Account,
  home: string,
  rcpt: string,
): Promise<Sent[]> {
  const repo = `${home}/repo`;
  const env = {
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_AUTHOR_NAME: "Git Author",
    GIT_AUTHOR_EMAIL: `${who.name}@sat.test`,
    GIT_COMMITTER_NAME: "Git Author",
    GIT_COMMITTER_EMAIL: `${who.name}@sat.test`,
  };
  const git = async (...args: string[]) => {
    const res = await runAs(bed, who, home, ["/usr/bin/git", ...args], env);
    assert.equal(res.code, 0, `git ${args.join(" ")} as ${who.name}: ${res.stderr}`);
    return res;
  };
  await git("init", "-q", repo);
  const tokens: string[] = [];
  for (let i = 0; i < PER_PROGRAM; i++) {
    const tok = token(`git-${who.name}-${i}`);
    tokens.push(tok);
    await ownFile(`${repo}/file${i}.txt`, who, bodyFor(tok));
    await git("-C", repo, "add", `file${i}.txt`);
    await git("-C", repo, "commit", "-q", "-m", `Add ${tok}`);
  }
  const res = await runAs(bed, who, home, [
    "/usr/bin/git",
    "-C",
    repo,
    "send-email",
    `--sendmail-cmd=${bed.sendmail}`,
    `--to=${rcpt}`,
    `--from=Git Author <${who.name}@sat.test>`,
    "--confirm=never",
    "--suppress-cc=all",
    "--8bit-encoding=UTF-8",
    "--quiet",
    `-${PER_PROGRAM}`,
  ], env);
  const stdout = tokens.map((t, i) => `Sent [PATCH ${i + 1}/${PER_PROGRAM}] Add ${t}\n`).join("");
  return [{ what: "git send-email", login: who.name, res, tokens, stdout }];
}

/**
 * A PHP script speaking SMTP to `sendmail -bs` (proc_open, one reply per
 * command, as PHP mailers do): three messages in one session. The envelope
 * sender is the login the script runs as (LOGNAME), unqualified.
 */
const PHP_BS = `<?php
[, $sendmail, $rcpt, $toks] = $argv;
$from = getenv('LOGNAME');
$p = proc_open([$sendmail, '-bs'], [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => STDERR], $pipes);
if (!is_resource($p)) exit(2);
[$in, $out] = $pipes;
function expect($out, int $want, string $what): void {
  while (($line = fgets($out)) !== false) {
    if (!preg_match('/^(\\d{3})([ -])/', $line, $m)) break;
    if ($m[2] === ' ') {
      if ((int)$m[1] === $want) return;
      break;
    }
  }
  fwrite(STDERR, "$what: " . var_export($line, true) . "\\n");
  exit(1);
}
function cmd($in, $out, string $line, int $want): void {
  fwrite($in, "$line\\r\\n");
  fflush($in);
  expect($out, $want, $line);
}
expect($out, 220, 'greeting');
cmd($in, $out, 'EHLO php.sat.test', 250);
foreach (explode(',', $toks) as $tok) {
  cmd($in, $out, "MAIL FROM:<$from>", 250);
  cmd($in, $out, "RCPT TO:<$rcpt>", 250);
  cmd($in, $out, 'DATA', 354);
  $body = "From: PHP App <$from>\\r\\nTo: <$rcpt>\\r\\nSubject: php-bs $tok\\r\\n\\r\\n" .
    "first line $tok\\r\\n..\\r\\nlast line\\r\\n.";
  cmd($in, $out, $body, 250);
}
cmd($in, $out, 'QUIT', 221);
fclose($in);
fclose($out);
exit(proc_close($p));
`;

async function phpBs(bed: ServiceBed, who: Account, home: string, rcpt: string): Promise<Sent[]> {
  const script = `${home}/bs.php`;
  await ownFile(script, who, PHP_BS);
  const tokens = Array.from({ length: PER_PROGRAM }, (_, i) => token(`php-${who.name}-${i}`));
  const res = await runAs(bed, who, home, [
    "/usr/bin/php",
    "-n",
    script,
    bed.sendmail,
    rcpt,
    tokens.join(","),
  ]);
  return [{ what: "php -bs", login: who.name, res, tokens }];
}

/**
 * The real cron daemon in a private mount namespace (as standalone_test
 * runs it): /usr/sbin/sendmail is the bed's symlink (bind mount), a private
 * /run makes this start a boot so @reboot jobs run at once. Jobs: the
 * user crontab of `owner` and an /etc/cron.d file whose jobs run as
 * `cronDUser`; each job's output is mailed by cron as that user. Resolves
 * with the daemon's output once `done` resolves (the daemon is then killed).
 */
async function runCron(
  bed: ServiceBed,
  owner: Account,
  cronDUser: Account,
  rcpt: string,
  tokens: { crontab: string[]; cronD: string[] },
  done: () => Promise<void>,
): Promise<RunResult> {
  const ns = `${bed.dir}/cron`;
  await makeCronTree(ns);
  await Deno.writeTextFile(
    `${ns}/cron.d/rsmsvc`,
    [
      `MAILTO=${rcpt}`,
      ...tokens.cronD.map((t) => `@reboot ${cronDUser.name} echo 'cron.d ${t}'; id -un`),
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  // As crontab(1) leaves it: owned by the user, 0600.
  await ownFile(
    `${ns}/crontabs/${owner.name}`,
    owner,
    [`MAILTO=${rcpt}`, ...tokens.crontab.map((t) => `@reboot echo 'crontab ${t}'; id -un`), ""]
      .join("\n"),
  );
  const env = { PATH: CRON_PATH, SSHSENDMAIL_CONFIG: bed.conf, LANG: "C.UTF-8" };
  const [, out] = await whileCron(ns, bed.sendmail, env, done);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test(
  "service: three users, root and cron send at once with mutt, mailx, git send-email, a crontab and PHP -bs; each message arrives once with its own login@domain",
  async () => {
    const bed = await startServiceBed();
    try {
      const users = [await account("rsmu1"), await account("rsmu2"), await account("rsmu3")];
      const box = bed.mailbox(RCPT);
      const rcpt = `${RCPT}@${bed.domain}`;
      const senders = [...users, ROOT];
      const homes = new Map<string, string>();
      for (const who of senders) homes.set(who.name, await workDir(bed, who));

      const cronTokens = {
        crontab: Array.from({ length: PER_PROGRAM }, (_, i) => token(`crontab-rsmu3-${i}`)),
        cronD: Array.from({ length: PER_PROGRAM }, (_, i) => token(`crond-rsmu1-${i}`)),
      };
      const expected = new Map<string, string>(); // token → login
      for (const t of cronTokens.crontab) expected.set(t, "rsmu3");
      for (const t of cronTokens.cronD) expected.set(t, "rsmu1");
      const mails = new Map<string, string>();
      const take = async (tok: string, timeoutMs: number) => {
        mails.set(tok, await takeByToken(box, tok, timeoutMs));
      };

      const started = Date.now();
      const programs = [mutt, mailx, gitSendEmail, phpBs];
      // Settled, not all: a failing program must not leave the cron daemon running.
      const [sentR, cronR] = await Promise.allSettled([
        Promise.all(
          senders.flatMap((who) =>
            programs.map((program) => program(bed, who, homes.get(who.name)!, rcpt))
          ),
        ).then((lists) => lists.flat()),
        runCron(bed, users[2]!, users[0]!, rcpt, cronTokens, async () => {
          for (const t of [...cronTokens.crontab, ...cronTokens.cronD]) await take(t, 60_000);
        }),
      ]);
      const submitted = Date.now() - started;
      if (sentR.status === "rejected") throw sentR.reason;
      if (cronR.status === "rejected") throw cronR.reason;
      const [sent, cronOut] = [sentR.value, cronR.value];

      for (const s of sent) {
        const who = `${s.what} as ${s.login}`;
        assert.equal(s.res.code, 0, `${who}: exit ${s.res.code}: ${s.res.stderr}${s.res.stdout}`);
        assert.equal(s.res.stderr, "", `${who}: stderr`);
        assert.equal(s.res.stdout, s.stdout ?? "", `${who}: stdout`);
        for (const t of s.tokens) expected.set(t, s.login);
      }
      // Whatever the mailer wrote would come out of cron's own stdout/stderr.
      assert.equal(cronOut.stdout, "", "cron stdout (mailer output)");
      assert.equal(cronOut.stderr, "", "cron stderr (mailer output)");
      assert.equal(expected.size, senders.length * programs.length * PER_PROGRAM + 2 * PER_PROGRAM);

      for (const tok of expected.keys()) if (!mails.has(tok)) await take(tok, 60_000);
      const delivered = Date.now() - started;

      for (const [tok, login] of expected) {
        const msg = parseMessage(mails.get(tok)!);
        assert.deepEqual(
          msg.header("Return-Path"),
          [`<${login}@sat.test>`],
          `${tok}\n${msg.headers}`,
        );
        assert.ok(msg.header("Subject").join(" ").includes(tok) || msg.body.includes(tok));
        if (tok.startsWith("cron")) {
          // The job ran as that login, and cron mailed its output.
          assert.match(msg.body, new RegExp(`${tok}\\n${login}\\n$`), msg.body);
        }
      }

      // Everything left the queue; then nothing may come a second time.
      const q = await bed.sendAs(ROOT, ["-bp"]);
      assert.equal(q.code, 0, q.stderr);
      assert.equal(q.stdout, "Mail queue is empty\n");
      await sleep(2000);
      for (const tok of expected.keys()) await expectNoToken(box, tok, 0);
      console.log(
        `${expected.size} messages from ${senders.length} accounts and cron: ` +
          `every program and cron done in ${submitted} ms, all delivered in ${delivered} ms`,
      );
    } finally {
      await bed.stop();
    }
  },
);

/** mailq's short queue id of a service id (m<32 hex>: its first ten, upper case). */
function short(id: string): string {
  return id.slice(1, 11).toUpperCase();
}

/** Fields of the service's syslog lines (`key=value`, `key="quoted"`). */
function fieldsOf(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g)) {
    out[m[1]!] = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!;
  }
  return out;
}

Deno.test(
  "service: relay down for a while, then back: nothing lost, nothing doubled, each sender's mailq shows only their own mail",
  async () => {
    let syslog: Syslog | undefined;
    let bed: ServiceBed | undefined;
    try {
      // Before the service starts: its logger(1) connects to /dev/log once.
      syslog = await startSyslog();
      bed = await startServiceBed({ deferStart: true });
      const b = bed;
      await b.writeConfig([], closedPort());
      await b.start();
      const started = Date.now();
      const users = [await account("rsmu1"), await account("rsmu2"), await account("rsmu3")];
      const senders = [...users, ROOT];
      const box = b.mailbox(RCPT);
      const mailq = `${b.dir}/mailq`;
      await Deno.symlink(b.sendmail, mailq);

      // Each sender's recipients are its own (RCPT+<login>-<n>, one Maildir).
      const plan = senders.map((who) => ({
        who,
        messages: Array.from({ length: PER_PROGRAM }, (_, i) => ({
          tok: token(`down-${who.name}-${i}`),
          rcpt: `${RCPT}+${who.name}-${i}@${b.domain}`,
        })),
      }));
      const results = await Promise.all(
        plan.flatMap(({ who, messages }) =>
          messages.map(async (m, i) => {
            // Two on the command line, one through an SMTP session (-bs).
            if (i < 2) {
              return await b.sendAs(who, ["-oi", "--", m.rcpt], `Subject: ${m.tok}\n\n${m.tok}\n`);
            }
            const smtp = [
              "EHLO sat.test",
              `MAIL FROM:<${who.name}>`,
              `RCPT TO:<${m.rcpt}>`,
              "DATA",
              `Subject: ${m.tok}`,
              "",
              m.tok,
              ".",
              "QUIT",
              "",
            ].join("\r\n");
            const res = await b.sendAs(who, ["-bs"], smtp);
            assert.match(res.stdout, /\r\n250 2\.0\.0 Ok: queued as [0-9a-f]+\r\n221 /, res.stdout);
            return { ...res, stdout: "" };
          })
        ),
      );
      for (const res of results) {
        assert.equal(res.code, 0, res.stderr);
        assert.equal(res.stdout + res.stderr, "");
      }
      const total = senders.length * PER_PROGRAM;

      // Root sees every message once it was tried (and deferred) once.
      let all: Queued[] = [];
      let last = "";
      await waitFor("every message deferred once", async () => {
        const q = await b.sendAs(ROOT, ["-bp"]);
        last = `${q.code} ${q.stdout}${q.stderr}`;
        if (q.code !== 0 || q.stdout === "Mail queue is empty\n") return false;
        all = parseMailq(q.stdout).messages;
        return all.length === total && all.every((m) => m.attempts === 1);
      }, 60_000).catch((err) => {
        throw new Error(`${err.message}; root's last mailq: ${last}`);
      });
      const deferredAt = Date.now();
      const deferredAfter = deferredAt - started;
      for (const m of all) {
        assert.match(m.reason!, /^4\.4\.1 sshsendmail: .*refused/, m.reason);
      }

      // Each sender's mailq: their own messages, nobody else's.
      const idsOf = new Map<string, string[]>();
      for (const { who, messages } of plan) {
        const q = await b.sendAs(who, ["-bp"]);
        assert.equal(q.code, 0, q.stderr);
        assert.equal(q.stderr, "");
        const { messages: mine, requests } = parseMailq(q.stdout);
        if (who.uid === 0) {
          assert.equal(requests, total, q.stdout);
        } else {
          assert.equal(requests, PER_PROGRAM, `${who.name}:\n${q.stdout}`);
          assert.deepEqual(
            mine.map((m) => m.recipients).flat().sort(),
            messages.map((m) => m.rcpt).sort(),
            q.stdout,
          );
          for (const m of mine) assert.equal(m.sender, `${who.name}@sat.test`, q.stdout);
          for (const other of plan) {
            if (other.who === who) continue;
            assert.ok(
              !q.stdout.includes(`+${other.who.name}-`),
              `${who.name} sees others:\n${q.stdout}`,
            );
            assert.ok(!q.stdout.includes(`${other.who.name}@sat.test`), q.stdout);
          }
          idsOf.set(who.name, mine.map((m) => m.id));
        }
        // `mailq` is the same listing.
        const named = await b.sendAs(who, [mailq]);
        assert.equal(named.code, 0, named.stderr);
        const stable = (t: string) => t.replace(/next try (now|in \w+)/g, "next try …");
        assert.equal(stable(named.stdout), stable(q.stdout));
      }
      // root's own three are in root's listing, under root@sat.test.
      const rootOwn = all.filter((m) => m.sender === "root@sat.test");
      assert.equal(rootOwn.length, PER_PROGRAM);
      idsOf.set("root", rootOwn.map((m) => m.id));
      const owners = new Map<string, string>(); // id → login
      for (const [login, ids] of idsOf) for (const id of ids) owners.set(id, login);
      assert.equal(owners.size, total, "the users' ids are disjoint and cover root's listing");
      assert.deepEqual([...owners.keys()].sort(), all.map((m) => m.id).sort());

      // A user's -q while the relay is still down: the whole queue is tried
      // again (as postqueue -f), the answer counts only their own three.
      const early = await b.sendAs(users[0]!, ["-q", "-v"]);
      assert.equal(early.code, 75, `${early.stdout}${early.stderr}`);
      assert.equal(early.stderr, "");
      assert.match(
        early.stdout,
        /^sshsendmail: delivered 0, deferred 3, failed 0, expired 0; 3 waiting \(4\.4\.1 .*refused.*\)\n$/,
      );
      const afterEarly = parseMailq((await b.sendAs(ROOT, ["-bp"])).stdout).messages;
      for (const m of afterEarly) {
        assert.equal(m.attempts, 2, m.id);
      }
      await sleep(500);
      for (const { messages } of plan) for (const m of messages) await expectNoToken(box, m.tok, 0);

      // The service's log: accepted (as the drop's owner) and deferred, per message.
      const uidOf = new Map(senders.map((s) => [s.name, s.uid]));
      const ofService = (pid: number | undefined) => (l: string) =>
        l.includes(`sshsendmail[${pid}]: `);
      const downLines = (await syslog.newLines()).filter(ofService(b.pid()));
      const accepted = downLines.filter((l) => l.includes(" event=accepted ")).map(fieldsOf);
      assert.equal(accepted.length, total, downLines.join("\n"));
      for (const f of accepted) {
        const login = owners.get(short(f.id!));
        assert.ok(login, `accepted ${f.id} is not listed`);
        assert.equal(f.uid, String(uidOf.get(login)), `accepted ${f.id}`);
        assert.equal(f.sender, `<${login}@sat.test>`);
        assert.equal(f.rcpts, "1");
      }
      const deferred = downLines.filter((l) => l.includes(" event=deferred ")).map(fieldsOf);
      for (const [id, login] of owners) {
        const mine = deferred.filter((f) => short(f.id!) === id);
        assert.equal(mine.length, 2, `deferred lines of ${id} (the first try, then the -q)`);
        for (const f of mine) {
          assert.equal(f.uid, String(uidOf.get(login)));
          assert.match(f.reason!, /^4\.4\.1 .*refused/);
        }
      }
      assert.ok(
        downLines.every((l) => !/ event=(delivered|duplicate|failed|expired|setaside) /.test(l)),
        downLines.join("\n"),
      );

      // The relay comes back (the service restarts with its queue).
      await b.stopService();
      await b.writeConfig();
      await b.start();
      const back = Date.now();
      await syslog.waitForLine(
        new RegExp(`sshsendmail\\[${b.pid()}\\]: event=started .*queued=${total}\\b`),
      );

      // One user's -q (the one whose next try is two minutes away): the
      // service runs their messages now.
      const q2 = await b.sendAs(users[0]!, ["-q", "-v"]);
      assert.equal(q2.code, 0, `${q2.stdout}${q2.stderr}`);
      assert.equal(q2.stderr, "");
      assert.equal(
        q2.stdout,
        "sshsendmail: delivered 3, deferred 0, failed 0, expired 0; 0 waiting\n",
      );
      const afterFlush = Date.now() - back;
      assert.equal((await b.sendAs(users[0]!, ["-bp"])).stdout, "Mail queue is empty\n");
      const leftAfterFlush = parseMailq((await b.sendAs(ROOT, ["-bp"])).stdout).messages.length;

      // The others come with the service's own retry (one minute after their deferral).
      for (const { who, messages } of plan) {
        for (const m of messages) {
          const msg = parseMessage(await takeByToken(box, m.tok, 120_000));
          assert.deepEqual(msg.header("Return-Path"), [`<${who.name}@sat.test>`], msg.headers);
          assert.deepEqual(msg.header("Delivered-To"), [`${m.rcpt}`], msg.headers);
          assert.deepEqual(msg.header("Subject"), [m.tok]);
        }
      }
      const allBack = Date.now() - back;
      const retried = Date.now() - deferredAt;

      // Nothing waits for anyone; a second run finds nothing and delivers nothing.
      for (const who of senders) {
        const q = await b.sendAs(who, ["-bp"]);
        assert.equal(q.code, 0, q.stderr);
        assert.equal(q.stdout, "Mail queue is empty\n", who.name);
        const again = await b.sendAs(who, ["-q", "-v"]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal(
          again.stdout,
          "sshsendmail: delivered 0, deferred 0, failed 0, expired 0; 0 waiting\n",
        );
      }
      await sleep(2000);
      for (const { messages } of plan) for (const m of messages) await expectNoToken(box, m.tok, 0);

      const upLines = (await syslog.newLines()).filter(ofService(b.pid()));
      const delivered = upLines.filter((l) => l.includes(" event=delivered ")).map(fieldsOf);
      assert.equal(delivered.length, total, upLines.join("\n"));
      assert.deepEqual(delivered.map((f) => short(f.id!)).sort(), [...owners.keys()].sort());
      for (const f of delivered) {
        const login = owners.get(short(f.id!))!;
        assert.equal(f.uid, String(uidOf.get(login)));
        assert.equal(f.sender, `<${login}@sat.test>`);
        assert.equal(f.host, b.relay.host);
      }
      assert.ok(
        upLines.every((l) => !/ event=(duplicate|failed|expired|setaside|deferred) /.test(l)),
        upLines.join("\n"),
      );
      console.log(
        `${total} messages: all deferred ${deferredAfter} ms after the start; relay back: ` +
          `one user's -q ${afterFlush} ms (${leftAfterFlush} others still queued), ` +
          `everything delivered ${allBack} ms after the restart, ${retried} ms after the deferral`,
      );
    } finally {
      await bed?.stop();
      await syslog?.stop();
    }
  },
);
