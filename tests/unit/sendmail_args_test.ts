import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { isEnvelopeAddress } from "../../lib/shared/address.ts";
import { DataError, UsageError } from "../../lib/shared/errors.ts";
import { EX_DATAERR, EX_USAGE } from "../../lib/shared/exit_codes.ts";
import {
  describeWord,
  parseSendmailArgs,
  type SendmailRequest,
  toSendmailArgv,
} from "../../lib/shared/sendmail_args.ts";
import { assertRefused, type MailErrorClass } from "./_assert.ts";

const SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const PATH = "/usr/sbin/sendmail";

/** A request with every field unset, whatever fields the grammar grows. */
const BLANK: SendmailRequest = {
  ...parseSendmailArgs(["sendmail", "-t"]),
  extractRecipients: false,
};

function request(fields: Partial<SendmailRequest>): SendmailRequest {
  return { ...BLANK, ...fields };
}

/** [name, words after the program name, expected request] */
const ACCEPT: [string, string[], SendmailRequest][] = [
  ["cron: -FCronDaemon -i -B8BITMIME -oem root", [
    "-FCronDaemon",
    "-i",
    "-B8BITMIME",
    "-oem",
    "root",
  ], request({ recipients: ["root"] })],
  [
    "mutt: -oem -oi -f a@b -- c@d",
    ["-oem", "-oi", "-f", "a@b.example", "--", "c@d.example"],
    request({
      sender: "a@b.example",
      recipients: ["c@d.example"],
    }),
  ],
  ["mailx: -i -t", ["-i", "-t"], request({ extractRecipients: true })],
  [
    "git send-email: -i rcpt",
    ["-i", "rcpt@x.example"],
    request({ recipients: ["rcpt@x.example"] }),
  ],
  [
    "Emacs: -oi -f a@b -oep -odi -t",
    ["-oi", "-f", "a@b.example", "-oep", "-odi", "-t"],
    request({
      sender: "a@b.example",
      extractRecipients: true,
    }),
  ],
  ["PHP mail(): -t -i", ["-t", "-i"], request({ extractRecipients: true })],
  [
    "-f '' (null sender)",
    ["-f", "", "c@d.example"],
    request({ sender: "", recipients: ["c@d.example"] }),
  ],
  [
    "-f '<>' (null sender)",
    ["-f", "<>", "c@d.example"],
    request({ sender: "", recipients: ["c@d.example"] }),
  ],
  [
    "-f<> attached (null sender)",
    ["-f<>", "c@d.example"],
    request({ sender: "", recipients: ["c@d.example"] }),
  ],
  [
    "-fa@b attached",
    ["-fa@b.example", "c@d.example"],
    request({
      sender: "a@b.example",
      recipients: ["c@d.example"],
    }),
  ],
  [
    "-r a@b (obsolete -f)",
    ["-r", "a@b.example", "c@d.example"],
    request({
      sender: "a@b.example",
      recipients: ["c@d.example"],
    }),
  ],
  [
    "-ra@b attached",
    ["-ra@b.example", "c@d.example"],
    request({
      sender: "a@b.example",
      recipients: ["c@d.example"],
    }),
  ],
  ["-N never", ["-N", "never", "c@d.example"], request({ recipients: ["c@d.example"] })],
  [
    "-Nsuccess,failure attached",
    ["-Nsuccess,failure", "c@d.example"],
    request({ recipients: ["c@d.example"] }),
  ],
  [
    "-N in upper case",
    ["-N", "SUCCESS,DELAY", "c@d.example"],
    request({ recipients: ["c@d.example"] }),
  ],
  ["-R hdrs", ["-R", "hdrs", "c@d.example"], request({ recipients: ["c@d.example"] })],
  ["-Rfull attached", ["-Rfull", "c@d.example"], request({ recipients: ["c@d.example"] })],
  [
    "-F with a full name",
    ["-F", "Cron Daemon", "c@d.example"],
    request({ recipients: ["c@d.example"] }),
  ],
  [
    "-v, -V and -bm are ignored",
    ["-v", "-V", "-bm", "c@d.example"],
    request({ recipients: ["c@d.example"] }),
  ],
  ["o'brien@x.example", ["o'brien@x.example"], request({ recipients: ["o'brien@x.example"] })],
  [
    '"john doe"@x.example',
    ['"john doe"@x.example'],
    request({ recipients: ['"john doe"@x.example'] }),
  ],
  ["bare root", ["root"], request({ recipients: ["root"] })],
  [
    "UTF-8 addresses",
    ["-f", "jörg@bücher.example", "用户@例子.广告"],
    request({
      sender: "jörg@bücher.example",
      recipients: ["用户@例子.广告"],
    }),
  ],
  [
    "integrity words --size=123 --sha256=<64 hex>",
    [`--size=123`, `--sha256=${SHA}`, "c@d.example"],
    request({
      recipients: ["c@d.example"],
      size: 123,
      sha256: SHA,
    }),
  ],
  [
    "--size=0 (an empty message)",
    ["--size=0", "-t"],
    request({ extractRecipients: true, size: 0 }),
  ],
  [
    "several recipients, options after them",
    ["a@x.example", "b@x.example", "-i"],
    request({
      recipients: ["a@x.example", "b@x.example"],
    }),
  ],
  [
    "-t with recipients too",
    ["-t", "a@x.example"],
    request({ extractRecipients: true, recipients: ["a@x.example"] }),
  ],
];

