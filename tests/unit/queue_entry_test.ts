import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  backoffMs,
  failureNotice,
  formatAge,
  frameWordsOf,
  newMessageId,
  parseDuration,
  parseQueueHeader,
  QUEUE_ID_REGEXP,
  type QueueHeader,
  queueHeader,
  requestOf,
} from "../../lib/client/queue_entry.ts";
import { frameHeader, frameWords, ID_REGEXP } from "../../lib/shared/batch.ts";
import { parseRequest } from "../../lib/shared/request_codec.ts";
import { tokenizeWords } from "../../lib/shared/words.ts";

const ID = `m${"0123456789abcdef".repeat(2)}`;
const SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const DROP = "00112233445566778899aabbccddeeff";
const CREATED = Date.UTC(2026, 0, 2, 3, 4, 5);

/** A header as the queue writes it. */
const BASE: QueueHeader = {
  v: 1,
  id: ID,
  sender: "ann@x.example",
  recipients: ["bob@y.example"],
  extractRecipients: false,
  created: CREATED,
  size: 1234,
  sha256: SHA,
};

/** BASE with some fields replaced (undefined removes one), as a JSON line. */
function line(fields: Record<string, unknown>): string {
  const h: Record<string, unknown> = { ...BASE, ...fields };
  for (const [k, v] of Object.entries(fields)) if (v === undefined) delete h[k];
  return JSON.stringify(h);
}

/** [name, fields over BASE] */
const ACCEPT: [string, Record<string, unknown>][] = [
  ["the header the queue writes", {}],
  ["no -f (sender null)", { sender: null }],
  ["the null sender", { sender: "" }],
  ["-t without recipients", { recipients: [], extractRecipients: true }],
  ["several recipients", { recipients: ["a@x.example", "b@y.example"] }],
  ["an empty message", { size: 0 }],
  ["the largest safe size", { size: Number.MAX_SAFE_INTEGER }],
  ["uid 0 (root submitted it)", { uid: 0 }],
  ["uid 1000", { uid: 1000 }],
  ["the largest safe uid", { uid: Number.MAX_SAFE_INTEGER }],
  ["a drop name (32 lower-case hex)", { drop: DROP }],
  ["uid and drop together", { uid: 1000, drop: DROP }],
  ["an unknown field from a later version is ignored", { note: "x" }],
];

/** [what is wrong, the line] */
const REFUSE: [string, string][] = [
  ["not JSON", "{v:1}"],
  ["the empty line", ""],
  ["JSON null", "null"],
  ["a JSON array", "[]"],
  ["a JSON number", "1"],
  ["a JSON string", JSON.stringify(line({}))],
  ["a header cut short", line({}).slice(0, -1)],
  ["v missing", line({ v: undefined })],
  ["v 2 (a later format)", line({ v: 2 })],
  ['v "1"', line({ v: "1" })],
  ["id missing", line({ id: undefined })],
  ["id without its m", line({ id: "0123456789abcdef0123456789abcdef" })],
  ["id in upper case", line({ id: ID.toUpperCase() })],
  ["id one digit short", line({ id: ID.slice(0, -1) })],
  ["id one digit long", line({ id: `${ID}0` })],
  ["id as a path", line({ id: "../../etc/passwd" })],
  ["id with a newline", line({ id: `${ID}\n` })],
  ["id a number", line({ id: 1 })],
  ["sender missing", line({ sender: undefined })],
  ["sender a number", line({ sender: 1 })],
  ["sender a list", line({ sender: ["a@x.example"] })],
  ["recipients missing", line({ recipients: undefined })],
  ["recipients a string", line({ recipients: "bob@y.example" })],
  ["a recipient a number", line({ recipients: ["a@x.example", 1] })],
  ["a recipient null", line({ recipients: [null] })],
  ["extractRecipients missing", line({ extractRecipients: undefined })],
  ['extractRecipients "false"', line({ extractRecipients: "false" })],
  ["extractRecipients 0", line({ extractRecipients: 0 })],
  ["created missing", line({ created: undefined })],
  ["created a date string", line({ created: "2026-01-02" })],
  [
    "created 1e999 (Infinity: never expires, never retried)",
    line({}).replace(/"created":\d+/, '"created":1e999'),
  ],
  ["created negative", line({ created: -1 })],
  ["created a fraction", line({ created: 1.5 })],
  ["size missing", line({ size: undefined })],
  ["size negative", line({ size: -1 })],
  ["size a fraction", line({ size: 1.5 })],
  ["size a string", line({ size: "1234" })],
  ["size over the safe integers", line({ size: 2 ** 53 })],
  ["size 1e999 (Infinity)", line({}).replace('"size":1234', '"size":1e999')],
  ["sha256 missing", line({ sha256: undefined })],
  ["sha256 in upper case", line({ sha256: SHA.toUpperCase() })],
  ["sha256 one digit short", line({ sha256: SHA.slice(1) })],
  ["sha256 not hex", line({ sha256: "g".repeat(64) })],
  ["uid negative", line({ uid: -1 })],
  ["uid a fraction", line({ uid: 1.5 })],
  ['uid "1000"', line({ uid: "1000" })],
  ["uid null", line({ uid: null })],
  ["uid over the safe integers", line({ uid: 2 ** 53 })],
  ["drop in upper case", line({ drop: DROP.toUpperCase() })],
  ["drop one digit short", line({ drop: DROP.slice(1) })],
  ["drop one digit long", line({ drop: `${DROP}0` })],
  ["drop as a path", line({ drop: "../../../../../../tmp/x" })],
  ["drop a number", line({ drop: 1 })],
  ["drop null", line({ drop: null })],
];

