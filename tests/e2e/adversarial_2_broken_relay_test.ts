/**
 * Adversarial suite, part 2: a broken relay. Each relay here is a private
 * sshd started inside `unshare -m` (test scaffolding; the product and the
 * machine are unchanged): one whose /usr/sbin/sendmail is a bind-mounted
 * fake (exits 75, exits 1, is killed by SIGKILL, hangs with and without
 * reading), one whose /tmp (the spool; the build grants only /tmp) is a
 * 64 KiB tmpfs, and one with no /usr/sbin/sendmail at all (a tmpfs over
 * /usr/sbin holding only sshd). The syslog cases point --syslog-socket at
 * a missing path and at a datagram socket that nobody reads and that is
 * full. Each time the peer gets the right code and exactly one line,
 * nothing is half-delivered, and no spool file lingers.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  expectNoToken,
  type NsRelay,
  ROOT,
  RSENDMAIL,
  sleep,
  spoolNames,
  ssh,
  startNsRelay,
  startPostfix,
  takeByToken,
} from "./_bed.ts";
import { parseMessage } from "./_standalone.ts";
import {
  assertRelayRefused,
  assertSilent,
  type FakeSendmailRelay,
  message,
  startFakeSendmailRelay,
} from "./_adversarial.ts";
import { attempt } from "./_attack_table.ts";

const SECTION = "3. broken relay";
const RUN = crypto.randomUUID().slice(0, 8);
const RCPT = "rsmadv2@relay.test";
const tokenOf = (what: string) => `adv2-${what}-${crypto.randomUUID().slice(0, 10)}`;
const dec = new TextDecoder();
/** The checkout (its dist/ and its Deno), which may itself live under /tmp (CI clones there). */

/**
 * Mounts for the disk-full relay: a 64 KiB tmpfs over /tmp; when the
 * checkout lives under /tmp, it is bind-mounted back in place so the relay
 * and its Deno stay visible (they take none of the tmpfs's space).
 */
function tinyTmp(dir: string): string {
  const mount = "mount -t tmpfs -o size=64k,mode=1777 rsm-adv-tiny /tmp";
  if (!ROOT.startsWith("/tmp/")) return mount;
  const keep = `${dir}/keep`;
  return [
    `mkdir -p ${keep}`,
    `mount --bind ${ROOT} ${keep}`,
    mount,
    `mkdir -p ${ROOT}`,
    `mount --bind ${keep} ${ROOT}`,
  ].join("\n");
}

let fake: FakeSendmailRelay | undefined;
let tiny: NsRelay | undefined;
let nosm: NsRelay | undefined;
let work: string | undefined;
const helpers: Deno.ChildProcess[] = [];

/** A message of about `size` bytes. */
function big(tok: string, size: number): Uint8Array {
  return message(tok, RCPT, `${"0123456789abcdef".repeat(Math.ceil(size / 16))}\n`);
}

async function noNewSpool(before: string[]): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if ((await spoolNames()).every((n) => before.includes(n))) return;
    await sleep(100);
  }
  assert.fail(`spool files linger: ${(await spoolNames()).filter((n) => !before.includes(n))}`);
}