Deno.test("parseSendmailArgs() accepts what real programs pass to sendmail", async (t) => {
  for (const [name, words, expected] of ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(parseSendmailArgs(["sendmail", ...words]), expected);
    });
  }
});

Deno.test("parseSendmailArgs() accepts sendmail and rsendmail as a name or a path", async (t) => {
  for (
    const program of [
      "sendmail",
      "rsendmail",
      "/usr/sbin/sendmail",
      "/usr/bin/rsendmail",
      "./sendmail",
    ]
  ) {
    await t.step(program, () => {
      deepStrictEqual(parseSendmailArgs([program, "root"]), request({ recipients: ["root"] }));
    });
  }
});

const USAGE = { error: UsageError, exitCode: EX_USAGE, status: "5.5.4" } as const;
const NOT_SENDMAIL = { error: UsageError, exitCode: EX_USAGE, status: "5.5.1" } as const;
const BAD_SENDER = { error: DataError, exitCode: EX_DATAERR, status: "5.1.7" } as const;
const BAD_RCPT = { error: DataError, exitCode: EX_DATAERR, status: "5.1.3" } as const;

interface Refusal {
  /** The attack (or mistake) this row pins. */
  name: string;
  /** The full request words, program first. */
  words: string[];
  /** The expected error. */
  expect: { error: MailErrorClass; exitCode: number; status: string };
  /** Positive control: the nearest request that must pass. */
  control: string[];
}

const OK = ["sendmail", "-i", "c@d.example"];