Deno.test("parseQueueHeader() accepts the headers the queue writes", async (t) => {
  for (const [name, fields] of ACCEPT) {
    await t.step(name, () => {
      const text = line(fields);
      deepStrictEqual(parseQueueHeader(text), JSON.parse(text));
    });
  }
});

Deno.test("parseQueueHeader() refuses a corrupt header", async (t) => {
  for (const [name, text] of REFUSE) {
    await t.step(`refuses ${name}`, () => strictEqual(parseQueueHeader(text), undefined));
  }
  await t.step("positive control: BASE itself", () => {
    deepStrictEqual(parseQueueHeader(JSON.stringify(BASE)), BASE);
  });
});

Deno.test("queueHeader() writes what parseQueueHeader() reads back", () => {
  const req = parseRequest(["-f", "", "-t", "--", "a@x.example"]);
  const h = queueHeader(ID, req, { size: 5, sha256: SHA }, CREATED);
  deepStrictEqual(h, {
    v: 1,
    id: ID,
    sender: "",
    recipients: ["a@x.example"],
    extractRecipients: true,
    created: CREATED,
    size: 5,
    sha256: SHA,
  });
  deepStrictEqual(parseQueueHeader(JSON.stringify(h)), h);
  strictEqual(
    queueHeader(ID, parseRequest(["x@y.example"]), { size: 0, sha256: SHA }, 0).sender,
    null,
  );
});

Deno.test("newMessageId() makes a queue id that is also a batch id", () => {
  const id = newMessageId("123e4567-e89b-12d3-a456-426614174000");
  strictEqual(id, "m123e4567e89b12d3a456426614174000");
  ok(QUEUE_ID_REGEXP.test(id));
  ok(ID_REGEXP.test(id));
  ok(QUEUE_ID_REGEXP.test(newMessageId(crypto.randomUUID())));
});

/** [attempts, ms] */
const BACKOFF: [number, number][] = [
  [-5, 60_000],
  [0, 60_000],
  [1, 60_000],
  [2, 120_000],
  [3, 240_000],
  [6, 1_920_000],
  [7, 3_600_000],
  [8, 3_600_000],
  [100, 3_600_000],
  [5000, 3_600_000],
];

Deno.test("backoffMs() doubles from 1 min and stops at 1 h", async (t) => {
  for (const [attempts, ms] of BACKOFF) {
    await t.step(`${attempts} → ${ms}`, () => strictEqual(backoffMs(attempts), ms));
  }
});

/** [text, ms] */
const DURATION: [string, number][] = [
  ["45", 45_000],
  ["45s", 45_000],
  ["90m", 5_400_000],
  ["12h", 43_200_000],
  ["30d", 2_592_000_000],
  ["0", 0],
  ["0d", 0],
  [" 7d ", 604_800_000],
  ["7 d", 604_800_000],
  ["007m", 420_000],
  ["999999999", 999_999_999_000],
];

/** [what is wrong, text] */
const BAD_DURATION: [string, string][] = [
  ["the empty text", ""],
  ["a unit alone", "d"],
  ["weeks", "1w"],
  ["an upper-case unit", "1D"],
  ["a fraction", "1.5h"],
  ["a sign", "-1d"],
  ["a plus sign", "+1d"],
  ["an exponent", "1e3"],
  ["two units", "1h30m"],
  ["a unit twice", "1dd"],
  ["a word", "10 days"],
  ["hex", "0x10"],
  ["ten digits", "1000000000"],
  ["full-width digits", "\uff11\uff12"],
];

Deno.test("parseDuration() reads s, m, h, d and plain seconds", async (t) => {
  for (const [text, ms] of DURATION) {
    await t.step(JSON.stringify(text), () => strictEqual(parseDuration(text), ms));
  }
});

Deno.test("parseDuration() refuses anything else", async (t) => {
  for (const [name, text] of BAD_DURATION) {
    await t.step(`refuses ${name}`, () => strictEqual(parseDuration(text), undefined));
  }
  await t.step("positive control: nine digits with a unit", () => {
    strictEqual(parseDuration("123456789s"), 123_456_789_000);
  });
});

/** [ms, age] */
const AGE: [number, string][] = [
  [-1000, "0s"],
  [0, "0s"],
  [999, "0s"],
  [1000, "1s"],
  [59_999, "59s"],
  [60_000, "1m"],
  [3_599_999, "59m"],
  [3_600_000, "1h00m"],
  [3_900_000, "1h05m"],
  [47 * 3_600_000 + 59 * 60_000, "47h59m"],
  [48 * 3_600_000, "2d00h"],
  [49 * 3_600_000 + 59 * 60_000, "2d01h"],
  [30 * 86_400_000, "30d00h"],
  [400 * 86_400_000 + 23 * 3_600_000, "400d23h"],
];

