/**
 * Adversarial suite, part 1: a stolen key against the real sshd with
 * `restrict,command="<dist>/rsendmail --label stolen-…"`. Shell and pty
 * requests, -L/-R/-D forwarding (connected through), agent and X11
 * forwarding, sftp and scp (both protocols), SendEnv of LD_PRELOAD and
 * MAIL_CONFIG, a 1 MB command line, 100k words, every byte 1..255 inside
 * quoted sender and recipient words, and senders that are valid addresses
 * and also sendmail options. Nothing but mail delivery may happen: no
 * marker file, no listening socket, no process but the relay's own, and
 * only under the key's policy.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  closedPort,
  exists,
  expectNoToken,
  hold,
  type Mailbox,
  type Relay,
  RSENDMAIL,
  run,
  sleep,
  spoolNames,
  ssh,
  sshCommand,
  startPostfix,
  startRelay,
  takeByToken,
} from "./_bed.ts";
import { parseMessage } from "./_standalone.ts";
import {
  assertOnlyMail,
  assertRelayRefused,
  assertSilent,
  environNames,
  type FakeSendmailRelay,
  message,
  relayPids,
  startFakeSendmailRelay,
} from "./_adversarial.ts";
import { attempt } from "./_attack_table.ts";

const SECTION = "1. stolen key (restrict,command=rsendmail)";
const RUN = crypto.randomUUID().slice(0, 8);
const LABEL = `stolen-${RUN}`;
const RCPT = "rsmadv1@relay.test";

interface Bed {
  relay: Relay;
  box: Mailbox;
  key: string;
  policyKey: string;
  sshd: number;
}
let bedPromise: Promise<Bed> | undefined;
function bed(): Promise<Bed> {
  bedPromise ??= (async () => {
    const [relay, postfix] = await Promise.all([startRelay(), startPostfix()]);
    const key = await relay.addKey(`restrict,command="${RSENDMAIL} --label ${LABEL}"`);
    const policyKey = await relay.addKey(
      `restrict,command="${RSENDMAIL} --label ${LABEL}p --allow-sender @relay.test"`,
    );
    return { relay, box: postfix.mailbox("rsmadv1"), key, policyKey, sshd: relay.pid };
  })();
  return bedPromise;
}

const markers: string[] = [];
function marker(): string {
  const m = `/tmp/rsm-adv-pwned-${crypto.randomUUID()}`;
  markers.push(m);
  return m;
}
async function assertNoMarkers(): Promise<void> {
  for (const m of markers) assert.equal(await exists(m), false, `${m} exists: something ran`);
}

const tokenOf = (what: string) => `adv1-${what}-${crypto.randomUUID().slice(0, 10)}`;

/** A TCP listener that counts connections: the target of a forward that must never open. */
function target(): { port: number; accepted: () => number; close: () => void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let n = 0;
  (async () => {
    try {
      for await (const c of l) {
        n++;
        c.close();
      }
    } catch {
      // closed
    }
  })();
  return { port: (l.addr as Deno.NetAddr).port, accepted: () => n, close: () => l.close() };
}

async function waitListening(port: number, ms = 5000): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
    if (c) {
      c.close();
      return true;
    }
    await sleep(50);
  }
  return false;
}

/** Connects to a local port, sends bytes, returns what came back before EOF (max 2 s). */
async function through(port: number, send: Uint8Array): Promise<Uint8Array> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await c.write(send).catch(() => 0);
    const chunks: number[] = [];
    const buf = new Uint8Array(512);
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      const n = await Promise.race([c.read(buf).catch(() => null), sleep(2000).then(() => null)]);
      if (n === null) break;
      chunks.push(...buf.subarray(0, n));
    }
    return new Uint8Array(chunks);
  } finally {
    c.close();
  }
}

