/**
 * Adversarial suite, part 3: slow and silent peers against the real sshd
 * and Postfix. A peer that trickles one byte a second completes under
 * `--idle-timeout 3` (each byte arrives within the idle time, the whole
 * takes longer); one that stops sending is deferred (75) after the idle
 * timeout; one that never closes stdin is deferred too; 32 parallel
 * sessions from one key (half of them cut midway) finish in bounded time
 * and memory (peak RSS of every rsendmail measured), and nothing is
 * delivered unless complete.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  expectNoToken,
  hold,
  type Mailbox,
  type Relay,
  RSENDMAIL,
  sha256Hex,
  sleep,
  spoolNames,
  sshCommand,
  startPostfix,
  startRelay,
  takeByToken,
  waitFor,
} from "./_bed.ts";
import { parseMessage } from "./_standalone.ts";
import { assertRelayRefused, message, peakRssKiB, relayPids } from "./_adversarial.ts";
import { attempt, note } from "./_attack_table.ts";

const SECTION = "4. slow and silent peers";
const RUN = crypto.randomUUID().slice(0, 8);
const RCPT = "rsmadv3@relay.test";
const tokenOf = (what: string) => `adv3-${what}-${crypto.randomUUID().slice(0, 10)}`;

let relay: Relay | undefined;

Deno.test("adversarial 3: slow and silent peers", async (t) => {
  try {
    const postfix = await startPostfix();
    const box: Mailbox = postfix.mailbox("rsmadv3");
    relay = await startRelay();
    const idleKey = await relay.addKey(
      `restrict,command="${RSENDMAIL} --label slow-${RUN} --idle-timeout 3"`,
    );
    const before = await spoolNames();

    await t.step("a byte a second (--idle-timeout 3): completes, delivered exactly", async () => {
      await attempt(SECTION, "stdin trickles a byte a second (idle 3 s)", async () => {
        const tok = tokenOf("trickle");
        const msg = message(tok, RCPT, "12345678\n");
        const h = hold(
          sshCommand(relay!, idleKey, [
            "sendmail",
            "-oi",
            `--size=${msg.length}`,
            `--sha256=${await sha256Hex(msg)}`,
            RCPT,
          ]),
        );
        const cut = msg.length - 9;
        await h.write(msg.subarray(0, cut));
        for (let i = cut; i < msg.length; i++) {
          await sleep(1000);
          await h.write(msg.subarray(i, i + 1));
        }
        await h.close();
        const res = await h.done;
        assert.deepEqual({ code: res.code, out: res.stdout, err: res.stderr }, {
          code: 0,
          out: "",
          err: "",
        });
        assert.ok(res.ms > 8500, "it took longer than the idle timeout in all");
        assert.equal(parseMessage(await takeByToken(box, tok)).body, "12345678\n");
        return "delivered";
      });
    });

    await t.step(
      "a peer that stops sending: 75 after the idle timeout, nothing delivered",
      async () => {
        await attempt(SECTION, "peer stops sending (idle 3 s)", async () => {
          const tok = tokenOf("stops");
          const msg = message(tok, RCPT);
          const h = hold(sshCommand(relay!, idleKey, ["sendmail", "-oi", RCPT]));
          await h.write(msg.subarray(0, 60));
          const res = await Promise.race([h.done, sleep(10_000).then(() => undefined)]);
          await h.close();
          assert.ok(res, "the relay never gave up");
          assertRelayRefused(
            res,
            75,
            /^4\.4\.2 rsendmail: timed out waiting for the message\n$/,
            "stops",
          );
          assert.ok(res.ms > 2500 && res.ms < 8000, `took ${Math.round(res.ms)} ms`);
          await expectNoToken(box, tok, 1000);
          return "refused";
        });
      },
    );

    await t.step(
      "stdin that never closes (whole message sent, with and without --size)",
      async () => {
        for (const declared of [false, true]) {
          await attempt(SECTION, "stdin never closes (idle 3 s)", async () => {
            const tok = tokenOf("open");
            const msg = message(tok, RCPT);
            const words = ["sendmail", "-oi", ...(declared ? [`--size=${msg.length}`] : []), RCPT];
            const h = hold(sshCommand(relay!, idleKey, words));
            await h.write(msg);
            const res = await Promise.race([h.done, sleep(10_000).then(() => undefined)]);
            await h.close();
            assert.ok(res, "the relay never gave up");
            assertRelayRefused(res, 75, /^4\.4\.2 /, "never closes");
            await expectNoToken(box, tok, 1000);
            return "refused";
          });
        }
      },
    );

    await t.step("32 parallel sessions of 1 MB from one key, half cut midway", async () => {
      const label = `par-${RUN}`;
      const key = await relay!.addKey(
        `restrict,command="${RSENDMAIL} --label ${label} --idle-timeout 30"`,
      );
      const n = 32;
      const body = `${"x".repeat(1023)}\n`.repeat(1024);
      const jobs = Array.from(
        { length: n },
        (_, i) => ({ i, tok: tokenOf(`par${i}`), cut: i % 2 === 1 }),
      );
      const peaks = new Map<number, number>();
      let sampling = true;
      const known = new Map<number, boolean>();
      const sampler = (async () => {
        while (sampling) {
          for (const pid of await relayPids(label, known)) {
            peaks.set(pid, Math.max(peaks.get(pid) ?? 0, await peakRssKiB(pid)));
          }
          await sleep(100);
        }
      })();
      // Each session holds half its message until the sampler has seen every
      // relay (at most 12 s): all are open at once, and on a busy machine,
      // where one pass of the sampler (ps, then cat per process) takes
      // seconds, a fixed pause let relays end unsampled.
      const allSampled = waitFor("every relay sampled", () => peaks.size >= n, 12_000)
        .catch(() => {});
      const started = performance.now();
      const results = await Promise.all(jobs.map(async (j) => {
        const msg = message(j.tok, RCPT, body);
        const h = hold(sshCommand(relay!, key, ["sendmail", "-oi", `--size=${msg.length}`, RCPT]));
        const half = msg.length >> 1;
        for (let at = 0; at < half; at += 65536) {
          await h.write(msg.subarray(at, Math.min(at + 65536, half)));
        }
        await allSampled;
        await sleep(500);
        if (j.cut) {
          h.child.kill("SIGKILL");
          await h.close();
          return { j, res: await h.done, msg };
        }
        for (let at = half; at < msg.length; at += 65536) {
          await h.write(msg.subarray(at, Math.min(at + 65536, msg.length)));
        }
        await h.close();
        return { j, res: await h.done, msg };
      }));
      const seconds = (performance.now() - started) / 1000;
      // Wait for the cut sessions' relays to notice and end.
      for (let i = 0; i < 50 && (await relayPids(label)).length > 0; i++) await sleep(200);
      sampling = false;
      await sampler;
      assert.equal((await relayPids(label)).length, 0, "every relay process ended");
      const peak = Math.max(...peaks.values());
      const sum = [...peaks.values()].reduce((a, b) => a + b, 0);
      note(
        `${n} parallel sessions of 1 MB from one key (half cut midway): all ended in ` +
          `${seconds.toFixed(1)} s; ${peaks.size} rsendmail processes sampled, peak RSS ` +
          `${(peak / 1024).toFixed(0)} MiB per process at most, ${
            (sum / 1024).toFixed(0)
          } MiB summed`,
      );
      for (const { j, res, msg } of results) {
        await attempt(SECTION, "32 parallel 1 MB sessions, one key (half cut)", async () => {
          if (j.cut) {
            assert.notEqual(res.code, 0);
            await expectNoToken(box, j.tok, 0);
            return "refused";
          }
          assert.deepEqual({ code: res.code, err: res.stderr }, { code: 0, err: "" });
          const got = parseMessage(await takeByToken(box, j.tok, 30_000));
          assert.equal(got.body, body);
          assert.ok(msg.length > 1_000_000);
          return "delivered";
        });
      }
      assert.ok(seconds < 45, `bounded time: ${seconds} s`);
      assert.ok(peaks.size >= n / 2, `sampled ${peaks.size} relays`);
      assert.ok(peak < 256 * 1024, `bounded memory: a relay peaked at ${peak} KiB`);
      await sleep(1000);
      for (const j of jobs.filter((x) => x.cut)) await expectNoToken(box, j.tok, 0);
    });

    await t.step("no spool file lingers", async () => {
      for (let i = 0; i < 20 && !(await spoolNames()).every((x) => before.includes(x)); i++) {
        await sleep(100);
      }
      assert.deepEqual((await spoolNames()).filter((x) => !before.includes(x)), []);
    });
  } finally {
    await teardown();
  }
});

/** Stops what this file started (also run when a filter skips the rest). */
async function teardown(): Promise<void> {
  const r = relay;
  relay = undefined;
  await r?.stop();
}
