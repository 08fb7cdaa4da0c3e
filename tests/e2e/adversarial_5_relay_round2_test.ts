/**
 * The relay's second hardening round (issue 12), end to end: the BUILT
 * dist/rsendmail as a forced command behind a real sshd, the real Postfix
 * behind it. Each test is named after the attack it stops and carries a
 * positive control that differs only by the attack.
 *
 * Mail goes to this file's own account (rsmhard), found by a unique token.
 *
 * @module
 */

import assert from "node:assert/strict";
import { quoteWords } from "../../lib/shared/words.ts";
import {
  expectNoToken,
  type Mailbox,
  plantAged,
  type Postfix,
  type Relay,
  relayStatePath,
  RSENDMAIL,
  run,
  type RunResult,
  sha256Hex,
  startPostfix,
  startRelay,
  takeByToken,
  token,
} from "./_bed.ts";
import { attempt, record } from "./_attack_table.ts";

const SECTION = "6. stolen key, second round";

/**
 * One step, also one row of the attack table: a refusal (its name starts
 * with "refuses", or it says "is refused") or a correct delivery.
 */
async function step(t: Deno.TestContext, name: string, fn: () => Promise<void>): Promise<void> {
  const outcome = /^refuses|is refused|are refused/.test(name) ? "refused" : "delivered";
  await t.step(name, () =>
    attempt(SECTION, name, async () => {
      await fn();
      return outcome;
    }));
}

const ACCOUNT = "rsmhard";

/** This file's bed: Postfix, its mailbox, the relay and one key forced to `rsendmail OPTIONS`. */
async function withRelayBed(
  options: string,
  fn: (bed: { postfix: Postfix; box: Mailbox; relay: Relay; key: string }) => Promise<void>,
): Promise<void> {
  const postfix = await startPostfix();
  const box = postfix.mailbox(ACCOUNT);
  const relay = await startRelay();
  try {
    const key = await relay.addKey(`restrict,command="${RSENDMAIL} ${options}"`);
    await fn({ postfix, box, relay, key });
  } finally {
    await relay.stop();
  }
}

/** Sends `message` with the request words through ssh and the key. */
async function request(
  argv: string[],
  words: string[],
  message: string,
): Promise<RunResult> {
  const [cmd, ...args] = argv;
  return await run(cmd!, [...args, quoteWords(["sendmail", ...words])], {
    stdin: message,
    check: false,
  });
}

Deno.test("relay: program, file and include recipients are refused (5.1.3); a plain one is delivered", async (t) => {
  await withRelayBed(`--label hard`, async ({ postfix, box, relay, key }) => {
    const argv = relay.sshArgv(key);
    const attacks: [string, string][] = [
      ["program recipient |/usr/bin/id", "|/usr/bin/id"],
      ["quoted program recipient", `"|/usr/bin/touch /tmp/rsm-pwned"@${postfix.domain}`],
      ["file recipient /etc/passwd", "/etc/passwd"],
      ["quoted file recipient", `"/tmp/rsm-file"@${postfix.domain}`],
      ["include recipient", `":include:/etc/aliases"@${postfix.domain}`],
    ];
    for (const [name, rcpt] of attacks) {
      await step(t, `refuses ${name}`, async () => {
        const tok = token("prog");
        const res = await request(
          argv,
          ["-oi", "--", rcpt, `${ACCOUNT}@${postfix.domain}`],
          `Subject: ${tok}\n\n${tok}\n`,
        );
        assert.equal(res.code, 65, res.stderr);
        assert.match(
          res.stderr,
          /^5\.1\.3 rsendmail: program, file and include recipients are not allowed\n$/,
        );
        await expectNoToken(box, tok, 500);
      });
    }
    await step(
      t,
      "positive control: the same request without the attack is delivered",
      async () => {
        const tok = token("prog-ok");
        const res = await request(
          argv,
          ["-oi", "--", `${ACCOUNT}@${postfix.domain}`],
          `Subject: ${tok}\n\n${tok}\n`,
        );
        assert.equal(res.code, 0, res.stderr);
        assert.equal(res.stdout + res.stderr, "");
        await takeByToken(box, tok);
      },
    );
    assert.ok(!(await Deno.stat("/tmp/rsm-pwned").then(() => true, () => false)));
    assert.ok(!(await Deno.stat("/tmp/rsm-file").then(() => true, () => false)));
  });
});