/** Stops a held ssh child that the test started (by its own handle). */
async function stopHeld(h: ReturnType<typeof hold>): Promise<void> {
  try {
    h.child.kill("SIGTERM");
  } catch {
    // exited
  }
  await h.close();
  await h.done;
}

Deno.test("adversarial 1: a stolen restrict,command= key can only send mail", async (t) => {
  try {
    const { relay, box, key, policyKey, sshd } = await bed();
    const spoolBefore = await spoolNames();

    await t.step("shell request with commands on stdin", async () => {
      await attempt(SECTION, "shell request (`ssh relay`, commands on stdin)", async () => {
        const m = marker();
        const res = await ssh(relay, key, null, `touch ${m}\nid\nexec /bin/sh -i\n`);
        assertRelayRefused(res, 64, /^5\.5\.1 /, "shell");
        assert.equal(await exists(m), false);
        return "refused";
      });
    });

    await t.step("pty request (-tt), with and without a command", async () => {
      for (const request of [null, ["/bin/sh", "-i"]] as const) {
        await attempt(SECTION, "pty request (`ssh -tt`)", async () => {
          const m = marker();
          const res = await ssh(
            relay,
            key,
            request === null ? null : [...request],
            `touch ${m}\n`,
            [
              "-tt",
            ],
          );
          // sshd refuses the pty; ssh then either gives up (255, nothing ran) or the
          // forced command runs without a pty and refuses with its one line (64).
          assert.ok([64, 255].includes(res.code), `exit ${res.code}: ${res.stderr}`);
          assert.equal(res.stdout, "", "no pty: nothing echoed");
          const relayLines = res.stderr.split(/\r?\n/).filter((l) => / rsendmail: /.test(l));
          assert.equal(relayLines.length, res.code === 64 ? 1 : 0, res.stderr);
          assert.match(res.stderr, /PTY allocation request failed/);
          assert.equal(await exists(m), false);
          return "refused";
        });
      }
    });

    await t.step("-L forwarding: a connection through it never reaches the target", async () => {
      await attempt(SECTION, "port forwarding -L (connected through)", async () => {
        const tgt = target();
        const lport = closedPort();
        const h = hold(
          sshCommand(relay, key, null, ["-N", "-L", `${lport}:127.0.0.1:${tgt.port}`]),
        );
        try {
          assert.ok(await waitListening(lport), "ssh's local end listens");
          const got = await through(lport, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
          assert.equal(got.length, 0, "nothing came back");
          await assertOnlyMail(sshd, "-L");
          assert.equal(tgt.accepted(), 0, "the target was reached");
        } finally {
          await stopHeld(h);
          tgt.close();
        }
        return "refused";
      });
    });

    await t.step("-R forwarding: the relay never listens", async () => {
      await attempt(SECTION, "port forwarding -R (connected to)", async () => {
        const tgt = target();
        const rport = closedPort();
        const h = hold(
          sshCommand(relay, key, null, ["-N", "-R", `${rport}:127.0.0.1:${tgt.port}`]),
        );
        try {
          await sleep(1000);
          await assertOnlyMail(sshd, "-R");
          const c = await Deno.connect({ hostname: "127.0.0.1", port: rport }).catch(() =>
            undefined
          );
          c?.close();
          assert.equal(c, undefined, "the relay side listens on the -R port");
          assert.equal(tgt.accepted(), 0);
        } finally {
          await stopHeld(h);
          tgt.close();
        }
        return "refused";
      });
    });

    await t.step("-D forwarding: a SOCKS5 CONNECT through it fails", async () => {
      await attempt(SECTION, "dynamic forwarding -D (SOCKS5 CONNECT through it)", async () => {
        const tgt = target();
        const dport = closedPort();
        const h = hold(sshCommand(relay, key, null, ["-N", "-D", `127.0.0.1:${dport}`]));
        try {
          assert.ok(await waitListening(dport));
          const c = await Deno.connect({ hostname: "127.0.0.1", port: dport });
          try {
            await c.write(new Uint8Array([5, 1, 0]));
            const hello = new Uint8Array(2);
            assert.equal(await c.read(hello), 2);
            assert.deepEqual([...hello], [5, 0]);
            await c.write(
              new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, tgt.port >> 8, tgt.port & 255]),
            );
            const reply = new Uint8Array(10);
            const n = await Promise.race([
              c.read(reply).catch(() => null),
              sleep(3000).then(() => -1),
            ]);
            assert.ok(n === null || (n! > 1 && reply[1] !== 0), `SOCKS reply ${reply}`);
          } finally {
            c.close();
          }
          await assertOnlyMail(sshd, "-D");
          assert.equal(tgt.accepted(), 0, "the target was reached");
        } finally {
          await stopHeld(h);
          tgt.close();
        }
        return "refused";
      });
    });

    /**
     * A delivery held open halfway while the relay's process, environment
     * and sockets are inspected; then completed and checked in the Maildir.
     */
    const heldDelivery = async (
      what: string,
      options: string[],
      env: Record<string, string> | undefined,
      forbidden: string[],
    ) => {
      const tok = tokenOf(what);
      const msg = message(tok, RCPT);
      const h = hold(sshCommand(relay, key, ["sendmail", "-oi", RCPT], options), env);
      try {
        await h.write(msg.subarray(0, 40));
        let pids: number[] = [];
        for (let i = 0; i < 100 && pids.length === 0; i++) {
          await sleep(50);
          pids = await relayPids(LABEL);
        }
        assert.equal(pids.length, 1, "one relay process");
        const names = await environNames(pids[0]!);
        for (const f of forbidden) {
          assert.ok(!names.includes(f), `${f} reached the relay: ${names}`);
        }
        await assertOnlyMail(sshd, what);
        await h.write(msg.subarray(40));
        await h.close();
        const res = await h.done;
        assert.equal(res.code, 0, res.stderr);
        assert.equal(res.stdout, "");
      } finally {
        await h.close();
        await h.done;
      }
      const got = parseMessage(await takeByToken(box, tok));
      assert.deepEqual(got.header("Delivered-To"), [RCPT]);
      return "delivered" as const;
    };

    await t.step("agent forwarding (-A) with a live agent", async () => {
      const sock = `/tmp/rsm-adv-agent-${RUN}`;
      const out = await run("/usr/bin/ssh-agent", ["-s", "-a", sock]);
      const agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(out.stdout)?.[1]);
      try {
        await attempt(
          SECTION,
          "agent forwarding (-A, live agent)",
          () =>
            heldDelivery("agent", ["-A", "-o", "IdentityAgent=" + sock, "-o", "ForwardAgent=yes"], {
              SSH_AUTH_SOCK: sock,
            }, ["SSH_AUTH_SOCK"]),
        );
      } finally {
        if (agentPid > 0) Deno.kill(agentPid, "SIGTERM");
        await Deno.remove(sock).catch(() => {});
      }
    });

    await t.step("X11 forwarding (-X)", async () => {
      await attempt(
        SECTION,
        "X11 forwarding (-X)",
        () =>
          heldDelivery("x11", ["-X", "-o", "ForwardX11Trusted=no"], {
            DISPLAY: "127.0.0.1:97",
          }, ["DISPLAY", "XAUTHORITY"]),
      );
    });

    await t.step("SendEnv LD_PRELOAD and MAIL_CONFIG", async () => {
      const libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"];
      const preload = (await Promise.all(libc.map(exists))).findIndex(Boolean);
      await attempt(SECTION, "SendEnv LD_PRELOAD, MAIL_CONFIG", () =>
        heldDelivery(
          "sendenv",
          ["-o", "SendEnv=LD_PRELOAD", "-o", "SendEnv=MAIL_CONFIG", "-o", "SendEnv=LANG"],
          { LD_PRELOAD: libc[Math.max(preload, 0)]!, MAIL_CONFIG: "/tmp/rsm-adv-evil-postfix" },
          ["LD_PRELOAD", "MAIL_CONFIG"],
        ));
    });

    await t.step("sftp subsystem: put and get", async () => {
      await attempt(SECTION, "sftp subsystem (put, get)", async () => {
        const m = marker();
        const local = `/tmp/rsm-adv-sftp-${RUN}`;
        const batch = `/tmp/rsm-adv-sftp-batch-${RUN}`;
        await Deno.writeTextFile(batch, `put /etc/hostname ${m}\nget /etc/passwd ${local}\n`);
        const argv = relay.sshArgv(key);
        const opts = argv.slice(1, -1).filter((a) => a !== "-T" && a !== "-e" && a !== "none");
        const i = opts.indexOf("-p");
        opts.splice(i, 2, "-P", String(relay.port));
        const res = await run("/usr/bin/sftp", ["-b", batch, ...opts, argv.at(-1)!], {
          check: false,
        });
        await Deno.remove(batch).catch(() => {});
        assert.notEqual(res.code, 0, "sftp must fail");
        assert.equal(await exists(m), false);
        assert.equal(await exists(local), false, "a file came back");
        return "refused";
      });
    });

    for (const legacy of [false, true]) {
      for (const dir of ["upload", "download"] as const) {
        await t.step(`scp ${legacy ? "-O (legacy)" : "(sftp protocol)"} ${dir}`, async () => {
          await attempt(
            SECTION,
            `scp ${legacy ? "-O legacy protocol" : "sftp protocol"} (${dir})`,
            async () => {
              const m = marker();
              const argv = relay.sshArgv(key);
              const opts = argv.slice(1, -1).filter((a) =>
                a !== "-T" && a !== "-e" && a !== "none"
              );
              const i = opts.indexOf("-p");
              opts.splice(i, 2, "-P", String(relay.port));
              const remote = `${argv.at(-1)!}:`;
              const args = dir === "upload"
                ? ["/etc/hostname", `${remote}${m}`]
                : [`${remote}/etc/passwd`, m];
              const res = await run("/usr/bin/scp", [...(legacy ? ["-O"] : []), ...opts, ...args], {
                check: false,
              });
              assert.notEqual(res.code, 0, "scp must fail");
              assert.equal(await exists(m), false);
              return "refused";
            },
          );
        });
      }
    }

    await t.step("a 1 MB command line", async () => {
      await attempt(SECTION, "1 MB command line", async () => {
        // One argv string may hold 128 KiB at most: ssh joins its words with spaces.
        const parts = Array.from({ length: 16 }, () => "a".repeat(1 << 16));
        const [cmd, ...args] = sshCommand(relay, key, null);
        const res = await run(cmd!, [...args, "sendmail", "-oi", ...parts], {
          check: false,
          stdin: message("x"),
        });
        if (res.code === 1) {
          assert.match(res.stderr, /^\/bin\/sh: Argument list too long\n$/);
        } else if (res.code === 255) {
          // sshd itself refuses a packet this big: the session never starts.
          assert.equal(res.stdout, "");
        } else {
          assertRelayRefused(res, 64, /^5\.5\.2 rsendmail: request too long/, "1 MB");
        }
        return "refused";
      });
    });

    await t.step("100k words (and 5000 short ones, under the length limit)", async () => {
      await attempt(SECTION, "100k words", async () => {
        const words = Array.from({ length: 100_000 }, () => "a");
        const [cmd, ...args] = sshCommand(relay, key, null);
        const res = await run(cmd!, [...args, "sendmail", "-oi", ...words], {
          check: false,
          stdin: message("x"),
        });
        // ~200 KB in SSH_ORIGINAL_COMMAND: over the kernel's 128 KiB per string, so
        // sshd's exec of the forced command fails (E2BIG) and rsendmail never runs.
        if (res.code === 1) assert.match(res.stderr, /^\/bin\/sh: Argument list too long\n$/);
        else if (res.code !== 255) assertRelayRefused(res, 64, /^5\.5\.2 /, "100k words");
        assert.equal(res.stdout, "");
        return "refused";
      });
      await attempt(SECTION, "100k words", async () => {
        const words = Array.from({ length: 5000 }, () => "a").join(" ");
        const res = await ssh(relay, key, { raw: `sendmail -oi ${words}` }, message("x"));
        assertRelayRefused(res, 64, /^5\.5\.2 rsendmail: too many words/, "5000 words");
        return "refused";
      });
    });

    await t.step("senders that are valid addresses and also sendmail options", async () => {
      const cases: Array<
        {
          name: string;
          key: string;
          words: (m: string) => string[];
          sender?: (m: string) => string;
          code?: number;
        }
      > = [
        {
          name: `sender "-X/tmp/…"@relay.test (quoted: valid, delivered as given)`,
          key,
          words: (m) => ["-f", `"-X${m}"@relay.test`],
          sender: (m) => `"-X${m}"@relay.test`,
        },
        {
          name: `sender "-oQ/tmp/…"@relay.test through the policy key`,
          key: policyKey,
          words: (m) => ["-f", `"-oQ${m}"@relay.test`],
          sender: (m) => `"-oQ${m}"@relay.test`,
        },
        {
          name: "sender -oQ/tmp/…@relay.test (bare, leading -)",
          key,
          words: (m) => ["-f", `-oQ${m}@relay.test`],
          code: 65,
        },
        {
          name: "sender attached -f-X/tmp/…@relay.test",
          key,
          words: (m) => [`-f-X${m}@relay.test`],
          code: 65,
        },
        { name: "sender -C/tmp/… as -r value", key, words: (m) => ["-r", `-C${m}`], code: 65 },
        {
          name: "sender <-X/tmp/…@relay.test> in brackets",
          key,
          words: (m) => ["-f", `<-X${m}@relay.test>`],
          code: 65,
        },
        {
          name: `sender "-X/tmp/…"@example.net against --allow-sender @relay.test`,
          key: policyKey,
          words: (m) => ["-f", `"-X${m}"@example.net`],
          code: 77,
        },
      ];
      for (const c of cases) {
        await attempt(SECTION, "sender that is also a sendmail option", async () => {
          const m = marker();
          const tok = tokenOf("optsender");
          const res = await ssh(
            relay,
            c.key,
            ["sendmail", "-oi", ...c.words(m), "--", RCPT],
            message(tok),
          );
          assert.equal(await exists(m), false, c.name);
          if (c.code !== undefined) {
            assertRelayRefused(res, c.code, /^5\./, c.name);
            await expectNoToken(box, tok, 300);
            return "refused";
          }
          assertSilent(res, c.name);
          const got = parseMessage(await takeByToken(box, tok));
          // Postfix writes a quoted local part that needs no quotes without them (RFC 5321: the same mailbox).
          const sender = c.sender!(m);
          assert.ok(
            [`<${sender}>`, `<${sender.replace(/^"([^"]*)"@/, "$1@")}>`].includes(
              got.header("Return-Path")[0]!,
            ),
            `${c.name}: ${got.header("Return-Path")}`,
          );
          assert.equal(await exists(m), false, c.name);
          return "delivered";
        });
      }
    });

    await t.step("every byte 1..255 in single-quoted sender and recipient words", async () => {
      // Checked where it matters: the argv the relay hands to sendmail (a recording fake in a
      // namespace relay), since Postfix itself reroutes some shapes (a!b@, a%b@).
      const fake = await startFakeSendmailRelay();
      try {
        const bkey = await fake.addKey(`restrict,command="${RSENDMAIL} --label ${LABEL}b"`);
        await byteSweep(fake, bkey);
      } finally {
        await fake.stop();
      }
    });

    await t.step("afterwards: no marker, no process, no listener, no spool file", async () => {
      await sleep(300);
      await assertNoMarkers();
      await assertOnlyMail(sshd, "after");
      assert.deepEqual(
        (await spoolNames()).filter((n) => !spoolBefore.includes(n)),
        [],
        "no /tmp/rsendmail-* left",
      );
    });
  } finally {
    await teardown();
  }
});

