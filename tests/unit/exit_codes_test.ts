import { ok, strictEqual } from "node:assert/strict";
import {
  EX_CONFIG,
  EX_DATAERR,
  EX_NOPERM,
  EX_OK,
  EX_OSERR,
  EX_SOFTWARE,
  EX_TEMPFAIL,
  EX_USAGE,
  fromSendmailStatus,
  isSysexit,
  isTemporary,
} from "../../lib/shared/exit_codes.ts";

Deno.test("exit codes carry their sysexits.h values", () => {
  strictEqual(EX_OK, 0);
  strictEqual(EX_USAGE, 64);
  strictEqual(EX_DATAERR, 65);
  strictEqual(EX_SOFTWARE, 70);
  strictEqual(EX_OSERR, 71);
  strictEqual(EX_TEMPFAIL, 75);
  strictEqual(EX_NOPERM, 77);
  strictEqual(EX_CONFIG, 78);
});

Deno.test("isTemporary() is true only for 71 and 75, as in Postfix pipe(8)", async (t) => {
  for (let code = 0; code < 256; code++) {
    if (code === 71 || code === 75) {
      await t.step(`${code} is temporary`, () => ok(isTemporary(code)));
    }
  }
  await t.step("everything else bounces", () => {
    for (let code = 0; code < 256; code++) {
      if (code !== 71 && code !== 75) ok(!isTemporary(code), String(code));
    }
  });
});

Deno.test("isSysexit() accepts 0 and 64–78 only", () => {
  for (let code = -1; code < 257; code++) {
    strictEqual(isSysexit(code), code === 0 || (code >= 64 && code <= 78), String(code));
  }
});

/** [sendmail status, relay exit] */
const FROM_SENDMAIL: [number, number][] = [
  [0, 0],
  [64, 64],
  [67, 67],
  [75, 75],
  [78, 78],
  [1, 75],
  [2, 75],
  [63, 75],
  [79, 75],
  [127, 75],
  [255, 75],
];

Deno.test("fromSendmailStatus() passes sysexits through and defers anything else", async (t) => {
  for (const [status, exit] of FROM_SENDMAIL) {
    await t.step(`${status} → ${exit}`, () => strictEqual(fromSendmailStatus(status), exit));
  }
});