Deno.test("adversarial 2: sendmail exiting 75 or 1, killed, hanging; syslog missing or blocked", async (t) => {
  try {
    fake = await startFakeSendmailRelay();
    work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-adv-syslog-" });
    await Deno.chmod(work, 0o711);
    const key = await fake.addKey(
      `restrict,command="${RSENDMAIL} --label brk-${RUN} --sendmail-timeout 2"`,
    );
    const before = await spoolNames();
    const ranFor = async (tok: string) =>
      (await fake!.records()).filter((r) => dec.decode(r.message).includes(tok));

    await t.step("positive control: the fake sendmail records an exact delivery", async () => {
      const tok = tokenOf("control");
      const msg = message(tok, RCPT);
      assertSilent(
        await ssh(fake!, key, ["sendmail", "-oi", "-f", "a@relay.test", RCPT], msg),
        "control",
      );
      const runs = await ranFor(tok);
      assert.equal(runs.length, 1);
      assert.deepEqual(runs[0]!.message, msg);
      assert.deepEqual(runs[0]!.argv.map((a) => dec.decode(a)), [
        "-oi",
        "-f",
        "a@relay.test",
        "--",
        RCPT,
      ]);
      // sendmail's environment is the cleared one (sh adds PWD).
      const names = runs[0]!.env.split("\n").filter(Boolean).map((l) => l.split("=")[0]).sort();
      assert.deepEqual(names.filter((n) => n !== "PWD"), ["LANG", "PATH"]);
    });

    const broken: Array<
      { attack: string; rcpt: string; size: number; status: RegExp; maxMs: number }
    > = [
      {
        attack: "sendmail exits 75",
        rcpt: "exit75@relay.test",
        size: 1000,
        status: /^4\.3\.0 rsendmail: sendmail failed \(exit 75\)\n$/,
        maxMs: 5000,
      },
      {
        attack: "sendmail exits 1 (not a sysexits code)",
        rcpt: "exit1@relay.test",
        size: 1000,
        status: /^4\.3\.0 rsendmail: sendmail failed \(exit 1\)\n$/,
        maxMs: 5000,
      },
      {
        attack: "sendmail killed by SIGKILL mid-message",
        rcpt: "killed@relay.test",
        size: 300_000,
        status: /^4\.3\.0 rsendmail: sendmail was killed\n$/,
        maxMs: 5000,
      },
      {
        attack: "sendmail hangs after reading (--sendmail-timeout 2)",
        rcpt: "hang@relay.test",
        size: 1000,
        status: /^4\.3\.0 rsendmail: sendmail timed out\n$/,
        maxMs: 6000,
      },
      {
        attack: "sendmail hangs without reading a 300 KB message (--sendmail-timeout 2)",
        rcpt: "hangnoread@relay.test",
        size: 300_000,
        status: /^4\.3\.0 rsendmail: sendmail timed out\n$/,
        maxMs: 6000,
      },
    ];
    for (const b of broken) {
      await t.step(b.attack, async () => {
        await attempt(SECTION, b.attack, async () => {
          const tok = tokenOf("broken");
          const res = await ssh(fake!, key, ["sendmail", "-oi", "--", b.rcpt], big(tok, b.size));
          assertRelayRefused(res, 75, b.status, b.attack);
          assert.ok(res.ms < b.maxMs, `${b.attack}: took ${Math.round(res.ms)} ms`);
          assert.doesNotMatch(
            res.stderr,
            /postdrop|fatal|No space/,
            "sendmail's stderr stays in the log",
          );
          assert.equal((await ranFor(tok)).length, 0, "nothing recorded as delivered");
          return "refused";
        });
      });
    }

    // The syslog cases: a missing socket, and a full datagram socket nobody reads.
    const python = ["/usr/bin/python3", "/usr/local/bin/python3"];
    const py = (await Promise.all(python.map((p) =>
      Deno.stat(p).then(() => p, () => "")
    ))).find(Boolean) ??
      "python3";
    const blocked = `${work}/blocked.sock`;
    const filler = new Deno.Command(py, {
      args: [
        "-c",
        [
          "import socket, os, sys, time",
          "p = sys.argv[1]",
          "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(p); os.chmod(p, 0o777)",
          "c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.setblocking(False)",
          "n = 0",
          "while True:",
          "    try: c.sendto(b'<22>fill', p); n += 1",
          "    except BlockingIOError: break",
          "print(n, flush=True)",
          "time.sleep(120)",
        ].join("\n"),
        blocked,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    helpers.push(filler);
    const reader = filler.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    assert.ok(Number(dec.decode(first.value)) > 0, "the socket is full");

    for (
      const [attack, socket] of [
        ["syslog socket missing", `${work}/no-such.sock`],
        ["syslog socket full, nobody reading", blocked],
      ] as const
    ) {
      const skey = await fake.addKey(
        `restrict,command="${RSENDMAIL} --label brklog-${RUN} --syslog-socket ${socket}"`,
      );
      await t.step(`${attack}: a delivery is silent and quick`, async () => {
        await attempt(SECTION, attack, async () => {
          const tok = tokenOf("log");
          const msg = message(tok, RCPT);
          const res = await ssh(fake!, skey, ["sendmail", "-oi", RCPT], msg);
          assertSilent(res, attack);
          assert.ok(res.ms < 3000, `took ${Math.round(res.ms)} ms`);
          const runs = await ranFor(tok);
          assert.equal(runs.length, 1);
          assert.deepEqual(runs[0]!.message, msg);
          return "delivered";
        });
      });
      await t.step(`${attack}: a refusal is still exactly one line`, async () => {
        await attempt(SECTION, attack, async () => {
          const res = await ssh(fake!, skey, ["sendmail", "-bp", RCPT]);
          assertRelayRefused(res, 64, /^5\.5\.4 rsendmail: option -bp is not allowed\n$/, attack);
          assert.ok(res.ms < 3000, `took ${Math.round(res.ms)} ms`);
          return "refused";
        });
      });
    }
    await t.step("no spool file lingers in /tmp", () => noNewSpool(before));
  } finally {
    await teardown();
  }
});

Deno.test("adversarial 2: disk full under the spool (64 KiB tmpfs over /tmp)", async (t) => {
  try {
    const postfix = await startPostfix();
    const box = postfix.mailbox("rsmadv2");
    tiny = await startNsRelay((dir) => tinyTmp(dir));
    const key = await tiny.addKey(`restrict,command="${RSENDMAIL} --label brkdisk-${RUN}"`);
    const df = await tiny.inside(["/bin/df", "-k", "/tmp"]);
    assert.match(df.stdout, /rsm-adv-tiny\s+64\s/, df.stdout);

    await t.step("positive control: a 2 KB message fits and is delivered", async () => {
      await attempt(SECTION, "disk full under the spool (64 KiB tmpfs)", async () => {
        const tok = tokenOf("fits");
        const msg = big(tok, 2000);
        assertSilent(await ssh(tiny!, key, ["sendmail", "-oi", RCPT], msg), "fits");
        const got = parseMessage(await takeByToken(box, tok));
        assert.equal(got.body, `${"0123456789abcdef".repeat(125)}\n`);
        return "delivered";
      });
    });
    await t.step(
      "a 1 MB message is held in memory: delivered, the full disk untouched",
      async () => {
        await attempt(SECTION, "disk full under the spool (64 KiB tmpfs)", async () => {
          const tok = tokenOf("inmem");
          assertSilent(
            await ssh(tiny!, key, ["sendmail", "-oi", RCPT], big(tok, 1_000_000)),
            "held in memory",
          );
          const got = parseMessage(await takeByToken(box, tok));
          assert.equal(got.body, `${"0123456789abcdef".repeat(62_500)}\n`);
          return "delivered";
        });
      },
    );
    // Past the 4 MiB a relay holds in memory, a message goes to the spool.
    for (const size of [5_000_000, 8_000_000]) {
      await t.step(`a ${size / 1000} KB message: 75, one line, nothing delivered`, async () => {
        await attempt(SECTION, "disk full under the spool (64 KiB tmpfs)", async () => {
          const tok = tokenOf("full");
          const res = await ssh(tiny!, key, ["sendmail", "-oi", RCPT], big(tok, size));
          assertRelayRefused(res, 75, /^4\.3\.0 rsendmail: cannot spool message\n$/, "disk full");
          await expectNoToken(box, tok, 1500);
          const left = await tiny!.inside(["/bin/ls", "-A", "/tmp"]);
          // Only the mount point of a checkout under /tmp (see tinyTmp) may be there.
          const keep = ROOT.startsWith("/tmp/") ? [ROOT.split("/")[2]!] : [];
          assert.deepEqual(
            left.stdout.split("\n").filter((n) => n !== "" && !keep.includes(n)),
            [],
            "the tmpfs is empty again",
          );
          return "refused";
        });
      });
    }
  } finally {
    await teardown();
  }
});

Deno.test("adversarial 2: no sendmail at all", async (t) => {
  try {
    nosm = await startNsRelay((dir) =>
      [
        `mkdir ${dir}/sbin`,
        `mount --bind /usr/sbin ${dir}/sbin`,
        "mount -t tmpfs -o size=64k rsm-adv-nosbin /usr/sbin",
        `ln -s ${dir}/sbin/sshd /usr/sbin/sshd`,
      ].join("\n")
    );
    const key = await nosm.addKey(`restrict,command="${RSENDMAIL} --label brkmissing-${RUN}"`);
    const ls = await nosm.inside(["/bin/ls", "-A", "/usr/sbin"]);
    assert.equal(ls.stdout, "sshd\n");
    const before = await spoolNames();
    await t.step("sendmail missing: 75, one line, nothing delivered", async () => {
      await attempt(SECTION, "sendmail missing", async () => {
        const tok = tokenOf("missing");
        const res = await ssh(nosm!, key, ["sendmail", "-oi", RCPT], message(tok, RCPT));
        assertRelayRefused(res, 75, /^4\.3\.5 rsendmail: cannot run sendmail\n$/, "missing");
        return "refused";
      });
    });
    await t.step("no spool file lingers", () => noNewSpool(before));
  } finally {
    await teardown();
  }
});

/** Stops what this file started (also run when a filter skips the rest). */
async function teardown(): Promise<void> {
  for (const h of helpers) {
    try {
      h.kill("SIGTERM");
    } catch {
      // exited
    }
    await h.status;
    await h.stdout.cancel().catch(() => {});
  }
  helpers.length = 0;
  // Each stopped once: a PID is never signalled again after its process is gone.
  const relays = [fake, tiny, nosm];
  fake = tiny = nosm = undefined;
  await Promise.all(relays.map((r) => r?.stop()));
  if (work) await Deno.remove(work, { recursive: true }).catch(() => {});
  work = undefined;
  // The fake sendmails that sleep (20 s at most) end by themselves.
}
