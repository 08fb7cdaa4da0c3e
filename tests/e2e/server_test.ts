/**
 * End-to-end tests of the BUILT relay, dist/rsendmail, as a forced command
 * behind a real OpenSSH sshd, delivering through the real Postfix into
 * Maildirs, logging to a real rsyslogd on /dev/log (tests/e2e/_bed.ts).
 *
 * The client side is plain /usr/bin/ssh; the remote words are quoted with
 * quoteWords() from lib/shared/words.ts (or sent raw where the attack is the raw
 * string). Every refusal is named after the attack it stops, and a positive
 * control that differs only by the attack runs beside it: a refusal test that
 * only checked for absence would also pass if everything were refused.
 *
 * Mail goes to this file's own accounts (rsmsrv1…3), so other suites sharing
 * the Postfix cannot take our mail or hand us theirs.
 *
 * Run (builds first): `deno task test tests/e2e/server_test.ts` (root).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  clearMailbox,
  concat,
  exists,
  type Held,
  hold,
  type Mailbox,
  type Postfix,
  type Relay,
  type Request,
  RSENDMAIL,
  run,
  type RunResult,
  sha256Hex,
  sleep,
  spoolNames as spoolLeftovers,
  ssh as sshTo,
  sshCommand,
  type SshResult,
  startPostfix,
  startRelay,
  startSyslog,
  type Syslog,
  takeMail,
} from "./_bed.ts";

const SENDMAIL = "/usr/sbin/sendmail";
const RELAY_ACCOUNT = "rsmrelay";
/** A token unique to this run: labels and subjects carry it. */
const RUN = crypto.randomUUID().slice(0, 8);

/** One public line: `5.x.y rsendmail: text` (or 4.x.y), and nothing else. */
const PUBLIC_LINE_REGEXP = /^[45]\.\d{1,3}\.\d{1,3} rsendmail: [^\n]+\n$/;
/** Words that would betray help or usage text reaching the peer. */
const HELP_TEXT_REGEXP = /usage|options:|synopsis|\bat file:|stack/i;

const encoder = new TextEncoder();

/** Admin options of each key (the forced command's own argv). */
const KEYS = {
  plain: `--label srv-${RUN}`,
  size: `--label srvsize-${RUN} --max-size 1000`,
  policy: `--label srvpolicy-${RUN} --allow-sender @relay.test`,
  rcpts: `--label srvrcpt-${RUN} --max-recipients 2`,
  integrity: `--label srvint-${RUN} --require-integrity`,
  idle: `--label srvidle-${RUN} --idle-timeout 1`,
  spool: `--label srvspool-${RUN}`,
} as const;
type KeyName = keyof typeof KEYS;

interface Bed {
  relay: Relay;
  postfix: Postfix;
  syslog: Syslog;
  keys: Record<KeyName, string>;
  /** Our own mailboxes. */
  box1: Mailbox;
  box2: Mailbox;
  box3: Mailbox;
  relayUid: string;
}

let bedPromise: Promise<Bed> | undefined;

/** One relay, Postfix and rsyslogd for the whole file, started on first use. */
function bed(): Promise<Bed> {
  bedPromise ??= setUp();
  return bedPromise;
}

async function setUp(): Promise<Bed> {
  assert.ok(!/["\\\s]/.test(RSENDMAIL), `cannot put ${RSENDMAIL} in command="…"`);
  await Deno.stat(RSENDMAIL); // built by `deno task test`
  const [relay, postfix, syslog] = await Promise.all([startRelay(), startPostfix(), startSyslog()]);
  const keys = {} as Record<KeyName, string>;
  for (const name of Object.keys(KEYS) as KeyName[]) {
    keys[name] = await relay.addKey(`restrict,command="${RSENDMAIL} ${KEYS[name]}"`);
  }
  const [box1, box2, box3] = ["rsmsrv1", "rsmsrv2", "rsmsrv3"].map((u) => postfix.mailbox(u));
  for (const box of [box1!, box2!, box3!]) await clearMailbox(box);
  const relayUid = (await run("/usr/bin/id", ["-u", RELAY_ACCOUNT])).stdout.trim();
  return { relay, postfix, syslog, keys, box1: box1!, box2: box2!, box3: box3!, relayUid };
}

// ---------------------------------------------------------------- helpers

/** Runs `ssh relay REQUEST` with `stdin` (or /dev/null) and returns its outcome. */
async function ssh(key: string, request: Request, stdin?: Uint8Array): Promise<SshResult> {
  return await sshTo((await bed()).relay, key, request, stdin);
}

/** An ssh call whose stdin the test drives by hand. */
async function openSsh(key: string, request: Request, sshOptions: string[] = []): Promise<Held> {
  return hold(sshCommand((await bed()).relay, key, request, sshOptions));
}

/** Runs `fn` over `items`, at most `limit` at a time, results in order. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>) {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Options of {@link message}. */
interface MessageOptions {
  to?: string;
  headers?: string[];
  body?: Uint8Array | string;
}

/**
 * A complete message: From, To, Date, Message-ID and Subject are all given,
 * so Postfix adds no header of its own but the trace headers.
 */
function message(subject: string, options: MessageOptions = {}): Uint8Array {
  const head = [
    "From: Sender <sender@relay.test>",
    `To: ${options.to ?? "rsmsrv1@relay.test"}`,
    "Date: Wed, 25 Nov 2026 12:00:00 +0000",
    `Message-ID: <${crypto.randomUUID()}@relay.test>`,
    `Subject: ${subject}`,
    ...(options.headers ?? []),
    "",
    "",
  ].join("\n");
  const body = options.body ?? `Body of ${subject}.\n`;
  return concat(encoder.encode(head), typeof body === "string" ? encoder.encode(body) : body);
}

/** Bytes as a string of code points 0–255: byte-exact, safe to compare and slice. */
function binary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/** The header block of a message given as a binary string (through its last LF). */
function headerOf(text: string): string {
  const end = text.indexOf("\n\n");
  return end < 0 ? text : text.slice(0, end + 1);
}

/** The body of a message given as a binary string: every byte after the first empty line. */
function bodyOf(text: string): string {
  const end = text.indexOf("\n\n");
  return end < 0 ? "" : text.slice(end + 2);
}

function headerValue(text: string, name: string): string | undefined {
  return new RegExp(`^${name}: ([^\\n]*)$`, "im").exec(headerOf(text))?.[1];
}

const subjectOf = (mail: Uint8Array) => headerValue(binary(mail), "Subject") ?? "(no subject)";

/**
 * What Postfix writes in front of a message it delivers locally:
 * Return-Path, X-Original-To and Delivered-To (equal for equal envelopes),
 * then the Received: header that pickup adds, which names the submitting
 * uid, the queue id and the time. That two-line Received header is the only
 * part that may differ between two submissions of the same message.
 */
const TRACE_REGEXP =
  /^(Return-Path: [^\n]*\nX-Original-To: [^\n]*\nDelivered-To: [^\n]*\n)(Received: by relay\.test \(Postfix, from userid (\d+)\)\n\tid [0-9A-Za-z]+; [^\n]*\n)/;

/** Removes exactly the pickup Received: header; returns the rest and the submitting uid. */
function withoutPickupReceived(mail: Uint8Array): { rest: string; uid: string } {
  const text = binary(mail);
  const m = TRACE_REGEXP.exec(text);
  assert.ok(m, `unexpected trace headers:\n${text.slice(0, 400)}`);
  return { rest: m[1]! + text.slice(m[0].length), uid: m[3]! };
}

/** Takes every new message arriving within `ms`. */
async function drain(box: Mailbox, ms: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return got;
    try {
      got.push(await takeMail(box, left));
    } catch (e) {
      if (e instanceof Error && e.message.startsWith("no mail for")) return got;
      throw e;
    }
  }
}

/**
 * Takes mail from `box` until every subject in `expected` has arrived (or
 * `timeoutMs` passed), then keeps taking for `settleMs`, so that a message
 * that should not have come is caught too. Returns subject → messages.
 */
async function collect(
  box: Mailbox,
  expected: readonly string[],
  settleMs = 800,
  timeoutMs = 20000,
): Promise<Map<string, Uint8Array[]>> {
  const got = new Map<string, Uint8Array[]>();
  const add = (mail: Uint8Array) => {
    const s = subjectOf(mail);
    got.set(s, [...(got.get(s) ?? []), mail]);
  };
  const missing = new Set(expected);
  const deadline = Date.now() + timeoutMs;
  while (missing.size > 0) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let mail: Uint8Array;
    try {
      mail = await takeMail(box, left);
    } catch {
      break;
    }
    add(mail);
    missing.delete(subjectOf(mail));
  }
  for (const mail of await drain(box, settleMs)) add(mail);
  return got;
}

