import { ok, strictEqual } from "node:assert/strict";
import {
  DataError,
  MailError,
  PolicyError,
  TempError,
  toMailError,
  UsageError,
} from "../../lib/shared/errors.ts";
import { EX_DATAERR, EX_NOPERM, EX_TEMPFAIL, EX_USAGE } from "../../lib/shared/exit_codes.ts";

/** [class name, error, exit code, default status] */
const CLASSES: [string, MailError, number, string][] = [
  ["UsageError", new UsageError("option -bp is not allowed"), EX_USAGE, "5.5.4"],
  ["DataError", new DataError("bad data"), EX_DATAERR, "5.6.0"],
  ["PolicyError", new PolicyError("not allowed"), EX_NOPERM, "5.7.1"],
  ["TempError", new TempError("timed out"), EX_TEMPFAIL, "4.3.0"],
];

Deno.test("MailError subclasses carry their sysexits code and enhanced status", async (t) => {
  for (const [name, err, exitCode, status] of CLASSES) {
    await t.step(name, () => {
      ok(err instanceof MailError);
      strictEqual(err.name, name);
      strictEqual(err.exitCode, exitCode);
      strictEqual(err.status, status);
      strictEqual(err.detail, "");
    });
  }
});

Deno.test("MailError.publicLine() starts with the enhanced status code", () => {
  strictEqual(
    new UsageError("option -bp is not allowed").publicLine("rsendmail"),
    "5.5.4 rsendmail: option -bp is not allowed",
  );
  strictEqual(
    new DataError("invalid sender address", "5.1.7", "peer sent x").publicLine("r"),
    "5.1.7 r: invalid sender address",
  );
});

Deno.test("toMailError() keeps MailErrors and turns anything else into a deferral", () => {
  const usage = new UsageError("x");
  strictEqual(toMailError(usage), usage);
  const bug = toMailError(new TypeError("x is undefined"));
  strictEqual(bug.exitCode, EX_TEMPFAIL);
  strictEqual(bug.status, "4.3.0");
  strictEqual(bug.message, "internal error");
  ok(bug.detail.includes("x is undefined"));
  strictEqual(toMailError("thrown string").detail, "thrown string");
});
