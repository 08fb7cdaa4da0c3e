import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  type ClientSettings,
  ConfigError,
  defaultSettings,
} from "../../lib/client/client_config.ts";
import { EX_TEMPFAIL } from "../../lib/shared/exit_codes.ts";
import { parseNullmailerOptions } from "../../lib/client/nullmailer.ts";
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