/** A 1 KB-ish message holding `tok`, with these extra header lines. */
function message(tok: string, headers: string[] = []): string {
  return [...headers, `Subject: ${tok}`, "", `${tok}`, ""].join("\n");
}

Deno.test("relay: a stolen key is no spam cannon (--max-messages 2/hour, 4.7.0), another key still sends", async (t) => {
  const run1 = crypto.randomUUID().slice(0, 8);
  await withRelayBed(
    `--label rate-${run1} --max-messages 2/hour`,
    async ({ postfix, box, relay, key }) => {
      const other = await relay.addKey(`restrict,command="${RSENDMAIL} --label other-${run1}"`);
      const rcpt = `${ACCOUNT}@${postfix.domain}`;
      await step(
        t,
        "positive control: the first two messages of the hour are delivered",
        async () => {
          for (let i = 0; i < 2; i++) {
            const tok = token("rate");
            const res = await request(relay.sshArgv(key), ["-oi", "--", rcpt], message(tok));
            assert.equal(res.code, 0, res.stderr);
            await takeByToken(box, tok);
          }
        },
      );
      await step(t, "the third is refused for now (75, 4.7.0) and not delivered", async () => {
        const tok = token("rate3");
        const res = await request(relay.sshArgv(key), ["-oi", "--", rcpt], message(tok));
        assert.equal(res.code, 75, res.stderr);
        assert.equal(res.stderr, "4.7.0 rsendmail: message rate limit reached for this key\n");
        await expectNoToken(box, tok, 500);
      });
      await step(
        t,
        "a refused sendmail gives its slot back; another key is not limited",
        async () => {
          const tok = token("other");
          const res = await request(relay.sshArgv(other), ["-oi", "--", rcpt], message(tok));
          assert.equal(res.code, 0, res.stderr);
          await takeByToken(box, tok);
        },
      );
      await step(t, "20 concurrent sessions of a 5/hour key deliver exactly 5", async () => {
        const key5 = await relay.addKey(
          `restrict,command="${RSENDMAIL} --label rate5-${run1} --max-messages 5/hour"`,
        );
        const toks = Array.from({ length: 20 }, () => token("race"));
        const results = await Promise.all(
          toks.map((tok) => request(relay.sshArgv(key5), ["-oi", "--", rcpt], message(tok))),
        );
        assert.equal(results.filter((r) => r.code === 0).length, 5);
        assert.equal(results.filter((r) => r.code === 75).length, 15);
        for (const [i, tok] of toks.entries()) {
          if (results[i]!.code === 0) await takeByToken(box, tok);
          else await expectNoToken(box, tok, 100);
        }
      });
    },
  );
});

