/**
 * Adversarial suite, part 4: the client under attack. A relay whose host
 * key changed, a relay that answers garbage on stdout and stderr (a
 * test-only forced command script) and exits 0, 1 or 77, and a relay that
 * accepts and then hangs (given up after `ssh_timeout`). With `queue = no`
 * the standalone client defers (75) and says why in exactly one line; with
 * the satellite service as the client (its config names the hostile relay)
 * a user's message is taken at once (exit 0, silent), deferred with the
 * right reason, which `mailq` shows, and nothing is delivered; then the
 * service is pointed at a good relay and `sendmail -q` delivers each
 * message exactly once.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  account,
  expectNoToken,
  RSENDMAIL,
  run,
  type RunResult,
  SSHSENDMAIL,
  takeByToken,
  waitFor,
} from "./_bed.ts";
import { parseMessage } from "./_standalone.ts";
import { type ServiceBed, startServiceBed } from "./_service.ts";
import { CLIENT_LINE } from "./_adversarial.ts";
import { type Mailq, parseMailq, type Queued } from "./_mailq.ts";
import { attempt } from "./_attack_table.ts";

const SECTION = "5. the client under attack";
const RUN = crypto.randomUUID().slice(0, 8);
const RCPT = "rsmadv4@relay.test";
/** The local account whose mail the service carries. */
const SENDER = "rsmadv4s";
const tokenOf = (what: string) => `adv4-${what}-${crypto.randomUUID().slice(0, 10)}`;
/** Relay junk that must never reach a caller or a listing. */
// deno-lint-ignore no-control-regex
const JUNK = /HACKED|junk|\u001b|\u0007/;

let bed: ServiceBed | undefined;
let scripts: string | undefined;
let dir: string | undefined;

// The request is what the client sends before it waits for an answer: a
// single message (the standalone client's direct mode) is read to its end;
// in batch mode (the service's session, which stays open while mail flows)
// it is the frame line.
const GARBAGE = `#!/bin/sh
# Test scaffolding: a "relay" that reads the request and answers junk.
case "$SSH_ORIGINAL_COMMAND" in
*--batch*) read -r request ;;
*) cat >/dev/null ;;
esac
printf '220 relay.example ESMTP ready\\r\\n\\033[31mHACKED\\033[0m\\n'
printf 'junk \\033]0;title\\007 line\\nmore junk\\n' >&2
exit "$1"
`;
const HANG = `#!/bin/sh
# Test scaffolding: a "relay" that accepts, reads everything, then hangs (15 s at most).
exec timeout 15 sh -c 'cat >/dev/null; sleep 15'
`;
const HANG_SECOND = `#!/bin/sh
# Test scaffolding: a batch "relay" that answers the first frame (without
# delivering it), then reads on and hangs (15 s at most).
read -r header
size=$(printf '%s\\n' "$header" | sed -n 's/.*--size=\\([0-9]*\\).*/\\1/p')
id=$(printf '%s\\n' "$header" | sed -n 's/.*--id=\\([^ ]*\\).*/\\1/p')
head -c "$size" >/dev/null
printf '%s 0 2.0.0 taken\\n' "$id"
exec timeout 15 sh -c 'cat >/dev/null; sleep 15'
`;

