import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  type ClientSettings,
  ConfigError,
  defaultSettings,
} from "../../lib/client/client_config.ts";
import { EX_DATAERR, EX_TEMPFAIL } from "../../lib/shared/exit_codes.ts";
import { DataError } from "../../lib/shared/errors.ts";
import {
  MAX_ENVELOPE,
  parseEnvelope,
  parseNullmailerOptions,
} from "../../lib/client/nullmailer.ts";
import { assertRefused } from "./_assert.ts";

const REFUSED = { exitCode: EX_TEMPFAIL, status: "4.3.5" };

/** [name, options block, expected settings fields] */
const ACCEPT: [string, string, Partial<ClientSettings>][] = [
  ["a host: direct by default", "host=relay.example\n\n", {
    hosts: ["relay.example"],
    queue: false,
  }],
  ["the bare service flag: no host needed", "service\n\n", { queue: true }],
  ["service with a host (the remotes line's host is kept)", "host=localhost\nservice\n\n", {
    hosts: ["localhost"],
    queue: true,
  }],
  ["service before the host", "service\nhost=localhost\n\n", {
    hosts: ["localhost"],
    queue: true,
  }],
  ["CRLF lines", "service\r\n\r\n", { queue: true }],
  ["no final empty line", "host=relay.example\n", { hosts: ["relay.example"], queue: false }],
  ["options after the empty line are not read", "service\n\nhost=-oProxyCommand=x\n", {
    queue: true,
  }],
  ["queue=yes as a setting also means the service", "queue=yes\n\n", { queue: true }],
  ["service with a spool", "service\nspool=/srv/sshsendmail/\n\n", {
    queue: true,
    spool: "/srv/sshsendmail",
  }],
  ["the direct flags beside a host", "host=relay.example\nreuse\nno-integrity\nport=2222\n\n", {
    hosts: ["relay.example"],
    queue: false,
    reuse: true,
    integrity: false,
    port: 2222,
  }],
];

/** [attack, options block] */
const REFUSE: [string, string][] = [
  ["the empty block (direct needs a host)", "\n"],
  ["no options at all", ""],
  ["reuse without a host", "reuse\n\n"],
  ["queue=no without a host", "queue=no\n\n"],
  ["the host after the empty line", "\nhost=relay.example\n"],
  ["the option spelt --service (nullmailer strips the dashes)", "--service\n\n"],
  ["an upper-case SERVICE", "SERVICE\n\n"],
  ["service=yes (a flag, not a setting)", "service=yes\n\n"],
  ["a service line with trailing space", "service \n\n"],
  ["an unknown flag beside service", "service\nqueued\n\n"],
  ["a host that ssh would read as an option", "host=-oProxyCommand=x\n\n"],
];

Deno.test("parseNullmailerOptions() sends directly unless the block says service", async (t) => {
  for (const [name, block, fields] of ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(parseNullmailerOptions(block), {
        ...defaultSettings(),
        queue: false,
        ...fields,
      });
    });
  }
});

Deno.test("parseNullmailerOptions() refuses a direct block without a host and unknown flags", async (t) => {
  for (const [name, block] of REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => parseNullmailerOptions(block), ConfigError, REFUSED);
    });
  }
});

Deno.test("parseNullmailerOptions() names the missing host", () => {
  const err = assertRefused(() => parseNullmailerOptions("\n"), ConfigError, REFUSED);
  strictEqual(err.message, "nullmailer gave no host");
});

const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("parseEnvelope() reads nullmailer's envelope on fd 3: sender, recipients, empty line", async (t) => {
  await t.step("a sender and two recipients, then the message", () => {
    const head = bytes("a@b.example\nc@d.example\ne@f.example\n\nSubject: x\n");
    deepStrictEqual(parseEnvelope(head), {
      sender: "a@b.example",
      recipients: ["c@d.example", "e@f.example"],
      bodyStart: 37,
    });
  });
  await t.step("<> is the null sender (a bounce)", () => {
    strictEqual(parseEnvelope(bytes("<>\nc@d.example\n\n"))?.sender, "");
  });
  await t.step("CRLF line ends are read as LF", () => {
    deepStrictEqual(parseEnvelope(bytes("a@b.example\r\nc@d.example\r\n\r\n"))?.recipients, [
      "c@d.example",
    ]);
  });
  await t.step("no empty line yet: more bytes needed", () => {
    strictEqual(parseEnvelope(bytes("a@b.example\nc@d.example\n")), undefined);
  });
});

Deno.test("parseEnvelope() refuses an envelope that never ends (memory) or is not UTF-8, beside controls", async (t) => {
  await t.step("refuses an envelope past MAX_ENVELOPE without its empty line (65, 5.5.2)", () => {
    const head = bytes(`a@b.example\n${"c".repeat(MAX_ENVELOPE)}`);
    assertRefused(() => parseEnvelope(head), DataError, { exitCode: EX_DATAERR, status: "5.5.2" });
  });
  await t.step("control: a long recipient line that ends in time", () => {
    const head = bytes(`a@b.example\n${"c".repeat(1000)}@d.example\n\n`);
    strictEqual(parseEnvelope(head)?.recipients.length, 1);
  });
  await t.step("refuses a recipient line that is not UTF-8 (65, 5.6.7)", () => {
    const head = new Uint8Array([...bytes("a@b.example\n"), 0xff, 0xfe, 0x0a, 0x0a]);
    assertRefused(() => parseEnvelope(head), DataError, { exitCode: EX_DATAERR, status: "5.6.7" });
  });
  await t.step("control: a UTF-8 recipient (SMTPUTF8) is read", () => {
    strictEqual(parseEnvelope(bytes("a@b.example\nü@d.example\n\n"))?.recipients[0], "ü@d.example");
  });
});