function assertSilentSuccess(res: RunResult, what: string): void {
  assert.deepEqual(
    { code: res.code, stdout: res.stdout, stderr: res.stderr },
    { code: 0, stdout: "", stderr: "" },
    `${what}: a successful send exits 0 and prints nothing`,
  );
}

/** Exit code, exactly one public line starting with `status`, empty stdout, no help text. */
function assertRefused(res: RunResult, code: number, status: string, what: string): void {
  assert.equal(res.code, code, `${what}: exit ${res.code}, stderr ${JSON.stringify(res.stderr)}`);
  assert.equal(res.stdout, "", `${what}: stdout must stay empty`);
  assert.match(res.stderr, PUBLIC_LINE_REGEXP, `${what}: exactly one status line`);
  assert.ok(res.stderr.startsWith(`${status} rsendmail: `), `${what}: ${res.stderr}`);
  assert.doesNotMatch(res.stderr, HELP_TEXT_REGEXP, `${what}: no help text`);
}

/** Asserts that `subject` arrived exactly once in `got`, and returns it. */
function deliveredOnce(got: Map<string, Uint8Array[]>, subject: string): Uint8Array {
  const mails = got.get(subject) ?? [];
  assert.equal(mails.length, 1, `${subject}: expected one delivery, got ${mails.length}`);
  return mails[0]!;
}

function notDelivered(got: Map<string, Uint8Array[]>, subject: string): void {
  assert.equal(got.get(subject)?.length ?? 0, 0, `${subject} must not be delivered`);
}

async function assertNoSpoolLeftovers(): Promise<void> {
  assert.deepEqual(await spoolLeftovers(), [], "no /tmp/rsendmail-* may linger");
}

/** A message of exactly `size` bytes. */
function messageOfSize(subject: string, size: number): Uint8Array {
  const head = message(subject, { body: "" }).length;
  const msg = message(subject, { body: `${"x".repeat(size - head - 1)}\n` });
  assert.equal(msg.length, size);
  return msg;
}

// Mailboxes by name, known before the bed starts (it creates the accounts).
const R1 = "rsmsrv1@relay.test";
const R2 = "rsmsrv2@relay.test";
const R3 = "rsmsrv3@relay.test";

// ------------------------------------------------------- byte-exact bodies

/** Every byte but LF and CR, then LF: binary-ish content on CRLF-free lines. */
function binaryishBody(): Uint8Array {
  const bytes: number[] = [];
  for (let b = 0; b < 256; b++) if (b !== 0x0a && b !== 0x0d) bytes.push(b);
  const line = new Uint8Array([...bytes, 0x0a]);
  return concat(encoder.encode("binary-ish bytes follow\n"), line, line, encoder.encode("end\n"));
}

const BODIES: ReadonlyArray<{ name: string; body: Uint8Array }> = [
  {
    name: "lone dot lines (upstream lost everything after one)",
    body: encoder.encode(
      "first line\n.\nafter the first lone dot\n..\n. \n .\n.\nlast line after a dot\n",
    ),
  },
  { name: "a lone dot as the last line", body: encoder.encode("text\n.\n") },
  {
    name: "8-bit body (UTF-8 and Latin-1 bytes)",
    body: concat(
      encoder.encode("Grüße, naïve café — ✉ 日本語\nLatin-1: "),
      new Uint8Array([0xe9, 0xe8, 0xff, 0xa0, 0x80, 0x0a]),
    ),
  },
  { name: "CRLF-free binary-ish bytes (NUL to 0xFF)", body: binaryishBody() },
];