Deno.test("relay: --max-sessions 1 refuses a second concurrent session (4.7.0); after the first ends it is served", async () => {
  const run1 = crypto.randomUUID().slice(0, 8);
  await withRelayBed(
    `--label sess-${run1} --max-sessions 1`,
    async ({ postfix, box, relay, key }) => {
      const argv = relay.sshArgv(key);
      // The first session: a batch that stays open (no END yet).
      const { child: first, writer } = batchSession(argv, `${ACCOUNT}@${postfix.domain}`);
      // Wait until the relay runs it (its session file exists).
      const limitsDir = await relayStatePath(relay, `sess-${run1}.limits`);
      const deadline = Date.now() + 10_000;
      while (!(await sessionCount(limitsDir))) {
        if (Date.now() > deadline) throw new Error("first session never registered");
        await new Promise((r) => setTimeout(r, 50));
      }
      const tok = token("sess");
      const second = await request(
        argv,
        ["-oi", "--", `${ACCOUNT}@${postfix.domain}`],
        message(tok),
      );
      assert.equal(second.code, 75, second.stderr);
      assert.equal(second.stderr, "4.7.0 rsendmail: too many concurrent sessions for this key\n");
      await expectNoToken(box, tok, 300);
      record(SECTION, "a second concurrent session (--max-sessions 1)", "refused");
      await writer.write(new TextEncoder().encode("END\n"));
      await writer.close();
      const out = await first.output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const again = await request(
        argv,
        ["-oi", "--", `${ACCOUNT}@${postfix.domain}`],
        message(tok),
      );
      assert.equal(again.code, 0, again.stderr);
      await takeByToken(box, tok);
      record(SECTION, "the same session after the first ended (--max-sessions 1)", "delivered");
    },
  );
});

Deno.test("relay: --max-sessions 1 does not count a session file its relay stopped refreshing (it died; removed), but a live one refuses (4.7.0)", async () => {
  const run1 = crypto.randomUUID().slice(0, 8);
  await withRelayBed(
    `--label dead-${run1} --max-sessions 1`,
    async ({ postfix, box, relay, key }) => {
      const argv = relay.sshArgv(key);
      const words = ["-oi", "--", `${ACCOUNT}@${postfix.domain}`];
      const limitsDir = await relayStatePath(relay, `dead-${run1}.limits`);
      try {
        // A first session makes the key's limits directory.
        const first = await request(argv, words, message(token("sess-first")));
        assert.equal(first.code, 0, first.stderr);
        /** A session file as a relay makes it, last refreshed `ageMs` ago. */
        const plant = (name: string, ageMs: number) =>
          plantAged(`${limitsDir}/${name}`, relay.user, ageMs);
        // A relay that died two minutes ago (a live one refreshes its file every 20 s).
        const dead = await plant("session-1-dead", 120_000);
        const tok = token("sess-dead");
        const res = await request(argv, words, message(tok));
        assert.equal(res.code, 0, res.stderr);
        await takeByToken(box, tok);
        await assert.rejects(Deno.lstat(dead), Deno.errors.NotFound);
        // Control: a session file refreshed just now is a live session, and counts.
        await plant("session-2-live", 0);
        const tok2 = token("sess-live");
        const refused = await request(argv, words, message(tok2));
        assert.equal(refused.code, 75, refused.stderr);
        assert.equal(
          refused.stderr,
          "4.7.0 rsendmail: too many concurrent sessions for this key\n",
        );
        await expectNoToken(box, tok2, 300);
      } finally {
        await Deno.remove(limitsDir, { recursive: true }).catch(() => {});
      }
    },
  );
});

async function sessionCount(dir: string): Promise<number> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).filter((e) => e.name.startsWith("session-"))
      .length;
  } catch {
    return 0;
  }
}

