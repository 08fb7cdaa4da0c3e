/**
 * End to end, with real programs only: a satellite Postfix instance whose
 * default transport is a pipe(8) service running dist/sshsendmail as the
 * service's account `sshsendmail` → a real sshd with a forced-command key →
 * dist/rsendmail → the relay's Postfix → a Maildir on the relay.
 *
 * The master.cf lines and main.cf settings are README.md's own ("Postfix
 * `pipe(8)` transport", read by tests/e2e/_recipes.ts): only the absolute
 * paths are replaced (dist/sshsendmail, the test's key and known_hosts)
 * and `--port` added for the private relay; `${nexthop}` comes from
 * `relayhost = rsmrelay@127.0.0.1`. The broken, seed-style and misspelt
 * services are that line with one change each.
 *
 * The ssh connection goes through a TCP gate (tests/e2e/_satellite.ts) so
 * that the relay can go down and come back on the same port while the pipe
 * line stays the same.
 *
 * Run as root: deno task test tests/e2e/postfix_pipe_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  account,
  clearMailbox,
  concat,
  expectNoMail,
  type Mailbox,
  RSENDMAIL,
  SSHSENDMAIL,
  startPostfix,
  startRelay,
  takeMail,
} from "./_bed.ts";
import { unitCommand } from "./_service.ts";
import { openGate, type Satellite, split, startSatellite, waitingForRetry } from "./_satellite.ts";
import { pipeRecipe, substitute } from "./_recipes.ts";

const latin1 = new TextDecoder("latin1");

function header(head: string, name: string): string | undefined {
  const m = new RegExp(`^${name}: ?(.*(?:\\n[ \\t].*)*)$`, "mi").exec(head);
  return m?.[1]?.trim();
}

Deno.test({
  name: "Postfix satellite: pipe(8) → sshsendmail → sshd → rsendmail → relay Postfix → Maildir",
  // The gate's sockets are closed in `finally`; their pump promises settle later.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const postfix = await startPostfix();
    const box: Mailbox = postfix.mailbox("rsmsatpipe");
    await clearMailbox(box); // leftovers of an earlier failed run
    const rcpt = `${box.user}@${postfix.domain}`;
    const relay = await startRelay();
    const gate = openGate(relay.port);
    let sat: Satellite | undefined;
    try {
      // README's recipe, line for line: the pipe runs as the service's account,
      // which owns the key.
      const recipe = await pipeRecipe();
      assert.match(recipe.master[0]!, new RegExp(`^${recipe.service} unix .* pipe user=(\\S+)$`));
      const pipeUser = /\buser=(\S+)$/.exec(recipe.master[0]!)![1]!;
      assert.equal(pipeUser, (await unitCommand()).user, "the pipe runs as the service's account");
      await account(pipeUser, true);
      const key = await relay.addKey(`restrict,command="${RSENDMAIL} --label sat"`, pipeUser);
      // The relay's host key, listed for the gate's port.
      const knownHosts = `${relay.dir}/known_hosts_gate`;
      await Deno.writeTextFile(
        knownHosts,
        (await Deno.readTextFile(relay.knownHosts)).replace(
          /^\[127\.0\.0\.1\]:\d+/,
          `[127.0.0.1]:${gate.port}`,
        ),
      );
      await Deno.chmod(knownHosts, 0o644);
      // Only the absolute paths change; the private relay's port is the one option added.
      const readme = substitute(recipe.master, {
        "/usr/sbin/sshsendmail": SSHSENDMAIL,
        "/etc/sshsendmail/id_ed25519": key,
        "/etc/sshsendmail/known_hosts": knownHosts,
      }).map((l) => l.replace(" -f ${sender}", ` --port ${gate.port} -f \${sender}`));
      assert.ok(readme[1]!.includes(`--port ${gate.port} -f`), readme.join("\n"));
      /** The README line as another service, changed by `edit`. */
      const variant = (name: string, edit: (line: string) => string) => {
        const renamed = readme.map((l) => l.replace(new RegExp(`^${recipe.service} `), `${name} `));
        const edited = renamed.map(edit);
        assert.notEqual(edited.join("\n"), renamed.join("\n"), `${name}: the change applies`);
        return edited;
      };
      // main.cf as README says: default_transport without a nexthop, relayhost USER@HOST.
      assert.match(recipe.relayhost, /^[^@\s]+@[^@\s]+$/);
      const relayhost = `${relay.user}@127.0.0.1`;
      sat = await startSatellite({
        services: [
          ...readme,
          ...variant(
            "rsmbroken",
            (l) => l.replace(" -f ${sender}", " --no-such-option -f ${sender}"),
          ),
          // The seed's line (no `--`) with flags=q: pipe(8) quotes local parts itself.
          ...variant(
            "rsmq",
            (l) =>
              l.replace(" pipe user=", " pipe flags=q user=").replace(
                " -- ${recipient}",
                " ${recipient}",
              ),
          ),
          ...variant("rsmtypo", (l) => l.replace(" --host ", " --hots ")),
        ],
        defaultTransport: recipe.defaultTransport,
        relayhost,
        transports: {
          "bounce.test": "error:5.1.1 no such user here (test)",
          "broken.test": `rsmbroken:${relayhost}`,
          "typo.test": `rsmtypo:${relayhost}`,
        },
        senderTransports: { "@q.sat.test": `rsmq:${relayhost}` },
      });
      const s = sat;
      await s.purge();
      await s.waitQueue((q) => q.length === 0, "empty queue at start");

      /** Injects one message and returns what the relay's Maildir got. */
      const roundTrip = async (sender: string, body: string | Uint8Array, subject: string) => {
        const message = concat(`Subject: ${subject}\nTo: ${rcpt}\n\n`, body);
        const res = await s.sendmail(["-i", "-f", sender, "--", rcpt], message);
        assert.equal(res.code, 0, res.stderr);
        const got = split(await takeMail(box, 20000));
        assert.equal(header(got.head, "Subject"), subject);
        await s.waitQueue((q) => q.length === 0, "queue empty after delivery");
        return got;
      };

      await t.step("a plain message is delivered with its sender and body", async () => {
        const got = await roundTrip("alice@sat.test", "Hello relay.\n", "sat plain");
        assert.equal(header(got.head, "Return-Path"), "<alice@sat.test>");
        assert.equal(latin1.decode(got.body), "Hello relay.\n");
        const log = (await s.newLog()).join("\n");
        assert.match(
          log,
          new RegExp(`to=<${rcpt}>, relay=rsendmail, .*dsn=2\\.0\\.0, status=sent`),
        );
      });

      await t.step(
        "a bounce (null sender, MAILER-DAEMON in pipe) arrives with Return-Path <>",
        async () => {
          const res = await s.sendmail(
            ["-i", "-f", rcpt, "--", "nobody@bounce.test"],
            `Subject: will bounce\nTo: nobody@bounce.test\n\nbounce me\n`,
          );
          assert.equal(res.code, 0, res.stderr);
          const got = split(await takeMail(box, 20000));
          assert.equal(header(got.head, "Return-Path"), "<>");
          assert.match(header(got.head, "From") ?? "", /MAILER-DAEMON@sat\.test/);
          assert.match(header(got.head, "Subject") ?? "", /Undelivered Mail Returned to Sender/);
          assert.match(latin1.decode(got.body), /no such user here \(test\)/);
          await s.waitQueue((q) => q.length === 0, "queue empty after the bounce");
          const log = (await s.newLog()).join("\n");
          assert.match(log, /from=<>/);
          assert.match(log, new RegExp(`to=<${rcpt}>, relay=rsendmail, .*status=sent`));
        },
      );

      await t.step("sender o'brien@sat.test arrives exactly", async () => {
        const got = await roundTrip("o'brien@sat.test", "apostrophe\n", "sat obrien");
        assert.equal(header(got.head, "Return-Path"), "<o'brien@sat.test>");
      });

      await t.step('sender "quoted local"@sat.test arrives exactly', async () => {
        const got = await roundTrip('"quoted local"@sat.test', "quoted\n", "sat quoted");
        assert.equal(header(got.head, "Return-Path"), '<"quoted local"@sat.test>');
      });

      await t.step(
        'seed-style line with flags=q: "quoted local" and o\'brien senders',
        async () => {
          for (const sender of ['"quoted local"@q.sat.test', "o'brien@q.sat.test"]) {
            const got = await roundTrip(sender, "via flags=q\n", `sat q ${sender}`);
            assert.equal(header(got.head, "Return-Path"), `<${sender}>`);
          }
          const log = (await s.newLog()).join("\n");
          assert.match(log, new RegExp(`to=<${rcpt}>, relay=rsmq, .*status=sent`));
        },
      );

      await t.step("an 8-bit body with a lone '.' line arrives byte for byte", async () => {
        const body = concat(
          "Gr\u00fc\u00dfe aus dem Satelliten \u2014 UTF-8.\n",
          ".\n",
          "after the dot line\n",
          new Uint8Array([0xe9, 0x74, 0xe9, 0x0a]), // "été" in Latin-1: not UTF-8 at all
          "..\n",
          "last line\n",
        );
        const got = await roundTrip("eight@sat.test", body, "sat 8bit");
        assert.deepEqual(got.body, body);
      });

      await t.step(
        "relay down: deferred with a 4.4.1 reason, delivered after it comes back",
        async () => {
          gate.close();
          const res = await s.sendmail(
            ["-i", "-f", "later@sat.test", "--", rcpt],
            "Subject: sat deferred\n\nwaited for the relay\n",
          );
          assert.equal(res.code, 0, res.stderr);
          const q = await s.waitQueue(
            (q) => q.some(waitingForRetry),
            "a deferred message",
          );
          assert.equal(q.length, 1);
          const reason = q[0]!.recipients[0]!.delay_reason!;
          // postqueue -j shows the text; the status code went into the DSN (log: dsn=4.4.1).
          assert.match(reason, /^sshsendmail: connection refused by the relay/, reason);
          assert.equal(q[0]!.sender, "later@sat.test");
          // Retries (1 s backoff) keep failing while it is down; nothing bounces.
          await expectNoMail(box, 2500);
          assert.equal((await s.queue()).length, 1);
          const log = (await s.newLog()).join("\n");
          assert.match(
            log,
            /relay=rsendmail, .*dsn=4\.4\.1, status=deferred \(sshsendmail: connection refused/,
          );
          gate.open();
          await s.flush();
          const got = split(await takeMail(box, 20000));
          assert.equal(header(got.head, "Subject"), "sat deferred");
          assert.equal(header(got.head, "Return-Path"), "<later@sat.test>");
          assert.equal(latin1.decode(got.body), "waited for the relay\n");
          await s.waitQueue((q) => q.length === 0, "queue empty after the relay came back");
        },
      );

      for (
        const [domain, what] of [["broken.test", "an unknown option"], [
          "typo.test",
          "a misspelt --host",
        ]]
      ) {
        await t.step(`a pipe line with ${what} defers (never bounces)`, async () => {
          const res = await s.sendmail(
            ["-i", "-f", rcpt, "--", `x@${domain}`],
            `Subject: broken line\n\nnot to be bounced\n`,
          );
          assert.equal(res.code, 0, res.stderr);
          const q = await s.waitQueue(
            (q) => q.some(waitingForRetry),
            "a deferred message",
          );
          const reason = q[0]!.recipients[0]!.delay_reason!;
          assert.match(reason, /^sshsendmail: unknown or malformed option/, reason);
          const log = (await s.newLog()).join("\n");
          assert.match(
            log,
            new RegExp(`to=<x@${domain}>, relay=rsm\\w+, .*dsn=4\\.3\\.5, status=deferred`),
          );
          // A bounce would come back to the sender's mailbox through the relay.
          await expectNoMail(box, 2500);
          assert.equal((await s.queue()).length, 1);
          assert.ok(waitingForRetry((await s.queue())[0]!));
          await s.purge();
        });
      }
    } finally {
      gate.close();
      await sat?.purge();
      await sat?.stop();
      await relay.stop();
    }
  },
});
