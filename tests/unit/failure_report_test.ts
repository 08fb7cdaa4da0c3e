import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { OWN_OPTION_ERROR } from "../../lib/client/client_args.ts";
import {
  type ErrorReportOptions,
  kindOf,
  reportError,
  reportFailure,
  smtpReplyOf,
} from "../../lib/client/failure_report.ts";
import {
  ConfigError,
  DataError,
  MailError,
  PolicyError,
  TempError,
  UsageError,
} from "../../lib/shared/errors.ts";

const PIPE = { isTerminal: () => false };
const TERMINAL = { isTerminal: () => true };

function options(o: Partial<ErrorReportOptions>): ErrorReportOptions {
  return { caller: "sendmail", admin: false, stdin: TERMINAL, program: "sshsendmail", ...o };
}

Deno.test("kindOf() names each error class's kind for the exit policy", async (t) => {
  const cases: [MailError, string][] = [
    [new ConfigError("no host"), "config"],
    [new UsageError("bad option"), "usage"],
    [new DataError("bad address", "5.1.3"), "data"],
    [new PolicyError("not allowed", "5.7.1"), "policy"],
    [new TempError("later", "4.3.0"), "temporary"],
  ];
  for (const [error, kind] of cases) {
    await t.step(`${error.name} → ${kind}`, () => strictEqual(kindOf(error), kind));
  }
});

Deno.test("reportError() makes a bad own option on a pipe a deferral, never a bounce", async (t) => {
  const error = new UsageError("unknown or malformed option (--hots)", "5.5.4", OWN_OPTION_ERROR);
  await t.step("Postfix pipe: 75 and a 4.x.x line", () => {
    deepStrictEqual(reportError(error, options({ caller: "postfix", stdin: PIPE })), {
      code: 75,
      line: "4.3.5 sshsendmail: unknown or malformed option (--hots)",
    });
  });
  await t.step("sendmail on a pipe: a config error (75), not a usage error (64)", () => {
    strictEqual(reportError(error, options({ stdin: PIPE })).code, 75);
  });
  await t.step("positive control: typed at a terminal it is a usage error (64)", () => {
    deepStrictEqual(reportError(error, options({ stdin: TERMINAL })), {
      code: 64,
      line: "5.5.4 sshsendmail: unknown or malformed option (--hots)",
    });
  });
  await t.step("a sendmail usage error (not ours) on a pipe stays 64", () => {
    strictEqual(
      reportError(new UsageError("-X is not supported"), options({ stdin: PIPE })).code,
      64,
    );
  });
});

Deno.test("reportError() asks whether stdin is a terminal only for a bad option of ours", () => {
  let asked = 0;
  const stdin = { isTerminal: () => (asked++, false) };
  reportError(new DataError("bad address", "5.1.3"), options({ stdin }));
  strictEqual(asked, 0);
});

Deno.test("reportError() gives an admin plain words without a DSN code, control characters replaced", () => {
  deepStrictEqual(
    reportError(new UsageError("--init-spool is for root\x1b[2J"), options({ admin: true })),
    { code: 64, line: "sshsendmail: --init-spool is for root?[2J" },
  );
});

Deno.test("reportError() shows the peer a fixed line for a bug, never its stack", () => {
  const report = reportError(new Error("secret at /work/x.ts:1"), options({ caller: "postfix" }));
  deepStrictEqual(report, { code: 75, line: "4.3.0 sshsendmail: internal error" });
});

Deno.test("reportError() maps a refusal through each caller's table", async (t) => {
  const error = new DataError("malformed recipient", "5.1.3");
  const cases: [ErrorReportOptions["caller"], number][] = [
    ["sendmail", 65],
    ["postfix", 65],
    ["nullmailer", 34],
  ];
  for (const [caller, code] of cases) {
    await t.step(caller, () => strictEqual(reportError(error, options({ caller })).code, code));
  }
});

Deno.test("reportFailure() maps ssh's and the relay's failures per caller", async (t) => {
  const refused = {
    line: "5.1.1 rsendmail: no such user",
    sysexit: 67,
    nullmailer: 34,
    connectPhase: false,
  };
  const timedOut = {
    line: "4.4.2 sshsendmail: ssh was killed",
    sysexit: 75,
    nullmailer: 8,
    connectPhase: false,
  };
  await t.step("postfix bounces the relay's refusal", () => {
    deepStrictEqual(reportFailure("postfix", refused), { code: 67, line: refused.line });
  });
  await t.step("nullmailer takes ssh's finer code", () => {
    deepStrictEqual(reportFailure("nullmailer", timedOut), { code: 8, line: timedOut.line });
  });
  await t.step("sendmail defers a temporary failure", () => {
    deepStrictEqual(reportFailure("sendmail", timedOut), { code: 75, line: timedOut.line });
  });
});

Deno.test("smtpReplyOf() answers -bs with the relay's verdict or ssh's failure", async (t) => {
  await t.step("delivered", () => {
    strictEqual(
      smtpReplyOf({ id: "m1", code: 0, status: "2.0.0", text: "ok" }, "m1"),
      "250 2.0.0 Ok: sent as m1",
    );
  });
  await t.step("refused: 550 for a 5.1.x status", () => {
    strictEqual(
      smtpReplyOf({ id: "m1", code: 67, status: "5.1.1", text: "rsendmail: no such user" }, "m1"),
      "550 5.1.1 rsendmail: no such user",
    );
  });
  await t.step("deferred by the relay: 451 and a 4.x.x status", () => {
    strictEqual(
      smtpReplyOf({ id: "m1", code: 75, status: "4.3.0", text: "rsendmail: later" }, "m1"),
      "451 4.3.0 rsendmail: later",
    );
  });
  await t.step("a frame the relay did not take (id -): 451 and 4.x.x, never a bounce", () => {
    strictEqual(
      smtpReplyOf(
        { id: "-", code: 76, status: "5.5.2", text: "rsendmail: malformed batch frame" },
        "m1",
      ),
      "451 4.5.2 rsendmail: malformed batch frame",
    );
  });
  await t.step("a code that is no sysexit reads as deferred: 451", () => {
    strictEqual(
      smtpReplyOf({ id: "m1", code: 1, status: "4.3.0", text: "rsendmail: odd" }, "m1"),
      "451 4.3.0 rsendmail: odd",
    );
  });
  await t.step("ssh failed: 451", () => {
    const failure = {
      line: "4.4.1 sshsendmail: connection refused",
      sysexit: 75,
      nullmailer: 7,
      connectPhase: true,
    };
    strictEqual(smtpReplyOf(failure, "m1"), "451 4.4.1 sshsendmail: connection refused");
  });
});