Deno.test("adversarial 4: the client under a changed host key, garbage and a hanging relay", async (t) => {
  try {
    bed = await startServiceBed();
    const b = bed;
    const relay = b.relay;
    const box = b.mailbox("rsmadv4");
    const sender = await account(SENDER);
    scripts = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-adv-cli-" });
    dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-adv-cli-" });
    await Deno.chmod(scripts, 0o755);
    await Deno.chmod(dir, 0o755);
    await Deno.writeTextFile(`${scripts}/garbage.sh`, GARBAGE, { mode: 0o755 });
    await Deno.writeTextFile(`${scripts}/hang.sh`, HANG, { mode: 0o755 });
    await Deno.chmod(`${scripts}/garbage.sh`, 0o755);
    await Deno.chmod(`${scripts}/hang.sh`, 0o755);
    await Deno.writeTextFile(`${scripts}/hang-second.sh`, HANG_SECOND, { mode: 0o755 });
    await Deno.chmod(`${scripts}/hang-second.sh`, 0o755);

    // The keys belong to the service's account (root's direct sends read them too).
    const owner = b.service.name;
    const good = await relay.addKey(`restrict,command="${RSENDMAIL} --label cli-${RUN}"`, owner);
    const garbage = new Map<number, string>();
    for (const code of [0, 1, 77]) {
      garbage.set(
        code,
        await relay.addKey(`restrict,command="${scripts}/garbage.sh ${code}"`, owner),
      );
    }
    const hang = await relay.addKey(`restrict,command="${scripts}/hang.sh"`, owner);
    const hangSecond = await relay.addKey(
      `restrict,command="${scripts}/hang-second.sh"`,
      owner,
    );
    // A known_hosts that names another key for this relay: a changed host key.
    await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/other_host`]);
    const otherPub = (await Deno.readTextFile(`${dir}/other_host.pub`)).trim().split(" ");
    const changedKnownHosts = `${dir}/changed_known_hosts`;
    await Deno.writeTextFile(
      changedKnownHosts,
      `[127.0.0.1]:${relay.port} ${otherPub[0]} ${otherPub[1]}\n`,
      { mode: 0o644 },
    );

    /** The standalone client's config, sending directly (queue = no). */
    const conf = async (key: string, extra: string[], knownHosts = relay.knownHosts) => {
      const path = `${dir}/noqueue.conf`;
      await Deno.writeTextFile(
        path,
        [
          "host = 127.0.0.1",
          `user = ${relay.user}`,
          `port = ${relay.port}`,
          `identity = ${key}`,
          `known_hosts = ${knownHosts}`,
          "connect_timeout = 5",
          "queue = no",
          ...extra,
          "",
        ].join("\n"),
      );
      return path;
    };
    const client = (config: string, args: string[], stdin?: string): Promise<RunResult> =>
      run(SSHSENDMAIL, args, {
        check: false,
        env: { SSHSENDMAIL_CONFIG: config, HOME: dir!, PATH: "/usr/bin:/bin" },
        ...(stdin === undefined ? {} : { stdin }),
      });
    /** The service restarted with its config naming this relay key (and known_hosts). */
    const serviceAt = async (key: string, extra: string[] = [], knownHosts?: string) => {
      await b.stopService();
      await b.writeConfig([
        `identity = ${key}`,
        ...(knownHosts === undefined ? [] : [`known_hosts = ${knownHosts}`]),
        ...extra,
      ]);
      await b.start();
    };
    /** The sender's `mailq`: the service's listing, strictly parsed, never relay junk. */
    const mailq = async (): Promise<Mailq> => {
      const res = await b.sendAs(sender, ["-bp"]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stderr, "");
      assert.doesNotMatch(res.stdout, JUNK, "no relay junk in mailq");
      return parseMailq(res.stdout);
    };
    const mail = (tok: string) =>
      `From: adv4 <adv4@relay.test>\nTo: ${RCPT}\nSubject: ${tok}\n\nbody ${tok}\n.\nend\n`;

    const attacks: Array<
      {
        name: string;
        key: string;
        knownHosts?: string;
        extra?: string[];
        code: number;
        line: RegExp;
        /** The service's reason for the deferral. */
        deferred: RegExp;
        maxMs?: number;
      }
    > = [
      {
        name: "relay host key changed",
        key: good,
        knownHosts: changedKnownHosts,
        code: 75,
        line: /^4\.7\.0 sshsendmail: relay host key verification failed/,
        deferred: /^4\.7\.0 sshsendmail: relay host key verification failed \(check known_hosts\)$/,
      },
      {
        name: "relay answers garbage, exits 0",
        key: garbage.get(0)!,
        code: 75,
        line: /^4\.5\.0 sshsendmail: the relay answered with unexpected output\n$/,
        deferred: /^4\.4\.2 sshsendmail: the relay answered out of turn$/,
      },
      {
        name: "relay answers garbage, exits 1",
        key: garbage.get(1)!,
        code: 75,
        line: /^4\.3\.0 sshsendmail: relay failed \(exit 1\)\n$/,
        deferred: /^4\.4\.2 sshsendmail: the relay answered out of turn$/,
      },
      {
        // A relay that talks garbage has refused nothing: the service keeps the message.
        name: "relay answers garbage, exits 77",
        key: garbage.get(77)!,
        code: 77,
        line: /^5\.3\.0 sshsendmail: relay failed \(exit 77\)\n$/,
        deferred: /^4\.4\.2 sshsendmail: the relay answered out of turn$/,
      },
      {
        name: "relay accepts, then hangs (ssh_timeout = 3)",
        key: hang,
        extra: ["ssh_timeout = 3"],
        code: 75,
        line: /^4\.4\.2 sshsendmail: no answer from the relay within ssh_timeout \(3 s\)\n$/,
        deferred: /^4\.4\.2 sshsendmail: no answer from the relay within ssh_timeout \(3 s\)$/,
        maxMs: 8000,
      },
    ];

    const queued: string[] = [];
    for (const a of attacks) {
      await t.step(`${a.name}: queue = no → ${a.code}, one line`, async () => {
        await attempt(SECTION, a.name, async () => {
          const config = await conf(a.key, a.extra ?? [], a.knownHosts);
          const tok = tokenOf("noqueue");
          const started = performance.now();
          const res = await client(config, ["-oi", "--", RCPT], mail(tok));
          const ms = performance.now() - started;
          assert.equal(res.code, a.code, res.stderr);
          assert.equal(res.stdout, "");
          assert.match(res.stderr, CLIENT_LINE, `one line: ${JSON.stringify(res.stderr)}`);
          assert.match(res.stderr, a.line);
          assert.doesNotMatch(res.stderr, JUNK, "no relay junk reaches the caller");
          if (a.maxMs) assert.ok(ms < a.maxMs, `gave up after ${Math.round(ms)} ms`);
          return "refused";
        });
      });
      await t.step(`${a.name}: with the service`, async () => {
        await attempt(SECTION, a.name, async () => {
          await serviceAt(a.key, a.extra, a.knownHosts);
          const before = new Set((await mailq()).messages.map((m) => m.id));
          const tok = tokenOf("service");
          const started = performance.now();
          const res = await b.sendAs(sender, ["-oi", "--", RCPT], mail(tok));
          assert.deepEqual({ code: res.code, out: res.stdout, err: res.stderr }, {
            code: 0,
            out: "",
            err: "",
          });
          let mine: Queued | undefined;
          await waitFor(`${a.name}: the message deferred`, async () => {
            mine = (await mailq()).messages.find((m) => !before.has(m.id));
            return mine?.reason !== undefined;
          }, 30_000);
          const ms = performance.now() - started;
          assert.match(mine!.reason!, a.deferred);
          assert.equal(mine!.attempts, 1);
          assert.equal(mine!.sender, `${SENDER}@sat.test`);
          assert.deepEqual(mine!.recipients, [RCPT]);
          if (a.maxMs) assert.ok(ms < a.maxMs, `deferred after ${Math.round(ms)} ms`);
          await expectNoToken(box, tok, 300);
          queued.push(tok);
          return "refused";
        });
      });
    }

    await t.step(
      "-bs: the relay answers the first message, then hangs: the second gets 451 within ssh_timeout",
      async () => {
        const config = await conf(hangSecond, ["ssh_timeout = 3"]);
        const message = (tok: string) => [
          `MAIL FROM:<${SENDER}@sat.test>`,
          `RCPT TO:<${RCPT}>`,
          "DATA",
          `Subject: ${tok}`,
          "",
          `body ${tok}`,
          ".",
        ];
        const dialogue = [
          "EHLO sat.test",
          ...message(tokenOf("bs1")),
          ...message(tokenOf("bs2")),
          "QUIT",
          "",
        ].join("\r\n");
        const started = performance.now();
        const res = await client(config, ["-bs"], dialogue);
        const ms = performance.now() - started;
        assert.equal(res.code, 0, res.stderr);
        const replies = res.stdout.split("\r\n").filter((l) => /^(250 2\.0\.0|451|221)/.test(l));
        assert.match(replies[0] ?? "", /^250 2\.0\.0 Ok: sent as \S+$/, res.stdout);
        assert.equal(
          replies[1],
          "451 4.4.2 sshsendmail: no answer from the relay within ssh_timeout (3 s)",
          res.stdout,
        );
        assert.match(replies[2] ?? "", /^221 /, res.stdout);
        assert.ok(ms < 10_000, `gave up after ${Math.round(ms)} ms`);
      },
    );

    await t.step(
      "mailq shows every deferred message; a flush to a good relay delivers each once",
      async () => {
        const n = queued.length;
        const listed = await mailq();
        assert.equal(listed.messages.length, n, JSON.stringify(listed));
        for (const m of listed.messages) {
          assert.match(m.reason ?? "", /^4\.\d\.\d sshsendmail: /, m.id);
        }
        // `sendmail -q` while the service talks to the garbage relay: all stay.
        await serviceAt(garbage.get(0)!);
        const garbageFlush = await b.sendAs(sender, ["-q", "-v"]);
        assert.equal(garbageFlush.code, 75, garbageFlush.stderr);
        assert.equal(
          garbageFlush.stdout,
          `sshsendmail: delivered 0, deferred ${n}, failed 0, expired 0; ${n} waiting (4.4.2 sshsendmail: the relay answered out of turn)\n`,
        );
        const again = await mailq();
        assert.deepEqual(
          again.messages.map((m) => m.id).sort(),
          listed.messages.map((m) => m.id).sort(),
          "queue intact",
        );
        for (const tok of queued) await expectNoToken(box, tok, 0);
        await serviceAt(good);
        const flush = await b.sendAs(sender, ["-q", "-v"]);
        assert.deepEqual({ code: flush.code, out: flush.stdout, err: flush.stderr }, {
          code: 0,
          out: `sshsendmail: delivered ${n}, deferred 0, failed 0, expired 0; 0 waiting\n`,
          err: "",
        });
        for (const tok of queued) {
          await attempt(
            SECTION,
            "service queue after the attacks, flushed to a good relay",
            async () => {
              const got = parseMessage(await takeByToken(box, tok));
              assert.equal(got.body, `body ${tok}\n.\nend\n`);
              assert.deepEqual(got.header("Return-Path"), [`<${SENDER}@sat.test>`]);
              return "delivered";
            },
          );
        }
        // Exactly once each.
        for (const tok of queued) await expectNoToken(box, tok, 300);
        assert.equal((await b.sendAs(sender, ["-bp"])).stdout, "Mail queue is empty\n");
        assert.deepEqual(
          await Array.fromAsync(Deno.readDir(`${b.spool}/queue/state`)),
          [],
          "a delivered message leaves no retry state behind",
        );
      },
    );
  } finally {
    await teardown();
  }
});

/** Stops what this file started (also run when a filter skips the rest). */
async function teardown(): Promise<void> {
  const b = bed;
  bed = undefined;
  await b?.stop();
  if (scripts) await Deno.remove(scripts, { recursive: true }).catch(() => {});
  if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  scripts = dir = undefined;
}