Deno.test("relay: a peer trickling a byte every 300 ms is cut at --message-timeout (4.4.2); a steady one is delivered", async () => {
  await withRelayBed(
    `--label trickle --message-timeout 3 --idle-timeout 10`,
    async ({ postfix, box, relay, key }) => {
      const [cmd, ...args] = relay.sshArgv(key);
      const tok = token("trickle");
      const started = Date.now();
      const child = new Deno.Command(cmd!, {
        args: [...args, quoteWords(["sendmail", "-oi", "--", `${ACCOUNT}@${postfix.domain}`])],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      const bytes = new TextEncoder().encode(message(tok) + "x".repeat(100));
      const feeding = (async () => {
        try {
          for (const b of bytes) {
            await writer.write(new Uint8Array([b]));
            await new Promise((r) => setTimeout(r, 300));
          }
          await writer.close();
        } catch { /* the relay hung up */ }
      })();
      const out = await child.output();
      await feeding;
      const took = Date.now() - started;
      assert.equal(out.code, 75, new TextDecoder().decode(out.stderr));
      assert.equal(
        new TextDecoder().decode(out.stderr),
        "4.4.2 rsendmail: message not complete within the time limit\n",
      );
      assert.ok(took < 8000, `cut after ${took} ms`);
      await expectNoToken(box, tok, 300);
      record(SECTION, "a byte every 300 ms (--message-timeout 3)", "refused");
      const ok = token("steady");
      const res = await request(
        relay.sshArgv(key),
        ["-oi", "--", `${ACCOUNT}@${postfix.domain}`],
        message(ok),
      );
      assert.equal(res.code, 0, res.stderr);
      await takeByToken(box, ok);
      record(SECTION, "a steady message under the same deadline", "delivered");
    },
  );
});

Deno.test("relay: --allow-header-sender refuses a forged From:/Sender: (5.7.1), an allowed one is delivered", async (t) => {
  await withRelayBed(
    `--label hdr --allow-sender @relay.test --allow-header-sender`,
    async ({ postfix, box, relay, key }) => {
      const argv = relay.sshArgv(key);
      const words = ["-oi", "-f", "ok@relay.test", "--", `${ACCOUNT}@${postfix.domain}`];
      const forged: [string, string[]][] = [
        ["From: of another domain", ["From: Boss <boss@bank.example>"]],
        ["allowed address in the display name, forged mailbox", [
          'From: "ok@relay.test" <boss@bank.example>',
        ]],
        ["allowed From:, forged Sender:", ["From: ok@relay.test", "Sender: boss@bank.example"]],
        ["folded From: whose second line is forged", [
          "From: ok@relay.test,",
          " boss@bank.example",
        ]],
        ["Resent-From: forged", ["From: ok@relay.test", "Resent-From: boss@bank.example"]],
        ["From: with no address at all", ["From: Boss"]],
      ];
      for (const [name, headers] of forged) {
        await step(t, `refuses ${name}`, async () => {
          const tok = token("hdr");
          const res = await request(argv, words, message(tok, headers));
          assert.equal(res.code, 77, res.stderr);
          assert.equal(res.stderr, "5.7.1 rsendmail: header sender not allowed for this key\n");
          await expectNoToken(box, tok, 300);
        });
      }
      // The check reads the first MiB: a header section running past it could hide its From:.
      const pad = Array.from({ length: 14_000 }, (_, i) => `X-Pad-${i}: ${"x".repeat(70)}`);
      await step(
        t,
        "refuses a From: hidden after 1 MiB of header lines (65, 5.6.0: header section too long)",
        async () => {
          const tok = token("hdr-long");
          const res = await request(argv, words, message(tok, [...pad, "From: boss@bank.example"]));
          assert.equal(res.code, 65, res.stderr);
          assert.equal(res.stderr, "5.6.0 rsendmail: header section too long\n");
          await expectNoToken(box, tok, 300);
        },
      );
      await step(
        t,
        "positive control: an allowed From: with a body past 1 MiB is delivered",
        async () => {
          const tok = token("hdr-bigbody");
          const body = `${pad.join("\n")}\n`;
          const res = await request(argv, words, message(tok, ["From: ok@relay.test"]) + body);
          assert.equal(res.code, 0, res.stderr);
          await takeByToken(box, tok);
        },
      );
      await step(
        t,
        "positive control: From: and Sender: of the allowed domain are delivered",
        async () => {
          const tok = token("hdr-ok");
          const res = await request(
            argv,
            words,
            message(tok, ["From: Ops (team) <ok@relay.test>", "Sender: bot@relay.test"]),
          );
          assert.equal(res.code, 0, res.stderr);
          await takeByToken(box, tok);
        },
      );
    },
  );
});

/**
 * Opens `rsendmail --batch` over ssh with `key`'s argv; `frame(tok)` writes
 * one frame (size, SHA-256, a fresh id) whose message carries `tok`, to `rcpt`.
 */
function batchSession(argv: string[], rcpt: string) {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd!, {
    args: [...args, quoteWords(["rsendmail", "--batch"])],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  const frame = async (tok: string) => {
    const body = encoder.encode(message(tok));
    const sha = await sha256Hex(body);
    const id = `m${crypto.randomUUID().replaceAll("-", "")}`;
    const words = ["-oi", `--size=${body.length}`, `--sha256=${sha}`, `--id=${id}`, "--", rcpt];
    await writer.write(encoder.encode(`MSG ${quoteWords(words)}\n`));
    await writer.write(body);
  };
  return { child, writer, frame };
}

Deno.test("relay: a batch peer sending a frame now and then is cut at --session-timeout (4.4.2); frames before it are delivered", async () => {
  await withRelayBed(
    `--label sesstime --session-timeout 2`,
    async ({ postfix, box, relay, key }) => {
      const { child, writer, frame } = batchSession(
        relay.sshArgv(key),
        `${ACCOUNT}@${postfix.domain}`,
      );
      const first = token("sess-first");
      await frame(first); // positive control: inside the deadline
      await new Promise((r) => setTimeout(r, 3000));
      const late = token("sess-late");
      await frame(late).catch(() => {});
      await writer.close().catch(() => {});
      const out = await child.output();
      const replies = new TextDecoder().decode(out.stdout).trim().split("\n");
      assert.match(replies[0] ?? "", / 0 2\.0\.0 delivered/);
      assert.match(replies[1] ?? "", /^- 75 4\.4\.2 rsendmail: session time limit reached$/);
      await takeByToken(box, first);
      record(SECTION, "a frame inside --session-timeout", "delivered");
      await expectNoToken(box, late, 500);
      record(SECTION, "a frame after --session-timeout (a session held open)", "refused");
    },
  );
});

Deno.test("relay: a batch peer that goes silent is cut at --idle-timeout (4.4.2), before its first frame and after one", async (t) => {
  await withRelayBed(`--label idlebatch --idle-timeout 1`, async ({ postfix, box, relay, key }) => {
    /** A batch session that sends a frame for each of `tokens`, then nothing, never closing its stdin. */
    const silentAfter = async (tokens: string[]) => {
      const { child, writer, frame } = batchSession(
        relay.sshArgv(key),
        `${ACCOUNT}@${postfix.domain}`,
      );
      for (const tok of tokens) await frame(tok);
      const started = Date.now();
      // The relay ends the session itself; stdin is closed only if it has not after 10 s.
      const guard = setTimeout(() => writer.close().catch(() => {}), 10_000);
      const out = await child.output();
      clearTimeout(guard);
      await writer.close().catch(() => {});
      return {
        code: out.code,
        ms: Date.now() - started,
        replies: new TextDecoder().decode(out.stdout).trim().split("\n"),
      };
    };
    const idle = /^- 75 4\.4\.2 rsendmail: timed out waiting for the next message$/;
    await t.step("silent from the start: cut after about a second, nothing delivered", async () => {
      const r = await silentAfter([]);
      assert.equal(r.code, 75);
      assert.ok(r.ms < 8000, `cut by the relay, not by the guard (${r.ms} ms)`);
      assert.deepEqual(r.replies.length, 1, r.replies.join("\n"));
      assert.match(r.replies[0]!, idle);
      record(SECTION, "a batch session held open with no frame", "refused");
    });
    await t.step(
      "one frame, then silent: the frame is delivered, then the session is cut",
      async () => {
        const first = token("idle-first");
        const r = await silentAfter([first]);
        assert.equal(r.code, 75);
        assert.ok(r.ms < 8000, `cut by the relay, not by the guard (${r.ms} ms)`);
        assert.match(r.replies[0] ?? "", / 0 2\.0\.0 delivered/);
        assert.match(r.replies[1] ?? "", idle);
        await takeByToken(box, first);
        record(SECTION, "a batch session held open after its frames", "refused");
      },
    );
  });
});