Deno.test("rsendmail delivers a message byte-identical to a direct sendmail -oi", async (t) => {
  const { keys, box1, relayUid } = await bed();
  const sender = "bytes@relay.test";
  for (const [i, c] of BODIES.entries()) {
    await t.step(c.name, async () => {
      const msg = message(`bytes-${i}-${RUN}`, { body: c.body });
      const [viaRelay, direct] = await Promise.all([
        ssh(keys.plain, ["sendmail", "-oi", "-f", sender, "--", R1], msg),
        run(SENDMAIL, ["-oi", "-f", sender, "--", R1], { stdin: msg, check: false }),
      ]);
      assertSilentSuccess(viaRelay, "relay");
      assert.equal(direct.code, 0, direct.stderr);
      const copies = [await takeMail(box1), await takeMail(box1)].map(withoutPickupReceived);
      const relayCopy = copies.find((c) => c.uid === relayUid);
      const directCopy = copies.find((c) => c.uid === "0");
      assert.ok(relayCopy, `one copy submitted by ${RELAY_ACCOUNT} (uid ${relayUid})`);
      assert.ok(directCopy, "one copy submitted directly by root");
      // Everything but the pickup Received: header is identical, byte for byte
      // (Return-Path, X-Original-To, Delivered-To, the headers, the body).
      assert.equal(relayCopy.rest, directCopy.rest);
      // The body is exactly what was sent: nothing cut at a dot, no 8-bit loss.
      assert.equal(bodyOf(relayCopy.rest), binary(c.body));
      assert.equal(headerValue(relayCopy.rest, "Return-Path"), `<${sender}>`);
    });
  }
  assert.deepEqual((await drain(box1, 300)).map(subjectOf), [], "no third copy");
  await assertNoSpoolLeftovers();
});

// ------------------------------------------------------------- envelopes

const SENDERS: ReadonlyArray<{ name: string; words: string[]; returnPath: string }> = [
  { name: "null sender as -f ''", words: ["-f", ""], returnPath: "<>" },
  { name: "null sender as -f '<>'", words: ["-f", "<>"], returnPath: "<>" },
  { name: "null sender attached, -f<>", words: ["-f<>"], returnPath: "<>" },
  {
    name: "apostrophe, -f o'brien@relay.test",
    words: ["-f", "o'brien@relay.test"],
    returnPath: "<o'brien@relay.test>",
  },
  {
    name: "apostrophe attached, -fo'brien@relay.test",
    words: ["-fo'brien@relay.test"],
    returnPath: "<o'brien@relay.test>",
  },
  {
    name: `quoted local part, -f '"quoted local"@relay.test'`,
    words: ["-f", '"quoted local"@relay.test'],
    returnPath: '<"quoted local"@relay.test>',
  },
  {
    name: "obsolete -r synonym of -f",
    words: ["-r", "r-flag@relay.test"],
    returnPath: "<r-flag@relay.test>",
  },
  { name: "no -f: the relay account", words: [], returnPath: `<${RELAY_ACCOUNT}@relay.test>` },
];

Deno.test("rsendmail passes the envelope sender through to Return-Path", async (t) => {
  const { keys, box1 } = await bed();
  const subject = (i: number) => `sender-${i}-${RUN}`;
  const results = await pool(SENDERS, 8, (c) => {
    const i = SENDERS.indexOf(c);
    return ssh(keys.plain, ["sendmail", "-oi", ...c.words, "--", R1], message(subject(i)));
  });
  const got = await collect(box1, SENDERS.map((_, i) => subject(i)));
  for (const [i, c] of SENDERS.entries()) {
    await t.step(c.name, () => {
      assertSilentSuccess(results[i]!, c.name);
      const mail = deliveredOnce(got, subject(i));
      assert.equal(headerValue(binary(mail), "Return-Path"), c.returnPath);
    });
  }
  await assertNoSpoolLeftovers();
});

Deno.test("rsendmail delivers to several recipients, and to To/Cc/Bcc with -t", async (t) => {
  const { keys, box1, box2, box3 } = await bed();
  const several = `several-${RUN}`;
  const headers = `headers-${RUN}`;
  const [res1, res2] = await Promise.all([
    // Two full addresses and a bare local name.
    ssh(keys.plain, ["sendmail", "-i", "-f", "a@relay.test", R1, R2, "rsmsrv3"], message(several)),
    // mail(1)/PHP style: recipients from the headers only.
    ssh(
      keys.plain,
      ["sendmail", "-t", "-i"],
      message(headers, { to: R1, headers: [`Cc: ${R2}`, `Bcc: ${R3}`] }),
    ),
  ]);
  const boxes = [box1, box2, box3];
  const got = await Promise.all(boxes.map((b) => collect(b, [several, headers], 300)));
  await t.step("several recipients on the command line each get one copy", () => {
    assertSilentSuccess(res1, "several");
    for (const g of got) deliveredOnce(g, several);
  });
  await t.step("-t delivers to To, Cc and Bcc, and drops the Bcc header", () => {
    assertSilentSuccess(res2, "-t");
    for (const g of got) {
      const mail = binary(deliveredOnce(g, headers));
      assert.equal(headerValue(mail, "Bcc"), undefined);
    }
  });
  await t.step("nothing else arrived", () => {
    for (const g of got) assert.deepEqual([...g.keys()].sort(), [headers, several].sort());
  });
  await assertNoSpoolLeftovers();
});