async function byteSweep(fake: FakeSendmailRelay, bkey: string): Promise<void> {
  const enc = new TextEncoder();
  const quoted = (bytes: number[]) => {
    const out: number[] = [0x27];
    for (const x of bytes) out.push(...(x === 0x27 ? [0x27, 0x5c, 0x27, 0x27] : [x]));
    out.push(0x27);
    return out;
  };
  const results: Array<
    {
      b: number;
      tok: string;
      sender: number[];
      rcpt: number[];
      res: { code: number; stdout: string; stderr: string };
    }
  > = [];
  const one = async (b: number) => {
    const hex = b.toString(16).padStart(2, "0");
    const tok = tokenOf(`byte${hex}`);
    const sender = [...enc.encode(`adv+s${hex}X`), b, ...enc.encode("Y@relay.test")];
    const rcpt = [...enc.encode(`rsmadv1+r${hex}X`), b, ...enc.encode("Y@relay.test")];
    const command = [
      ...enc.encode("sendmail -oi -f "),
      ...quoted(sender),
      ...enc.encode(" -- "),
      ...quoted(rcpt),
    ];
    const path = `/tmp/rsm-adv-bytes-${RUN}-${hex}`;
    await Deno.writeFile(path, new Uint8Array(command));
    // The raw bytes must reach ssh's argv unchanged (Deno would encode them as UTF-8): sh reads them.
    const res = await run(
      "/bin/sh",
      ["-c", 'c=$(cat "$1"); shift; exec "$@" "$c"', "sh", path, ...sshCommand(fake, bkey, null)],
      { check: false, stdin: message(tok) },
    );
    await Deno.remove(path).catch(() => {});
    results.push({ b, tok, sender, rcpt, res });
  };
  const bytes = Array.from({ length: 255 }, (_, i) => i + 1);
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < bytes.length) await one(bytes[next++]!);
  }));
  const records = await fake.records();
  const dec = new TextDecoder();
  const hex = (u: Iterable<number>) =>
    Array.from(u, (x) => x.toString(16).padStart(2, "0")).join("");
  for (const r of results.sort((a, b) => a.b - b.b)) {
    await attempt(SECTION, "every byte 1..255 in quoted sender/recipient", () => {
      const what = `byte 0x${r.b.toString(16)}`;
      const mine = records.filter((x) => dec.decode(x.message).includes(r.tok));
      if (r.res.code === 0) {
        assertSilent(r.res, what);
        assert.equal(mine.length, 1, `${what}: sendmail ran ${mine.length} times`);
        assert.deepEqual(
          mine[0]!.argv.map(hex),
          [enc.encode("-oi"), enc.encode("-f"), r.sender, enc.encode("--"), r.rcpt].map(hex),
          `${what}: sendmail's argv is exactly the peer's bytes`,
        );
        assert.ok(r.b >= 0x20 && r.b < 0x7f, `${what} accepted`);
        return Promise.resolve("delivered" as const);
      }
      assert.ok([64, 65].includes(r.res.code), `${what}: exit ${r.res.code} ${r.res.stderr}`);
      assertRelayRefused(r.res, r.res.code, /^5\.[15]\.\d /, what);
      assert.equal(mine.length, 0, `${what}: refused but sendmail ran`);
      return Promise.resolve("refused" as const);
    });
  }
}

/** Stops what this file started (also run when a filter skips the rest). */
async function teardown(): Promise<void> {
  for (const m of markers) await Deno.remove(m, { recursive: true }).catch(() => {});
  if (bedPromise) await (await bedPromise).relay.stop();
}
