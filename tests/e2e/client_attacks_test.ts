/**
 * Attack-named envelope addresses through the standalone client: shell
 * syntax (`$(…)`, backquotes, quotes, `;`, `|`, `&`), newlines and leading
 * `-` in the sender or a recipient, sent with a key that forces
 * `command="…/rsendmail"` and with a plain key (sshd then runs the relay
 * account's shell with the command string, so every word must be quoted for
 * /bin/sh). Every payload would create a marker file /tmp/pwned-ID if any
 * shell or option parser on the way obeyed it; no marker may ever appear.
 * A valid address must arrive exactly (Return-Path, Delivered-To); an
 * invalid one must be refused with one line and a sysexits code.
 *
 * @module
 */

import assert from "node:assert/strict";
import { exists, expectNoToken, RSENDMAIL, run, takeByToken, token, uidOf } from "./_bed.ts";
import { parseMessage, type Standalone, startStandalone, viaRelay } from "./_standalone.ts";

const ACCOUNT = "rsmatk";
const ONE_LINE_REGEXP = /^[45]\.\d{1,3}\.\d{1,3} sshsendmail: [^\n]+\n$/;

/** One attack: argv for sendmail built around a marker path. */
interface Attack {
  name: string;
  /** Sendmail argv (after the program name) given the marker path and the good recipient. */
  argv(marker: string, rcpt: string): string[];
  /** Headers to put in the message (for -t), given marker and recipient. */
  headers?(marker: string, rcpt: string): string;
  /** What must happen. */
  expect:
    | { kind: "sender"; sender(marker: string): string }
    | { kind: "recipient"; recipient(marker: string, rcpt: string): string }
    | { kind: "refused"; codes: number[] };
}

/** `rsmatk+SUFFIX@relay.test`: Postfix's recipient_delimiter "+" delivers it to rsmatk. */
function plus(rcpt: string, suffix: string): string {
  const at = rcpt.indexOf("@");
  return `${rcpt.slice(0, at)}+${suffix}${rcpt.slice(at)}`;
}
function quotedPlus(rcpt: string, suffix: string): string {
  const at = rcpt.indexOf("@");
  return `"${rcpt.slice(0, at)}+${suffix}"${rcpt.slice(at)}`;
}

const senderAttack = (name: string, sender: (m: string) => string): Attack => ({
  name,
  argv: (m, rcpt) => ["-oi", "-f", sender(m), "--", rcpt],
  expect: { kind: "sender", sender },
});
const recipientAttack = (name: string, recipient: (m: string, r: string) => string): Attack => ({
  name,
  argv: (m, rcpt) => ["-oi", "--", recipient(m, rcpt)],
  expect: { kind: "recipient", recipient },
});

const ATTACKS: Attack[] = [
  // Valid addresses that a shell would execute: must arrive exactly.
  senderAttack("sender $(…) in a quoted local part", (m) => `"$(touch ${m})"@example.net`),
  senderAttack("sender backquotes", (m) => `a\`touch\${IFS}${m}\`@example.net`),
  senderAttack("sender single quotes breaking out", (m) => `o'|touch\${IFS}${m}|'@example.net`),
  senderAttack("sender double quotes breaking out", (m) => `"a\\"; touch ${m}; \\""@example.net`),
  senderAttack("sender semicolon", (m) => `"a;touch ${m};b"@example.net`),
  senderAttack("sender ampersand", (m) => `a&touch\${IFS}${m}&@example.net`),
  recipientAttack("recipient backquotes", (m, r) => plus(r, `\`touch\${IFS}${m}\``)),
  recipientAttack("recipient $(…) quoted", (m, r) => quotedPlus(r, `$(touch ${m})`)),
  recipientAttack("recipient semicolon", (m, r) => quotedPlus(r, `x;touch ${m}`)),
  recipientAttack("recipient single quote", (m, r) => plus(r, `o'|touch\${IFS}${m}|'`)),
  {
    name: "-F full name with $(…)",
    argv: (m, rcpt) => ["-F", `$(touch ${m})`, "-f", "cron@example.net", "-oi", rcpt],
    expect: { kind: "sender", sender: () => "cron@example.net" },
  },
  {
    name: "-t with a backquoted recipient in To:",
    argv: () => ["-t", "-i"],
    headers: (m, r) => `To: ${plus(r, `\`touch\${IFS}${m}\``)}\n`,
    expect: { kind: "recipient", recipient: (m, r) => plus(r, `\`touch\${IFS}${m}\``) },
  },
  // Invalid: refused on the satellite, before any connection.
  {
    name: "sender $(…) unquoted (invalid address)",
    argv: (m, rcpt) => ["-oi", "-f", `$(touch ${m})@example.net`, rcpt],
    expect: { kind: "refused", codes: [65] },
  },
  {
    name: "sender with a newline",
    argv: (m, rcpt) => ["-oi", "-f", `a@example.net\ntouch ${m}`, rcpt],
    expect: { kind: "refused", codes: [65] },
  },
  {
    name: "recipient with a newline",
    argv: (m, rcpt) => ["-oi", "--", `${rcpt}\ntouch ${m}`],
    expect: { kind: "refused", codes: [65] },
  },
  {
    name: "sender with a leading -",
    argv: (m, rcpt) => ["-oi", "-f", `-X${m}`, rcpt],
    expect: { kind: "refused", codes: [65] },
  },
  {
    name: "recipient with a leading - after --",
    argv: (m, rcpt) => ["-oi", "--", rcpt, `-X${m}`],
    expect: { kind: "refused", codes: [65] },
  },
  {
    name: "leading - option not in the grammar",
    argv: (m, rcpt) => ["-oi", `-X${m}`, rcpt],
    expect: { kind: "refused", codes: [64] },
  },
];