Deno.test("rsendmail never runs the program the peer names as its first word", async () => {
  const { keys, box1 } = await bed();
  const dir = await Deno.makeTempDir({ prefix: "rsm-srv-fake-" });
  const marker = `${dir}/ran`;
  try {
    await Deno.writeTextFile(`${dir}/sendmail`, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    await Deno.chmod(dir, 0o755);
    const subject = `fakepath-${RUN}`;
    const res = await ssh(keys.plain, [`${dir}/sendmail`, "-oi", R1], message(subject));
    assertSilentSuccess(res, "path ending in sendmail");
    deliveredOnce(await collect(box1, [subject], 300), subject);
    assert.equal(await exists(marker), false, "the peer's program must not run");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assertNoSpoolLeftovers();
});

// --------------------------------------------------------------- refusals

const XLOG = `/tmp/rsm-srv-x-${RUN}.log`;
const DASHLOG = `/tmp/rsm-srv-dash-${RUN}.log`;
const PHPLOG = `/tmp/rsm-srv-php-${RUN}.log`;
const PHPLOG2 = `/tmp/rsm-srv-php2-${RUN}.log`;
const PWN = `/tmp/rsm-srv-pwn-${RUN}`;

/** One attack, the legitimate request it is a variant of, and how it must be refused. */
interface Attack {
  name: string;
  attack: Request;
  control: Request;
  code: 64 | 65;
  status: string;
  /** A file the attack would create if it reached sendmail or a shell. */
  mustNotExist?: string;
}

const BASE = ["sendmail", "-oi"];
const CONTROL = [...BASE, R1];
/** A refused option placed before the recipient; the control is the same request without it. */
const option = (name: string, words: string[], mustNotExist?: string): Attack => ({
  name,
  attack: [...BASE, ...words, R1],
  control: CONTROL,
  code: 64,
  status: "5.5.4",
  ...(mustNotExist === undefined ? {} : { mustNotExist }),
});

const ATTACKS: readonly Attack[] = [
  option("-bp lists the relay's mail queue", ["-bp"]),
  option("-bi rebuilds the alias database", ["-bi"]),
  option("-bd starts an SMTP daemon", ["-bd"]),
  option("-q flushes the relay's queue", ["-q"]),
  option("-qf runs the queue in the foreground", ["-qf"]),
  option("-C dir loads another Postfix configuration", ["-C", "/tmp"]),
  option("-X logfile writes a traffic log", ["-X", XLOG], XLOG),
  option("-O opt sets a sendmail option", ["-O", "QueueDirectory=/tmp"]),
  option("-oQ/tmp moves the queue directory", ["-oQ/tmp"]),
  option("-h asks for help (upstream printed it)", ["-h"]),
  option("-d0.1 turns on debugging", ["-d0.1"]),
  option("-G marks a gateway submission", ["-G"]),
  option("-L x sets the log tag", ["-L", "x"]),
  option("-bs speaks SMTP on stdin", ["-bs"]),
  option("-bv probes addresses (verify mode)", ["-bv"]),
  option("-Am picks the submission mode", ["-Am"]),
  option("--loglevel=debug, upstream's admin option sent by the peer", ["--loglevel=debug"]),
  option("--help asks for help text", ["--help"]),
  option("--max-size from the peer raises the admin limit", ["--max-size=999999999"]),
  option("--label from the peer forges the log label", ["--label=forged"]),
  option("-ti, a cluster of flags, is not split", ["-ti"]),
  {
    name: "a second -f overrides the first (policy bypass)",
    attack: [...BASE, "-f", "a@relay.test", "-f", "b@relay.test", R1],
    control: [...BASE, "-f", "a@relay.test", R1],
    code: 64,
    status: "5.5.4",
  },
  {
    name: "a recipient starting with - after -- (read as an option by sendmail)",
    attack: [...BASE, "--", `-X${DASHLOG}`, R1],
    control: [...BASE, "--", R1],
    code: 65,
    status: "5.1.3",
    mustNotExist: DASHLOG,
  },
  {
    name: "a word with a newline (a second request line)",
    attack: [...BASE, "-f", "a@relay.test\nrsmsrv2@relay.test", R1],
    control: [...BASE, "-f", "a@relay.test", R1],
    code: 64,
    status: "5.5.2",
  },
  {
    name: "a word with a carriage return",
    attack: [...BASE, "-f", "a@relay.test\r", R1],
    control: [...BASE, "-f", "a@relay.test", R1],
    code: 64,
    status: "5.5.2",
  },
  {
    name: "PHPMailer CVE-2016-10033: -f 'a@b -X/tmp/log' as one word",
    attack: [...BASE, "-f", `a@relay.test -X${PHPLOG}`, R1],
    control: [...BASE, "-f", "a@relay.test", R1],
    code: 65,
    status: "5.1.7",
    mustNotExist: PHPLOG,
  },
  {
    name: "PHPMailer shape unquoted: -f a@b -X/tmp/log as two words",
    attack: { raw: `sendmail -oi -f a@relay.test -X${PHPLOG2} ${R1}` },
    control: { raw: `sendmail -oi -f a@relay.test ${R1}` },
    code: 64,
    status: "5.5.4",
    mustNotExist: PHPLOG2,
  },
  {
    name: "command substitution in the sender, unquoted",
    attack: { raw: `sendmail -oi -f a$(touch\${IFS}${PWN}-a)@relay.test ${R1}` },
    control: { raw: `sendmail -oi -f a@relay.test ${R1}` },
    code: 64,
    status: "5.5.2",
    mustNotExist: `${PWN}-a`,
  },
  {
    name: "command substitution in the sender, quoted",
    attack: [...BASE, "-f", `a$(touch ${PWN}-b)@relay.test`, R1],
    control: [...BASE, "-f", "a@relay.test", R1],
    code: 65,
    status: "5.1.7",
    mustNotExist: `${PWN}-b`,
  },
  {
    name: "a second command chained with ;",
    attack: { raw: `sendmail -oi ${R1}; touch ${PWN}-c` },
    control: { raw: `sendmail -oi ${R1}` },
    code: 64,
    status: "5.5.2",
    mustNotExist: `${PWN}-c`,
  },
  {
    name: "a program other than sendmail",
    attack: ["sh", "-c", `touch ${PWN}-d`],
    control: CONTROL,
    code: 64,
    status: "5.5.1",
    mustNotExist: `${PWN}-d`,
  },
];

Deno.test("rsendmail refuses each attack, delivers nothing, and still delivers its control", async (t) => {
  const { keys, box1 } = await bed();
  const attackSubject = (i: number) => `refuse-${i}-${RUN}`;
  const controlSubject = (i: number) => `control-${i}-${RUN}`;
  const jobs = ATTACKS.flatMap((a, i) => [
    { request: a.attack, subject: attackSubject(i) },
    { request: a.control, subject: controlSubject(i) },
  ]);
  const results = await pool(jobs, 16, (j) => ssh(keys.plain, j.request, message(j.subject)));
  const got = await collect(box1, ATTACKS.map((_, i) => controlSubject(i)), 1000);
  for (const [i, a] of ATTACKS.entries()) {
    await t.step(a.name, async () => {
      assertRefused(results[2 * i]!, a.code, a.status, a.name);
      notDelivered(got, attackSubject(i));
      if (a.mustNotExist) assert.equal(await exists(a.mustNotExist), false, a.mustNotExist);
      // Positive control: the same request without the attack goes through.
      assertSilentSuccess(results[2 * i + 1]!, `control of ${a.name}`);
      deliveredOnce(got, controlSubject(i));
    });
  }
  await assertNoSpoolLeftovers();
});

// ---------------------------------------------------------------- policy

Deno.test("rsendmail --max-size refuses a bigger message and delivers nothing", async (t) => {
  const { keys, box2 } = await bed();
  const at = messageOfSize(`size-at-${RUN}`, 1000);
  const over = messageOfSize(`size-over-${RUN}`, 1001);
  const huge = messageOfSize(`size-huge-${RUN}`, 256 * 1024);
  const declared = messageOfSize(`size-declared-${RUN}`, 5000);
  const req = ["sendmail", "-oi", R2];
  const [resAt, resOver, resHuge, resDeclared] = await Promise.all([
    ssh(keys.size, req, at),
    ssh(keys.size, req, over),
    ssh(keys.size, req, huge),
    ssh(keys.size, [...req, "--size=5000", `--sha256=${await sha256Hex(declared)}`], declared),
  ]);
  const got = await collect(box2, [`size-at-${RUN}`]);
  await t.step("positive control: exactly 1000 bytes is delivered", () => {
    assertSilentSuccess(resAt, "1000 bytes");
    deliveredOnce(got, `size-at-${RUN}`);
  });
  await t.step("1001 bytes: 65, 5.3.4, nothing delivered", () => {
    assertRefused(resOver, 65, "5.3.4", "1001 bytes");
    notDelivered(got, `size-over-${RUN}`);
  });
  await t.step("256 KiB still streaming when refused: 65, nothing delivered", () => {
    assertRefused(resHuge, 65, "5.3.4", "256 KiB");
    notDelivered(got, `size-huge-${RUN}`);
  });
  await t.step("a declared --size over the limit is refused before reading", () => {
    assertRefused(resDeclared, 65, "5.3.4", "declared 5000");
    notDelivered(got, `size-declared-${RUN}`);
  });
  await assertNoSpoolLeftovers();
});

const POLICY: ReadonlyArray<{ name: string; words: string[]; code: 0 | 64 | 77 }> = [
  { name: "a foreign sender domain", words: ["-f", "boss@example.net"], code: 77 },
  { name: "a look-alike suffix domain", words: ["-f", "x@relay.test.example.net"], code: 77 },
  { name: "a subdomain of the allowed domain", words: ["-f", "x@sub.relay.test"], code: 77 },
  { name: "a look-alike prefix domain", words: ["-f", "x@xrelay.test"], code: 77 },
  { name: "attached -fboss@example.net", words: ["-fboss@example.net"], code: 77 },
  {
    name: "an allowed -f followed by a foreign -f",
    words: ["-f", "ok@relay.test", "-f", "boss@example.net"],
    code: 64,
  },
  { name: "control: an allowed sender", words: ["-f", "ok@relay.test"], code: 0 },
  { name: "control: the domain in capitals", words: ["-f", "OK@RELAY.TEST"], code: 0 },
  { name: "control: the null sender (bounces)", words: ["-f", ""], code: 0 },
  { name: "control: no -f (the relay account)", words: [], code: 0 },
];

Deno.test("rsendmail --allow-sender refuses other senders with 77", async (t) => {
  const { keys, box2 } = await bed();
  const subject = (i: number) => `policy-${i}-${RUN}`;
  const results = await pool(
    POLICY,
    8,
    (c) =>
      ssh(keys.policy, ["sendmail", "-oi", ...c.words, R2], message(subject(POLICY.indexOf(c)))),
  );
  const got = await collect(
    box2,
    POLICY.flatMap((c, i) => (c.code === 0 ? [subject(i)] : [])),
  );
  for (const [i, c] of POLICY.entries()) {
    await t.step(c.name, () => {
      if (c.code === 0) {
        assertSilentSuccess(results[i]!, c.name);
        deliveredOnce(got, subject(i));
      } else {
        assertRefused(results[i]!, c.code, c.code === 77 ? "5.7.1" : "5.5.4", c.name);
        notDelivered(got, subject(i));
      }
    });
  }
  await assertNoSpoolLeftovers();
});

Deno.test("rsendmail --max-recipients refuses one recipient too many", async (t) => {
  const { keys, box1, box2, box3 } = await bed();
  const three = `rcpts-three-${RUN}`;
  const two = `rcpts-two-${RUN}`;
  const [resThree, resTwo] = await Promise.all([
    ssh(keys.rcpts, ["sendmail", "-oi", R1, R2, R3], message(three)),
    ssh(keys.rcpts, ["sendmail", "-oi", R1, R2], message(two)),
  ]);
  const got = await Promise.all(
    [box1, box2, box3].map((b, i) => collect(b, i < 2 ? [two] : [], 500)),
  );
  await t.step("three recipients: 65, 5.5.3, nobody gets it", () => {
    assertRefused(resThree, 65, "5.5.3", "three recipients");
    for (const g of got) notDelivered(g, three);
  });
  await t.step("positive control: two recipients both get it", () => {
    assertSilentSuccess(resTwo, "two recipients");
    deliveredOnce(got[0]!, two);
    deliveredOnce(got[1]!, two);
    notDelivered(got[2]!, two);
  });
  await assertNoSpoolLeftovers();
});

Deno.test("rsendmail --max-recipients also counts the To/Cc/Bcc recipients of -t", async (t) => {
  const { keys, box1, box2, box3 } = await bed();
  const three = `rcpts-t-three-${RUN}`;
  const two = `rcpts-t-two-${RUN}`;
  const [resThree, resTwo] = await Promise.all([
    // attack: -t with more header recipients than the key allows
    ssh(
      keys.rcpts,
      ["sendmail", "-oi", "-t"],
      message(three, {
        to: `${R1}, "Two, Second" <${R2}>`,
        headers: [`Bcc: ${R3}`],
      }),
    ),
    ssh(keys.rcpts, ["sendmail", "-oi", "-t"], message(two, { to: `${R1}, ${R2}` })),
  ]);
  const got = await Promise.all(
    [box1, box2, box3].map((b, i) => collect(b, i < 2 ? [two] : [], 500)),
  );
  await t.step("three header recipients: 65, 5.5.3, nobody gets it", () => {
    assertRefused(resThree, 65, "5.5.3", "three header recipients");
    for (const g of got) notDelivered(g, three);
  });
  await t.step("positive control: two header recipients both get it", () => {
    assertSilentSuccess(resTwo, "two header recipients");
    deliveredOnce(got[0]!, two);
    deliveredOnce(got[1]!, two);
    notDelivered(got[2]!, two);
  });
  await assertNoSpoolLeftovers();
});

/** A -t message whose recipient fields are `fields`, spelt exactly as given. */
function headerMessage(subject: string, fields: string[], eol = "\n"): Uint8Array {
  return encoder.encode(
    [
      "From: Sender <sender@relay.test>",
      ...fields,
      "Date: Wed, 25 Nov 2026 12:00:00 +0000",
      `Message-ID: <${crypto.randomUUID()}@relay.test>`,
      `Subject: ${subject}`,
      "",
      `Body of ${subject}.`,
      "",
    ].join(eol),
  );
}

/**
 * Spellings of three recipients that the relay once counted as two or fewer
 * while Postfix's `sendmail -t` extracts all of them (issue 12), and
 * spellings it cannot count with certainty. Each names real mailboxes, so a
 * bypass would deliver.
 */
const HEADER_ATTACKS: ReadonlyArray<[string, string[], string]> = [
  ["To : a, b, c (blank before the colon)", [`To : ${R1}, ${R2}, ${R3}`], "5.5.3"],
  ["Bcc\\t: b, c (tab before the colon)", [`To: ${R1}`, `Bcc\t: ${R2}, ${R3}`], "5.5.3"],
  [
    'To: x\\"@…, a, b, c, "@… (quoted pair outside quotes)',
    [`To: x\\"@relay.test, ${R1}, ${R2}, ${R3}, "@relay.test`],
    "5.5.3",
  ],
  ["To: a b c (no commas)", [`To: ${R1} ${R2} ${R3}`], "5.5.3"],
  ["tO/cC/bCC (field-name case)", [`tO: ${R1}`, `cC: ${R2}`, `bCC: ${R3}`], "5.5.3"],
  ["To: a,\\n b,\\n\\tc (folded)", [`To: ${R1},\n ${R2},\n\t${R3}`], "5.5.3"],
  ["To: a / To: b / To: c (repeated)", [`To: ${R1}`, `To: ${R2}`, `To: ${R3}`], "5.5.3"],
  ["Resent-To : a, b, c", [`Resent-To : ${R1}, ${R2}, ${R3}`], "5.5.3"],
  [
    "To: =?…?q?One,?= <a>, b (encoded word with a comma)",
    [`To: =?utf-8?q?One,?= <${R1}>, ${R2}`],
    "5.5.3",
  ],
  ["To: team: a, b, c; (group)", [`To: team: ${R1}, ${R2}, ${R3};`], "5.5.3"],
  ["NUL byte in the To: line", [`To: ${R1}\0 x`, ` ${R2}, ${R3}`], "5.6.0"],
];

Deno.test("rsendmail --max-recipients 2 counts -t recipients however the header is spelt", async (t) => {
  const { keys, box1, box2, box3 } = await bed();
  const subject = (tag: string) => `hdr-${tag}-${RUN}`;
  const attacks = await Promise.all(
    HEADER_ATTACKS.map(([_, fields], i) =>
      ssh(keys.rcpts, ["sendmail", "-oi", "-t"], headerMessage(subject(`attack${i}`), fields))
    ),
  );
  const pad = Array.from({ length: 14_000 }, (_, i) => `X-Pad-${i}: ${"y".repeat(70)}`);
  const [tooLong, blank, named, crlf] = await Promise.all([
    ssh(
      keys.rcpts,
      ["sendmail", "-oi", "-t"],
      headerMessage(subject("toolong"), [...pad, `To: ${R1}, ${R2}, ${R3}`]),
    ),
    // positive controls: the same spellings, two recipients
    ssh(
      keys.rcpts,
      ["sendmail", "-oi", "-t"],
      headerMessage(subject("blank"), [`To : ${R1}, ${R2}`]),
    ),
    ssh(
      keys.rcpts,
      ["sendmail", "-oi", "-t"],
      headerMessage(subject("named"), [`To: "Two, Second" <${R2}> (2, II)`, `Bcc\t: ${R3}`]),
    ),
    ssh(
      keys.rcpts,
      ["sendmail", "-oi", "-t"],
      headerMessage(subject("crlf"), [`tO : ${R1},\r\n\t${R3}`], "\r\n"),
    ),
  ]);
  const controls = { blank: [R1, R2], named: [R2, R3], crlf: [R1, R3] };
  const boxes = [box1, box2, box3];
  const got = await Promise.all(
    [R1, R2, R3].map((r, i) =>
      collect(
        boxes[i]!,
        Object.entries(controls).filter(([_, to]) => to.includes(r)).map(([tag]) => subject(tag)),
        800,
      )
    ),
  );
  for (const [i, [name, , status]] of HEADER_ATTACKS.entries()) {
    await t.step(`${name}: 65, ${status}, nobody gets it`, () => {
      assertRefused(attacks[i]!, 65, status, name);
      for (const g of got) notDelivered(g, subject(`attack${i}`));
    });
  }
  await t.step("a header section longer than the relay reads (1 MiB): 65, 5.6.0", () => {
    assertRefused(tooLong, 65, "5.6.0", "header section too long");
    for (const g of got) notDelivered(g, subject("toolong"));
  });
  await t.step("positive controls: two recipients, spelt the same ways, are delivered", () => {
    assertSilentSuccess(blank, "To : a, b");
    assertSilentSuccess(named, 'To: "Two, Second" <b> / Bcc\\t: c');
    assertSilentSuccess(crlf, "tO : a,\\r\\n\\tc");
    for (const [tag, to] of Object.entries(controls)) {
      [R1, R2, R3].forEach((r, i) => {
        if (to.includes(r)) deliveredOnce(got[i]!, subject(tag));
        else notDelivered(got[i]!, subject(tag));
      });
    }
  });
  await assertNoSpoolLeftovers();
});

// ------------------------------------------------------------- integrity

Deno.test("rsendmail checks --size and --sha256 and never delivers a cut message", async (t) => {
  const { keys, box3 } = await bed();
  const subjects: Record<string, string> = {};
  const make = (tag: string) => {
    subjects[tag] = `int-${tag}-${RUN}`;
    return message(subjects[tag]!, { to: R3, body: `${"line of text\n".repeat(400)}.\nend\n` });
  };
  const integrity = async (
    msg: Uint8Array,
  ) => [`--size=${msg.length}`, `--sha256=${await sha256Hex(msg)}`];
  const req = ["sendmail", "-oi", R3];

  const good = make("good");
  const cut = make("cut");
  const wrong = make("wrong");
  const longer = make("longer");
  const killed = make("killed");
  const none = make("none");
  const sizeOnly = make("sizeonly");
  const both = make("both");
  const idle = make("idle");

  const wrongBytes = wrong.slice();
  const flip = wrongBytes.length - 3;
  wrongBytes[flip] = wrongBytes[flip]! ^ 0x01; // same size, one bit off

  /** Sends the first half of `msg` after declaring all of it, then ends as `how` says. */
  const half = async (key: string, msg: Uint8Array, how: "close" | "kill" | "hold") => {
    const s = await openSsh(key, [...req, ...await integrity(msg)]);
    await s.writer.write(msg.subarray(0, msg.length >> 1)).catch(() => {});
    if (how === "close") await s.close();
    if (how === "kill") {
      await sleep(500);
      s.child.kill("SIGKILL");
    }
    const res = await s.done;
    await s.close();
    return res;
  };

  const [resGood, resCut, resWrong, resLonger, resKilled, resNone, resSizeOnly, resBoth, resIdle] =
    await Promise.all([
      ssh(keys.plain, [...req, ...await integrity(good)], good),
      half(keys.plain, cut, "close"),
      ssh(keys.plain, [...req, ...await integrity(wrong)], wrongBytes),
      ssh(
        keys.plain,
        [...req, ...await integrity(longer)],
        concat(longer, encoder.encode("extra\n")),
      ),
      half(keys.plain, killed, "kill"),
      ssh(keys.integrity, req, none),
      ssh(keys.integrity, [...req, `--size=${sizeOnly.length}`], sizeOnly),
      ssh(keys.integrity, [...req, ...await integrity(both)], both),
      half(keys.idle, idle, "hold"),
    ]);
  const got = await collect(box3, [subjects.good!, subjects.both!], 1000);

  await t.step("positive control: the right --size and --sha256 deliver", () => {
    assertSilentSuccess(resGood, "good");
    deliveredOnce(got, subjects.good!);
  });
  await t.step("stdin cut halfway: 75, 4.4.2, nothing delivered", () => {
    assertRefused(resCut, 75, "4.4.2", "cut");
    assert.equal(resCut.stderr, "4.4.2 rsendmail: message truncated in transit\n");
    notDelivered(got, subjects.cut!);
  });
  await t.step("a wrong hash (one bit flipped): 65, nothing delivered", () => {
    assertRefused(resWrong, 65, "5.6.0", "wrong hash");
    notDelivered(got, subjects.wrong!);
  });
  await t.step("more bytes than declared: 65, nothing delivered", () => {
    assertRefused(resLonger, 65, "5.6.0", "longer");
    notDelivered(got, subjects.longer!);
  });
  await t.step("ssh client killed mid-message: nothing delivered", () => {
    assert.notEqual(resKilled.code, 0);
    notDelivered(got, subjects.killed!);
  });
  await t.step("idle peer (--idle-timeout 1): 75, 4.4.2, nothing delivered", () => {
    assertRefused(resIdle, 75, "4.4.2", "idle");
    assert.ok(resIdle.ms < 5000, `gave up after ${Math.round(resIdle.ms)} ms`);
    notDelivered(got, subjects.idle!);
  });
  await t.step("--require-integrity refuses a request without them (77)", () => {
    assertRefused(resNone, 77, "5.7.0", "no integrity");
    notDelivered(got, subjects.none!);
    assertRefused(resSizeOnly, 77, "5.7.0", "size only");
    notDelivered(got, subjects.sizeonly!);
  });
  await t.step("positive control: --require-integrity with both delivers", () => {
    assertSilentSuccess(resBoth, "both");
    deliveredOnce(got, subjects.both!);
  });
  await assertNoSpoolLeftovers();
});

// ------------------------------------------------- no request, no waiting

Deno.test("rsendmail without a request refuses at once without reading stdin", async (t) => {
  const { keys, box1 } = await bed();
  /** Runs ssh with stdin held open; fails instead of hanging if the relay waits. */
  const heldOpen = async (request: Request, sshOptions: string[] = []) => {
    const s = await openSsh(keys.plain, request, sshOptions);
    const timer = sleep(5000).then(() => "hung" as const);
    const res = await Promise.race([s.done, timer]);
    if (res === "hung") {
      s.child.kill("SIGKILL");
      await s.done;
      await s.close();
      assert.fail("the relay waited on stdin");
    }
    await s.close();
    return res;
  };
  await t.step("`ssh relay` with no command: 64 well under 2 s, stdin left open", async () => {
    const res = await heldOpen(null);
    assertRefused(res, 64, "5.5.1", "no command");
    assert.ok(res.ms < 2000, `took ${Math.round(res.ms)} ms`);
  });
  await t.step("an sftp subsystem request: 64 at once", async () => {
    const res = await heldOpen(["sftp"], ["-s"]);
    // sshd drops a subsystem's stderr; no sftp-server handshake on stdout.
    assert.deepEqual({ code: res.code, stdout: res.stdout }, { code: 64, stdout: "" });
    assert.ok(res.ms < 2000, `took ${Math.round(res.ms)} ms`);
  });
  await t.step("positive control: the same key with a request delivers", async () => {
    const subject = `norequest-control-${RUN}`;
    assertSilentSuccess(
      await ssh(keys.plain, ["sendmail", "-oi", R1], message(subject)),
      "control",
    );
    deliveredOnce(await collect(box1, [subject], 300), subject);
  });
  await assertNoSpoolLeftovers();
});

// ----------------------------------------------------------- spool hygiene

Deno.test("rsendmail's spool file has no name in /tmp even while it is being written", async () => {
  const { keys, box1 } = await bed();
  const subject = `spool-${RUN}`;
  // Over the 4 MiB a relay holds in memory: this one becomes a file.
  const body = "spooled\n".repeat(600_000);
  const msg = message(subject, { body });
  const s = await openSsh(keys.spool, ["sendmail", "-oi", R1]);
  /** The relay's pids (the forced command carries this run's label) and its open spool files. */
  const relayFds = async () => {
    const pids = (await run("/usr/bin/pgrep", ["-f", `label srvspool-${RUN}`], { check: false }))
      .stdout.split("\n").filter(Boolean);
    const spool: string[] = [];
    for (const pid of pids) {
      const ls = await run("/bin/ls", ["-l", `/proc/${pid}/fd`], { check: false });
      spool.push(...ls.stdout.split("\n").filter((l) => l.includes("/tmp/rsendmail-")));
    }
    return { pids, spool };
  };
  try {
    // The first 3 MB: held in memory, no file at all yet.
    await s.writer.write(msg.subarray(0, 3_000_000));
    const deadline = Date.now() + 5000;
    let now = await relayFds();
    while (now.pids.length === 0 && Date.now() < deadline) {
      await sleep(100);
      now = await relayFds();
    }
    assert.ok(now.pids.length > 0, "the relay runs");
    await sleep(300);
    assert.deepEqual((await relayFds()).spool, [], "a message that fits in memory has no file");
    // Past 4 MiB: now a file, already unlinked.
    await s.writer.write(msg.subarray(3_000_000, 4_300_000));
    const spoolFds: string[] = [];
    while (spoolFds.length === 0 && Date.now() < deadline + 5000) {
      await sleep(100);
      spoolFds.push(...(await relayFds()).spool);
    }
    assert.ok(spoolFds.length > 0, "the relay holds its spool file open");
    for (const l of spoolFds) assert.match(l, / \(deleted\)$/, "already unlinked");
    await assertNoSpoolLeftovers();
    await s.writer.write(msg.subarray(4_300_000));
    await s.close();
    assertSilentSuccess(await s.done, "spooled send");
    const mail = deliveredOnce(await collect(box1, [subject], 300), subject);
    assert.equal(bodyOf(binary(mail)), body);
  } finally {
    await s.close();
    await s.done;
  }
  await assertNoSpoolLeftovers();
});

// ---------------------------------------------------------------- syslog

/** `severity rsendmail[pid]: key=value …` as the bed's rsyslogd writes it. */
const LOG_LINE_REGEXP = /^(\w+) rsendmail\[(\d+)\]: (.*)$/;

function logFields(line: string): { severity: string; fields: Map<string, string> } {
  const m = LOG_LINE_REGEXP.exec(line);
  assert.ok(m, `not an rsendmail line: ${line}`);
  const fields = new Map<string, string>();
  for (const f of m[3]!.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const raw = f[2]!;
    fields.set(f[1]!, raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw);
  }
  return { severity: m[1]!, fields };
}

/** Lines of this run's plain key (label srv-RUN) from now until one also matches `needle`. */
async function ourLines(syslog: Syslog, needle: RegExp): Promise<string[]> {
  const label = `label=srv-${RUN} `;
  const lines = await syslog.waitForLine(
    new RegExp(`^(?=.*${label})(?=.*${needle.source})`),
    3000,
  );
  return lines.filter((l) => l.includes(label));
}

Deno.test("rsendmail logs one mail-facility line per request", async (t) => {
  const { keys, syslog, box1 } = await bed();
  await syslog.newLines();

  await t.step("after a delivery: info, event=sent and the envelope summary", async () => {
    const sender = `log-${RUN}@relay.test`;
    const subject = `log-sent-${RUN}`;
    const msg = message(subject);
    assertSilentSuccess(await ssh(keys.plain, ["sendmail", "-oi", "-f", sender, R1], msg), "send");
    deliveredOnce(await collect(box1, [subject], 0), subject);
    const lines = await ourLines(syslog, /event=sent/);
    assert.equal(lines.length, 1, lines.join("\n"));
    const { severity, fields } = logFields(lines[0]!);
    assert.equal(severity, "info");
    assert.deepEqual(
      { ...Object.fromEntries(fields), ms: undefined },
      {
        event: "sent",
        label: `srv-${RUN}`,
        client: "127.0.0.1",
        sender: `<${sender}>`,
        rcpts: "1",
        size: String(msg.length),
        sha256: (await sha256Hex(msg)).slice(0, 12),
        exit: "0",
        ms: undefined,
      },
    );
    assert.match(fields.get("ms") ?? "", /^\d+$/);
  });

  await t.step("after a refusal: warning, event=refused and the reason", async () => {
    assertRefused(await ssh(keys.plain, ["sendmail", "-bp", R1]), 64, "5.5.4", "-bp");
    const lines = await ourLines(syslog, /event=refused/);
    assert.equal(lines.length, 1, lines.join("\n"));
    const { severity, fields } = logFields(lines[0]!);
    assert.equal(severity, "warning");
    assert.equal(fields.get("client"), "127.0.0.1");
    assert.equal(fields.get("exit"), "64");
    assert.equal(fields.get("reason"), "option -bp is not allowed");
  });

  await t.step("after a cut message: err, event=deferred", async () => {
    const msg = message(`log-cut-${RUN}`);
    const s = await openSsh(keys.plain, ["sendmail", "-oi", R1, `--size=${msg.length + 10}`]);
    await s.writer.write(msg);
    await s.close();
    assertRefused(await s.done, 75, "4.4.2", "cut");
    const lines = await ourLines(syslog, /event=deferred/);
    assert.equal(lines.length, 1, lines.join("\n"));
    const { severity, fields } = logFields(lines[0]!);
    assert.equal(severity, "err");
    assert.equal(fields.get("exit"), "75");
    assert.equal(fields.get("size"), String(msg.length));
  });

  await t.step("24 concurrent requests leave 24 lines (relays share one bind path)", async () => {
    const n = 24;
    const results = await pool(
      Array.from({ length: n }, () => ["sendmail", "-bv", R1]),
      n,
      (words) => ssh(keys.plain, words),
    );
    for (const res of results) assertRefused(res, 64, "5.5.4", "-bv");
    const lines: string[] = [];
    const deadline = Date.now() + 3000;
    while (lines.length < n && Date.now() < deadline) {
      await sleep(100);
      lines.push(
        ...(await syslog.newLines()).filter((l) =>
          l.includes(`label=srv-${RUN} `) && l.includes("option -bv")
        ),
      );
    }
    assert.equal(lines.length, n, `${lines.length} of ${n} lines logged`);
  });

  for (const [name, char] of [["CR", "\r"], ["LF", "\n"], ["CRLF", "\r\n"]] as const) {
    await t.step(`a ${name} in a peer word never splits or forges a line`, async () => {
      const forged = `x@relay.test${char}warning rsendmail[1]: event=sent label=forged`;
      const res = await ssh(keys.plain, ["sendmail", "-oi", "-f", forged, R1], message("forged"));
      assertRefused(res, 64, "5.5.2", name);
      const lines = await ourLines(syslog, /event=refused/);
      await sleep(300);
      const all = [...lines, ...await syslog.newLines()];
      const related = all.filter((l) => l.includes("forged") || l.includes(`srv-${RUN}`));
      assert.equal(related.length, 1, related.join("\n"));
      assert.doesNotMatch(related[0]!, /forged|#015|#012/);
      assert.equal(logFields(related[0]!).fields.get("event"), "refused");
    });
  }
  await assertNoSpoolLeftovers();
});

// Keep last: it stops the syslog.
Deno.test("rsendmail delivers silently with no /dev/log", async (t) => {
  const { keys, syslog, box1 } = await bed();
  await syslog.stop();
  assert.equal((await run("/usr/bin/test", ["-e", "/dev/log"], { check: false })).code, 1);
  await t.step("a delivery exits 0 with empty stdout and stderr", async () => {
    const subject = `nolog-${RUN}`;
    assertSilentSuccess(await ssh(keys.plain, ["sendmail", "-oi", R1], message(subject)), "no log");
    deliveredOnce(await collect(box1, [subject], 300), subject);
  });
  await t.step("a refusal still prints exactly its one line", async () => {
    assertRefused(await ssh(keys.plain, ["sendmail", "-bp", R1]), 64, "5.5.4", "no log");
  });
  await assertNoSpoolLeftovers();
});

Deno.test("teardown: stop this file's sshd and rsyslogd", async () => {
  if (bedPromise === undefined) return;
  const { relay, syslog } = await bedPromise;
  await Promise.all([relay.stop(), syslog.stop()]);
});