const REFUSE: Refusal[] = [
  // Queue, daemon and database modes.
  {
    name: "-bp lists the queue",
    words: ["sendmail", "-bp"],
    expect: USAGE,
    control: ["sendmail", "-bm", "root"],
  },
  {
    name: "-bi rebuilds the aliases",
    words: ["sendmail", "-bi"],
    expect: USAGE,
    control: ["sendmail", "-bm", "root"],
  },
  {
    name: "-bd starts a daemon",
    words: ["sendmail", "-bd"],
    expect: USAGE,
    control: ["sendmail", "-bm", "root"],
  },
  {
    name: "-bl starts a daemon",
    words: ["sendmail", "-bl"],
    expect: USAGE,
    control: ["sendmail", "-bm", "root"],
  },
  {
    name: "-bs speaks SMTP on stdin",
    words: ["sendmail", "-bs"],
    expect: USAGE,
    control: ["sendmail", "-bm", "root"],
  },
  {
    name: "-bs -i (Laravel)",
    words: ["sendmail", "-bs", "-i"],
    expect: USAGE,
    control: ["sendmail", "-i", "-t"],
  },
  {
    name: "-bv verifies addresses",
    words: ["sendmail", "-bv", "root"],
    expect: USAGE,
    control: ["sendmail", "-bm", "root"],
  },
  { name: "-q flushes the queue", words: ["sendmail", "-q"], expect: USAGE, control: OK },
  { name: "-q1h runs a queue daemon", words: ["sendmail", "-q1h"], expect: USAGE, control: OK },
  {
    name: "-qf runs the queue in the foreground",
    words: ["sendmail", "-qf"],
    expect: USAGE,
    control: OK,
  },
  // Other configuration, files and options.
  {
    name: "-C dir reads another configuration",
    words: ["sendmail", "-C", "/tmp", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-Cdir reads another configuration",
    words: ["sendmail", "-C/tmp", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-X logfile writes a traffic log",
    words: ["sendmail", "-X", "/tmp/log", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-O opt sets an option",
    words: ["sendmail", "-O", "QueueDirectory=/tmp", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-oQ/tmp moves the queue",
    words: ["sendmail", "-oQ/tmp", "root"],
    expect: USAGE,
    control: ["sendmail", "-oi", "root"],
  },
  {
    name: "-oA/x names another alias file",
    words: ["sendmail", "-oA/x", "root"],
    expect: USAGE,
    control: ["sendmail", "-oi", "root"],
  },
  {
    name: "-h 1 sets the hop count",
    words: ["sendmail", "-h", "1", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-d0.1 turns on debugging",
    words: ["sendmail", "-d0.1", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-G relays a gateway submission",
    words: ["sendmail", "-G", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-L tag changes the syslog tag",
    words: ["sendmail", "-L", "tag", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-Am uses the MTA configuration",
    words: ["sendmail", "-Am", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-Ac uses the MSP configuration",
    words: ["sendmail", "-Ac", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  // Peer long options: only the integrity words exist, matched exactly.
  {
    name: "--loglevel=debug (upstream let the peer set it)",
    words: ["sendmail", "--loglevel=debug", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "--sendmail=/bin/sh (an admin option from the peer)",
    words: ["sendmail", "--sendmail=/bin/sh", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "--allow-sender=x (an admin option from the peer)",
    words: ["sendmail", "--allow-sender=x", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "--help (no help text for the peer)",
    words: ["sendmail", "--help"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-h (no help text for the peer)",
    words: ["sendmail", "-h"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "--size without a value",
    words: ["sendmail", "--size", "123", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=123", "root"],
  },
  {
    name: "--sizes=1 is not --size",
    words: ["sendmail", "--sizes=1", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=1", "root"],
  },
  {
    name: "--siz=1 is not --size (no abbreviations)",
    words: ["sendmail", "--siz=1", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=1", "root"],
  },
  {
    name: "--size=01 (leading zero)",
    words: ["sendmail", "--size=01", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=1", "root"],
  },
  {
    name: "--size=-1",
    words: ["sendmail", "--size=-1", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=1", "root"],
  },
  {
    name: "--size=1e3",
    words: ["sendmail", "--size=1e3", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=1000", "root"],
  },
  {
    name: "--size= empty",
    words: ["sendmail", "--size=", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=0", "root"],
  },
  {
    name: "--size given twice",
    words: ["sendmail", "--size=1", "--size=2", "root"],
    expect: USAGE,
    control: ["sendmail", "--size=1", "root"],
  },
  {
    name: "--sha256= upper case",
    words: ["sendmail", `--sha256=${SHA.toUpperCase()}`, "root"],
    expect: USAGE,
    control: ["sendmail", `--sha256=${SHA}`, "root"],
  },
  {
    name: "--sha256= short (63 hex)",
    words: ["sendmail", `--sha256=${SHA.slice(1)}`, "root"],
    expect: USAGE,
    control: ["sendmail", `--sha256=${SHA}`, "root"],
  },
  {
    name: "--sha256= long (65 hex)",
    words: ["sendmail", `--sha256=${SHA}0`, "root"],
    expect: USAGE,
    control: ["sendmail", `--sha256=${SHA}`, "root"],
  },
  {
    name: "--sha256= empty",
    words: ["sendmail", "--sha256=", "root"],
    expect: USAGE,
    control: ["sendmail", `--sha256=${SHA}`, "root"],
  },
  {
    name: "--sha256 given twice",
    words: ["sendmail", `--sha256=${SHA}`, `--sha256=${SHA}`, "root"],
    expect: USAGE,
    control: ["sendmail", `--sha256=${SHA}`, "root"],
  },
  // The id names a file in the relay's record directory (STATE_DIR/rsendmail-UID/LABEL/ID).
  {
    name: "--id=../../../etc/cron.d/x: a path out of the id record (directory traversal)",
    words: ["sendmail", "--id=../../../etc/cron.d/x", "root"],
    expect: USAGE,
    control: ["sendmail", "--id=m0123456789abcdef", "root"],
  },
  {
    name: "--id=a/b1234567: a slash inside the id",
    words: ["sendmail", "--id=a/b1234567", "root"],
    expect: USAGE,
    control: ["sendmail", "--id=a_b1234567", "root"],
  },
  {
    name: "--id=.pruned12: a dot file (the record's own prune marker is .pruned)",
    words: ["sendmail", "--id=.pruned12", "root"],
    expect: USAGE,
    control: ["sendmail", "--id=pruned12", "root"],
  },
  {
    name: "--id= seven characters (too short)",
    words: ["sendmail", "--id=abcdefg", "root"],
    expect: USAGE,
    control: ["sendmail", "--id=abcdefgh", "root"],
  },
  {
    name: "--id= 65 characters (too long)",
    words: ["sendmail", `--id=${"a".repeat(65)}`, "root"],
    expect: USAGE,
    control: ["sendmail", `--id=${"a".repeat(64)}`, "root"],
  },
  {
    name: "--id given twice",
    words: ["sendmail", "--id=m0123456789abcdef", "--id=m0123456789abcdef", "root"],
    expect: USAGE,
    control: ["sendmail", "--id=m0123456789abcdef", "root"],
  },
  {
    name: "--sender is not -f",
    words: ["sendmail", "--sender=a@b.example", "root"],
    expect: USAGE,
    control: ["sendmail", "-f", "a@b.example", "root"],
  },
  // Clustering and number coercion.
  {
    name: "-ti is not -t -i (no clustering)",
    words: ["sendmail", "-ti"],
    expect: USAGE,
    control: ["sendmail", "-t", "-i"],
  },
  {
    name: "-it is not -i -t (no clustering)",
    words: ["sendmail", "-it"],
    expect: USAGE,
    control: ["sendmail", "-i", "-t"],
  },
  {
    name: "-oit is not -oi -t",
    words: ["sendmail", "-oit"],
    expect: USAGE,
    control: ["sendmail", "-oi", "-t"],
  },
  {
    name: "-123 is not three flags",
    words: ["sendmail", "-123", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "a lone dash",
    words: ["sendmail", "-", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-__proto__ (no prototype lookup)",
    words: ["sendmail", "-__proto__", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  {
    name: "-constructor (no prototype lookup)",
    words: ["sendmail", "-constructor", "root"],
    expect: USAGE,
    control: ["sendmail", "root"],
  },
  // Values.
  {
    name: "-f without its value",
    words: ["sendmail", "-f"],
    expect: USAGE,
    control: ["sendmail", "-f", "a@b.example", "-t"],
  },
  {
    name: "-N with a bad value",
    words: ["sendmail", "-N", "sometimes", "root"],
    expect: USAGE,
    control: ["sendmail", "-N", "never", "root"],
  },
  {
    name: "-N never mixed with success",
    words: ["sendmail", "-Nnever,success", "root"],
    expect: USAGE,
    control: ["sendmail", "-Nsuccess", "root"],
  },
  {
    name: "-N swallowing an option",
    words: ["sendmail", "-N", "-X/tmp/log", "root"],
    expect: USAGE,
    control: ["sendmail", "-N", "delay", "root"],
  },
  {
    name: "-R with a bad value",
    words: ["sendmail", "-R", "headers", "root"],
    expect: USAGE,
    control: ["sendmail", "-R", "hdrs", "root"],
  },
  {
    name: "-F carrying an option",
    words: ["sendmail", "-F", "-X/tmp/log", "root"],
    expect: USAGE,
    control: ["sendmail", "-F", "X", "root"],
  },
  {
    name: "-F-X attached",
    words: ["sendmail", "-F-X/tmp/log", "root"],
    expect: USAGE,
    control: ["sendmail", "-FX", "root"],
  },
  {
    name: "-F holding a newline",
    words: ["sendmail", "-F", "Cron\nBcc: x@evil.example", "root"],
    expect: USAGE,
    control: ["sendmail", "-F", "Cron", "root"],
  },
  {
    name: "-F over 256 characters",
    words: ["sendmail", "-F", "a".repeat(257), "root"],
    expect: USAGE,
    control: ["sendmail", "-F", "a".repeat(256), "root"],
  },
  // PHPMailer CVE-2016-10033 / CVE-2016-10045 shapes.
  {
    name: "-f 'a@b -X/tmp/log' (CVE-2016-10033 shape)",
    words: ["sendmail", "-f", "a@b.example -X/tmp/log", "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-f", "a@b.example", "root"],
  },
  {
    name: "-f -X/tmp/log (value is an option)",
    words: ["sendmail", "-f", "-X/tmp/log", "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-f", "a@b.example", "root"],
  },
  {
    name: "-f-oQ/tmp (attached value is an option)",
    words: ["sendmail", "-f-oQ/tmp", "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-fa@b.example", "root"],
  },
  {
    name: "-f -t (value is a flag)",
    words: ["sendmail", "-f", "-t"],
    expect: BAD_SENDER,
    control: ["sendmail", "-f", "a@b.example", "-t"],
  },
  {
    name: "-f '\"a@b\" -X/tmp/log' (CVE-2016-10045 shape)",
    words: ["sendmail", "-f", '"a@b" -X/tmp/log', "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-f", '"a b"@b.example', "root"],
  },
  {
    name: "-f holding a newline",
    words: ["sendmail", "-f", "a@b.example\n-X/tmp/log", "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-f", "a@b.example", "root"],
  },
  {
    name: "-r -X/tmp/log",
    words: ["sendmail", "-r", "-X/tmp/log", "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-r", "a@b.example", "root"],
  },
  {
    name: "-f with a shell substitution",
    words: ["sendmail", "-f", "a$(touch${IFS}/tmp/x)@example.net", "root"],
    expect: BAD_SENDER,
    control: ["sendmail", "-f", "a@example.net", "root"],
  },
  {
    name: "sender given twice (-f -f)",
    words: ["sendmail", "-f", "a@b.example", "-f", "c@d.example", "root"],
    expect: USAGE,
    control: ["sendmail", "-f", "a@b.example", "root"],
  },
  {
    name: "sender given twice (-f then -r)",
    words: ["sendmail", "-fa@b.example", "-r", "c@d.example", "root"],
    expect: USAGE,
    control: ["sendmail", "-r", "c@d.example", "root"],
  },
  {
    name: "null sender given twice",
    words: ["sendmail", "-f", "", "-f<>", "root"],
    expect: USAGE,
    control: ["sendmail", "-f", "", "root"],
  },
  // Recipients.
  {
    name: "a recipient starting with - after --",
    words: ["sendmail", "--", "-X/tmp/log"],
    expect: BAD_RCPT,
    control: ["sendmail", "--", "x@tmp.example"],
  },
  {
    name: "-oQ/tmp after --",
    words: ["sendmail", "-i", "--", "root", "-oQ/tmp"],
    expect: BAD_RCPT,
    control: ["sendmail", "-i", "--", "root", "oQ@tmp.example"],
  },
  {
    name: "a second -- is a recipient, not an option end",
    words: ["sendmail", "--", "--", "root"],
    expect: BAD_RCPT,
    control: ["sendmail", "--", "root"],
  },
  {
    name: "a recipient holding a newline",
    words: ["sendmail", "root\nBcc: x@evil.example"],
    expect: BAD_RCPT,
    control: ["sendmail", "root"],
  },
  {
    name: "a recipient holding CR",
    words: ["sendmail", "root\r"],
    expect: BAD_RCPT,
    control: ["sendmail", "root"],
  },
  {
    name: "a recipient holding U+2028",
    words: ["sendmail", "a\u2028b@x.example"],
    expect: BAD_RCPT,
    control: ["sendmail", "ab@x.example"],
  },
  {
    name: "a recipient holding a space",
    words: ["sendmail", "a@b.example -X/tmp/log"],
    expect: BAD_RCPT,
    control: ["sendmail", "a@b.example"],
  },
  {
    name: "an empty recipient",
    words: ["sendmail", ""],
    expect: BAD_RCPT,
    control: ["sendmail", "root"],
  },
  {
    name: "a recipient in angle brackets",
    words: ["sendmail", "<root>"],
    expect: BAD_RCPT,
    control: ["sendmail", "root"],
  },
  {
    name: "no recipient and no -t",
    words: ["sendmail", "-i"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "-i", "-t"],
  },
  {
    name: "only a program name",
    words: ["sendmail"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  // Program names.
  { name: "an empty request", words: [], expect: USAGE, control: ["sendmail", "root"] },
  {
    name: "program sh",
    words: ["sh", "-c", "id"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program /bin/sh",
    words: ["/bin/sh", "root"],
    expect: NOT_SENDMAIL,
    control: ["/usr/sbin/sendmail", "root"],
  },
  {
    name: "program sendmail;id",
    words: ["sendmail;id", "root"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program rsendmailx",
    words: ["rsendmailx", "root"],
    expect: NOT_SENDMAIL,
    control: ["rsendmail", "root"],
  },
  {
    name: "program xsendmail",
    words: ["xsendmail", "root"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program sendmail.postfix",
    words: ["/usr/sbin/sendmail.postfix", "root"],
    expect: NOT_SENDMAIL,
    control: ["/usr/sbin/sendmail", "root"],
  },
  {
    name: "program SENDMAIL (no case folding)",
    words: ["SENDMAIL", "root"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program sendmail/ (a directory)",
    words: ["sendmail/", "root"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program with a newline",
    words: ["sendmail\n", "root"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program /usr/lib/openssh/sftp-server (sftp subsystem)",
    words: ["/usr/lib/openssh/sftp-server"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "root"],
  },
  {
    name: "program scp",
    words: ["scp", "-t", "/tmp"],
    expect: NOT_SENDMAIL,
    control: ["sendmail", "-t"],
  },
  // Program, file and include recipients (a local delivery agent would run or write them).
  {
    name: "program recipient |/usr/bin/id",
    words: ["sendmail", "--", "|/usr/bin/id"],
    expect: BAD_RCPT,
    control: ["sendmail", "--", "ops|alerts@example.net"],
  },
  {
    name: 'program recipient quoted "|/usr/bin/id"@relay',
    words: ["sendmail", "--", '"|/usr/bin/id"@relay.example'],
    expect: BAD_RCPT,
    control: ["sendmail", "--", '"john doe"@relay.example'],
  },
  {
    name: "file recipient /etc/passwd",
    words: ["sendmail", "--", "/etc/passwd"],
    expect: BAD_RCPT,
    control: ["sendmail", "--", "etc/passwd@example.net"],
  },
  {
    name: 'file recipient quoted "/tmp/x"@relay',
    words: ["sendmail", "--", '"/tmp/x"@relay.example'],
    expect: BAD_RCPT,
    control: ["sendmail", "--", '"tmp x"@relay.example'],
  },
  {
    name: 'include recipient ":include:/x"@y',
    words: ["sendmail", "--", '":include:/x"@y.example'],
    expect: BAD_RCPT,
    control: ["sendmail", "--", '"include x"@y.example'],
  },
  {
    name: "include recipient :INCLUDE: in another case, unquoted",
    words: ["sendmail", "--", ":INCLUDE:/x"],
    expect: BAD_RCPT,
    control: ["sendmail", "--", "include@y.example"],
  },
];

Deno.test("parseSendmailArgs() refuses every attack, beside a positive control", async (t) => {
  for (const { name, words, expect, control } of REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => parseSendmailArgs(words), expect.error, expect);
      parseSendmailArgs(control);
    });
  }
});

Deno.test("parseSendmailArgs() never echoes a raw peer word in its message", () => {
  const err = assertRefused(
    () => parseSendmailArgs(["sendmail", `-X\n5.0.0 forged ${"x".repeat(100)}`]),
    UsageError,
    { exitCode: EX_USAGE, status: "5.5.4" },
  );
  ok(!/[\r\n]/.test(err.message));
  ok(err.message.length < 60, err.message);
  strictEqual(err.publicLine("rsendmail"), `5.5.4 rsendmail: ${err.message}`);
});

Deno.test("describeWord() keeps printable ASCII and at most 24 characters", () => {
  strictEqual(describeWord("-bp"), "-bp");
  strictEqual(describeWord("-X\n\u2028é"), "-X???");
  strictEqual(describeWord("-".repeat(30)), `${"-".repeat(24)}…`);
});

/** [name, words, argv] */
const ARGV: [string, string[], string[]][] = [
  ["a recipient only", ["sendmail", "root"], [PATH, "-oi", "--", "root"]],
  [
    "cron's words collapse to -oi",
    ["sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
    [
      PATH,
      "-oi",
      "--",
      "root",
    ],
  ],
  ["mutt", ["sendmail", "-oem", "-oi", "-f", "a@b.example", "--", "c@d.example"], [
    PATH,
    "-oi",
    "-f",
    "a@b.example",
    "--",
    "c@d.example",
  ]],
  ["Emacs: -t moves after -f", ["sendmail", "-oi", "-t", "-f", "a@b.example", "-oep", "-odi"], [
    PATH,
    "-oi",
    "-f",
    "a@b.example",
    "-t",
    "--",
  ]],
  ["-f '<>' becomes -f ''", ["sendmail", "-f", "<>", "-t"], [PATH, "-oi", "-f", "", "-t", "--"]],
  ["-r becomes -f", ["sendmail", "-ra@b.example", "c@d.example"], [
    PATH,
    "-oi",
    "-f",
    "a@b.example",
    "--",
    "c@d.example",
  ]],
  ["a quoted local part stays one word after -f", [
    "sendmail",
    "-f",
    '"a -X/tmp/log"@b.example',
    "root",
  ], [
    PATH,
    "-oi",
    "-f",
    '"a -X/tmp/log"@b.example',
    "--",
    "root",
  ]],
  ["-N, -R, -F, -v and integrity words are dropped", [
    "sendmail",
    "-N",
    "never",
    "-Rhdrs",
    "-F",
    "Me",
    "-v",
    "--size=5",
    `--sha256=${SHA}`,
    "a@x.example",
    "b@x.example",
  ], [PATH, "-oi", "--", "a@x.example", "b@x.example"]],
];

Deno.test("toSendmailArgv() emits the canonical form: path -oi [-f X] [-t] -- rcpts", async (t) => {
  for (const [name, words, argv] of ARGV) {
    await t.step(name, () => {
      deepStrictEqual(toSendmailArgv(PATH, parseSendmailArgs(words)), argv);
    });
  }
});

/** True when `argv` is `[path, "-oi", ("-f", X)?, "-t"?, "--", ...rcpts]`. */
function assertCanonical(argv: readonly string[], req: SendmailRequest): void {
  strictEqual(argv[0], PATH);
  strictEqual(argv[1], "-oi");
  let i = 2;
  if (argv[i] === "-f") {
    const sender = argv[i + 1];
    ok(sender === "" || (sender !== undefined && isEnvelopeAddress(sender)), `sender ${sender}`);
    strictEqual(sender, req.sender);
    i += 2;
  } else {
    strictEqual(req.sender, undefined);
  }
  if (argv[i] === "-t") {
    ok(req.extractRecipients);
    i++;
  } else {
    ok(!req.extractRecipients);
  }
  strictEqual(argv[i], "--");
  const rcpts = argv.slice(i + 1);
  deepStrictEqual(rcpts, req.recipients);
  for (const rcpt of rcpts) {
    ok(isEnvelopeAddress(rcpt), `recipient ${JSON.stringify(rcpt)}`);
    ok(!rcpt.startsWith("-"));
  }
}

/** Words a grammar-aware attacker would try. */
const GRAMMAR_WORD = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "-t",
      "-i",
      "-oi",
      "-v",
      "-V",
      "-bm",
      "-oem",
      "-oep",
      "-odi",
      "-B8BITMIME",
      "-f",
      "-r",
      "-N",
      "-R",
      "-F",
      "--",
      "never",
      "success,failure",
      "hdrs",
      "full",
      "",
      "<>",
      "--size=12",
      `--sha256=${SHA}`,
      "-fa@b.example",
      "-f<>",
      "-Nnever",
      "-Rhdrs",
      "-FCron",
    ),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "a@b.example",
      "root",
      "o'brien@x.example",
      '"john doe"@x.example',
      "jörg@bücher.example",
      "a@[192.0.2.1]",
      '"a -X/tmp/log"@x.example',
    ),
  },
  { weight: 2, arbitrary: fc.emailAddress() },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "-bp",
      "-bs",
      "-q",
      "-C",
      "-X",
      "-O",
      "-oQ/tmp",
      "-h",
      "-d0.1",
      "-ti",
      "-123",
      "-",
      "--size",
      "--help",
      "-X/tmp/log",
      "-f-X",
      "-r-oQ/tmp",
      "-F-x",
      "-__proto__",
      "--loglevel=debug",
    ),
  },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.constantFrom("-", "f", "o", "t", "i", "@", "a", ".", " ", "\n", "<", ">", '"', "="),
      maxLength: 8,
    }),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 10 }) },
);
const PROGRAM = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("sendmail", "rsendmail", "/usr/sbin/sendmail") },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);
const REQUEST = fc.tuple(PROGRAM, fc.array(GRAMMAR_WORD, { maxLength: 10 })).map((
  [program, words],
) => [program, ...words]);

/** Throws unless `err` is one of the grammar's own refusals. */
function assertGrammarRefusal(err: unknown): void {
  ok(
    err instanceof UsageError || err instanceof DataError,
    `unexpected ${err instanceof Error ? err.stack : String(err)}`,
  );
  ok(err.exitCode === EX_USAGE || err.exitCode === EX_DATAERR);
}

Deno.test("toSendmailArgv() stays canonical for every request parseSendmailArgs() accepts (property)", () => {
  let accepted = 0;
  fc.assert(
    fc.property(REQUEST, (words) => {
      let req: SendmailRequest;
      try {
        req = parseSendmailArgs(words);
      } catch (err) {
        assertGrammarRefusal(err);
        return;
      }
      accepted++;
      assertCanonical(toSendmailArgv(PATH, req), req);
    }),
    { seed: 0x5e4d3a11, numRuns: 5000 },
  );
  // The generator must reach the accepting side often, or the property is vacuous.
  ok(accepted > 300, `only ${accepted} requests accepted`);
});

Deno.test("parseSendmailArgs() throws only UsageError or DataError, on random strings too (property)", () => {
  const anything = fc.oneof(
    REQUEST,
    fc.array(fc.string(), { maxLength: 8 }),
    fc.array(fc.string({ unit: "binary" }), { maxLength: 8 }),
  );
  fc.assert(
    fc.property(anything, (words) => {
      try {
        parseSendmailArgs(words);
      } catch (err) {
        assertGrammarRefusal(err);
      }
    }),
    { seed: 0x0bad5eed, numRuns: 5000 },
  );
});
