import { deepStrictEqual } from "node:assert/strict";
import { type Caller, type FailureFact, heardBy } from "../../lib/client/exit_policy.ts";

const usage: FailureFact = { kind: "usage", sysexit: 64, line: "5.5.4 sshsendmail: bad option" };
const data: FailureFact = { kind: "data", sysexit: 65, line: "5.1.3 rsendmail: invalid recipient" };
const config: FailureFact = { kind: "config", sysexit: 75, line: "4.3.5 sshsendmail: no host" };
const refused: FailureFact = {
  kind: "relay",
  sysexit: 77,
  nullmailer: 34,
  line: "5.7.1 rsendmail: sender",
};
const down: FailureFact = {
  kind: "temporary",
  sysexit: 75,
  nullmailer: 7,
  line: "4.4.1 sshsendmail: connection refused by the relay",
};
const relayTemp: FailureFact = {
  kind: "relay",
  sysexit: 75,
  line: "5.3.0 rsendmail: sendmail failed",
};

/** [caller, fact, code, temporary, line] */
const TABLE: [Caller, FailureFact, number, boolean, string][] = [
  ["sendmail", usage, 64, false, usage.line],
  ["sendmail", data, 65, false, data.line],
  ["sendmail", refused, 77, false, refused.line],
  ["sendmail", down, 75, true, down.line],
  ["sendmail", relayTemp, 75, true, "4.3.0 rsendmail: sendmail failed"],
  // Postfix: only a malformed address or the relay's refusal bounces; 4.x.x for every deferral.
  ["postfix", usage, 75, true, "4.3.5 sshsendmail: bad option"],
  ["postfix", data, 65, false, data.line],
  ["postfix", config, 75, true, config.line],
  ["postfix", refused, 77, false, refused.line],
  ["postfix", down, 75, true, down.line],
  ["postfix", relayTemp, 75, true, "4.3.0 rsendmail: sendmail failed"],
  // nullmailer: bit 32 is permanent; ssh's finer codes pass; never 255.
  ["nullmailer", usage, 1, true, usage.line],
  ["nullmailer", data, 34, false, data.line],
  ["nullmailer", config, 18, true, config.line],
  ["nullmailer", refused, 34, false, refused.line],
  ["nullmailer", down, 7, true, down.line],
  // SMTP: a reply after the dot.
  ["smtp", refused, 550, false, refused.line],
  ["smtp", data, 550, false, data.line],
  [
    "smtp",
    { ...relayTemp, sysexit: 69, line: "5.3.0 rsendmail: x" },
    554,
    false,
    "5.3.0 rsendmail: x",
  ],
  ["smtp", down, 451, true, down.line],
  ["smtp", relayTemp, 451, true, "4.3.0 rsendmail: sendmail failed"],
];

Deno.test("heardBy() gives each caller its code, class and line", async (t) => {
  for (const [caller, fact, code, temporary, line] of TABLE) {
    await t.step(`${caller}: ${fact.kind} ${fact.sysexit}`, () => {
      deepStrictEqual(heardBy(caller, fact), { code, temporary, line });
    });
  }
});

Deno.test("heardBy() never hands nullmailer a code with bit 32 for a temporary failure", () => {
  for (const sysexit of [64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78]) {
    for (const kind of ["usage", "data", "policy", "config", "temporary", "relay"] as const) {
      const h = heardBy("nullmailer", { kind, sysexit, line: "x" });
      deepStrictEqual(h.code === 255 || h.code === 124 || h.code === 126 || h.code === 127, false);
      deepStrictEqual(h.temporary, (h.code & 32) === 0);
    }
  }
});