Deno.test("formatAge() prints s, m, h with minutes, d with hours", async (t) => {
  for (const [ms, age] of AGE) {
    await t.step(`${ms} → ${age}`, () => strictEqual(formatAge(ms), age));
  }
});

Deno.test("failureNotice() is a complete message from MAILER-DAEMON to the sender", () => {
  const h: QueueHeader = { ...BASE, recipients: ["bob@y.example", "carl@z.example"] };
  const notice = failureNotice(
    h,
    "not delivered within 30d00h (4.4.1 relay unreachable)",
    "sat.example",
    "From: ann@x.example\nSubject: hello\n\n",
    new Date(Date.UTC(2026, 1, 1, 0, 0, 0)),
  );
  strictEqual(
    notice,
    [
      "From: Mail Delivery System <MAILER-DAEMON@sat.example>",
      "To: <ann@x.example>",
      "Subject: Undelivered Mail Returned to Sender",
      "Auto-Submitted: auto-replied",
      "Date: Sun, 01 Feb 2026 00:00:00 GMT",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "",
      "This is sshsendmail on sat.example.",
      "",
      "Your message could not be delivered to:",
      "  <bob@y.example>",
      "  <carl@z.example>",
      "",
      "Reason: not delivered within 30d00h (4.4.1 relay unreachable)",
      "Queued: Fri, 02 Jan 2026 03:04:05 GMT",
      "",
      "--- headers of the message ---",
      "From: ann@x.example",
      "Subject: hello",
      "",
    ].join("\n"),
  );
});

Deno.test("failureNotice() keeps the original headers in the body", () => {
  const notice = failureNotice(BASE, "r", "sat", "", new Date(0));
  const [head, ...body] = notice.split("\n\n");
  ok(head!.startsWith("From: Mail Delivery System <MAILER-DAEMON@sat>\n"));
  ok(!/^(To|Subject|From):/m.test(body.join("\n\n")), "nothing after the blank line is a field");
  ok(notice.endsWith("--- headers of the message ---\n\n"));
});

const LOCAL = fc.oneof(
  fc.stringMatching(/^[a-z0-9+'_-]{1,8}(\.[a-z0-9+'_-]{1,8}){0,2}$/),
  fc.stringMatching(/^"[a-z ,;:'()$`!]{1,12}"$/),
);
const DOMAIN = fc.stringMatching(/^[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}$/);
const ADDRESS = fc.tuple(LOCAL, DOMAIN).map(([l, d]) => `${l}@${d}`).filter((a) =>
  !a.startsWith("-") && !/^"?[|/]/.test(a) && !/^"?:include:/i.test(a)
);
const HEADER: fc.Arbitrary<QueueHeader> = fc.record({
  v: fc.constant(1 as const),
  id: fc.stringMatching(/^m[0-9a-f]{32}$/),
  sender: fc.oneof(ADDRESS, fc.constant(""), fc.constant(null)),
  recipients: fc.array(ADDRESS, { minLength: 1, maxLength: 5 }),
  extractRecipients: fc.boolean(),
  created: fc.nat(),
  size: fc.nat({ max: 10_000_000 }),
  sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
});

Deno.test("frameWordsOf() is read back by the relay's grammar as requestOf() (property)", () => {
  fc.assert(
    fc.property(HEADER, (h) => {
      ok(parseQueueHeader(JSON.stringify(h)));
      const req = requestOf(h);
      strictEqual(req.sender, h.sender ?? undefined);
      strictEqual(req.id, h.id);
      deepStrictEqual(parseRequest(frameWordsOf(h)), req);
      deepStrictEqual(tokenizeWords(frameWords(frameHeader(frameWordsOf(h)))), frameWordsOf(h));
    }),
    { seed: 0x9e7e, numRuns: 1000 },
  );
});

Deno.test("frameWordsOf() always sends size, hash and id, and -f only when one was given", async (t) => {
  await t.step("no -f", () => {
    deepStrictEqual(frameWordsOf({ ...BASE, sender: null }), [
      "-oi",
      "--size=1234",
      `--sha256=${SHA}`,
      `--id=${ID}`,
      "--",
      "bob@y.example",
    ]);
  });
  await t.step("the null sender and -t", () => {
    deepStrictEqual(
      frameWordsOf({ ...BASE, sender: "", extractRecipients: true, recipients: [] }),
      [
        "-oi",
        "-f",
        "",
        "-t",
        "--size=1234",
        `--sha256=${SHA}`,
        `--id=${ID}`,
        "--",
      ],
    );
  });
  await t.step("a recipient starting with a dash stays after --", () => {
    deepStrictEqual(frameWordsOf({ ...BASE, recipients: ["-oQ/tmp@x.example"] }).slice(-2), [
      "--",
      "-oQ/tmp@x.example",
    ]);
  });
});