async function runAttack(
  s: Standalone,
  conf: string,
  relayUid: number,
  attack: Attack,
  markers: string[],
): Promise<void> {
  const marker = `/tmp/pwned-${crypto.randomUUID()}`;
  markers.push(marker);
  const tok = token("attack");
  const body = `attack body ${tok}\n.\nlast line\n`;
  const message = `${attack.headers?.(marker, s.rcpt) ?? ""}Subject: ${tok}\n\n${body}`;
  const res = await run(s.sendmail, attack.argv(marker, s.rcpt), {
    stdin: message,
    env: { SSHSENDMAIL_CONFIG: conf, HOME: s.dir, PATH: "/usr/bin:/bin" },
    check: false,
  });
  // First: did anything run? (A payload runs before the relay answers.)
  assert.equal(await exists(marker), false, `${marker} was created: a payload ran`);
  const e = attack.expect;
  if (e.kind === "refused") {
    assert.ok(e.codes.includes(res.code), `exit ${res.code}: ${res.stderr}`);
    assert.equal(res.stdout, "");
    assert.match(res.stderr, ONE_LINE_REGEXP);
    await expectNoToken(s.box, tok, 300);
  } else {
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, "");
    assert.equal(res.stderr, "");
    const msg = parseMessage(await takeByToken(s.box, tok));
    assert.ok(viaRelay(msg, relayUid), msg.headers);
    assert.equal(msg.body, body);
    if (e.kind === "sender") {
      assert.deepEqual(msg.header("Return-Path"), [`<${e.sender(marker)}>`]);
    } else {
      assert.deepEqual(msg.header("Delivered-To"), [e.recipient(marker, s.rcpt)]);
      assert.deepEqual(msg.header("X-Original-To"), [e.recipient(marker, s.rcpt)]);
    }
  }
  assert.equal(await exists(marker), false, `${marker} was created: a payload ran`);
}

Deno.test("client attacks: shell syntax in addresses never runs on the relay", async (t) => {
  const s = await startStandalone(ACCOUNT);
  const relayUid = await uidOf(s.relay.user);
  const markers: string[] = [];
  try {
    // The plain key's relay shell runs dist/rsendmail through this, which
    // keeps its duplicate record in the bed (a forced command gets that from addKey).
    const inBed = `${s.relay.dir}/rsendmail-in-bed`;
    await Deno.writeTextFile(
      inBed,
      `#!/bin/sh\nexec ${RSENDMAIL} --state-dir ${s.relay.stateDir} "$@"\n`,
      { mode: 0o755 },
    );
    await Deno.chmod(inBed, 0o755);
    const keys: Array<[string, string]> = [
      ["forced command= key", await s.config("forced", s.forcedKey)],
      [
        "plain key (relay shell)",
        await s.config("plain", s.plainKey, [
          `relay_command = ${inBed}`,
        ]),
      ],
    ];
    for (const [keyName, conf] of keys) {
      for (const attack of ATTACKS) {
        await t.step(`${keyName}: ${attack.name}`, async () => {
          await runAttack(s, conf, relayUid, attack, markers);
        });
      }
    }
    await t.step("no marker appeared afterwards either", async () => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(markers.length, 2 * ATTACKS.length);
      for (const m of markers) assert.equal(await exists(m), false, m);
    });
  } finally {
    for (const m of markers) await Deno.remove(m).catch(() => {});
    await s.stop();
  }
});
