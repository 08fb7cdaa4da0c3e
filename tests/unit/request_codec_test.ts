import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { DataError, UsageError } from "../../lib/shared/errors.ts";
import fc from "npm:fast-check@4.10.2";
import {
  decodeFrame,
  encodeCommand,
  encodeFrame,
  parseRequest,
  requestWords,
} from "../../lib/shared/request_codec.ts";
import { frameWords } from "../../lib/shared/batch.ts";
import type { SendmailRequest } from "../../lib/shared/sendmail_args.ts";
import { tokenizeWords } from "../../lib/shared/words.ts";

const LOCAL = fc.oneof(
  fc.stringMatching(/^[a-z0-9+'_-]{1,8}(\.[a-z0-9+'_-]{1,8}){0,2}$/),
  fc.stringMatching(/^"[a-z ,;:'()$`!]{1,12}"$/),
);
const DOMAIN = fc.stringMatching(/^[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}$/);
const ADDRESS = fc.tuple(LOCAL, DOMAIN).map(([l, d]) => `${l}@${d}`).filter((a) =>
  !a.startsWith("-") && !/^"?[|/]/.test(a) && !/^"?:include:/i.test(a)
);
const REQUEST: fc.Arbitrary<SendmailRequest> = fc.record({
  sender: fc.option(fc.oneof(ADDRESS, fc.constant("")), { nil: undefined }),
  extractRecipients: fc.boolean(),
  recipients: fc.array(ADDRESS, { minLength: 1, maxLength: 5 }),
  integrity: fc.option(
    fc.record({
      size: fc.nat({ max: 10_000_000 }),
      sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
      id: fc.stringMatching(/^m[0-9a-f]{32}$/),
    }),
    { nil: undefined },
  ),
}).map(({ integrity, ...r }) => ({
  ...r,
  size: integrity?.size,
  sha256: integrity?.sha256,
  id: integrity?.id,
}));

Deno.test("requestWords() round-trips through the relay's grammar (property)", () => {
  fc.assert(
    fc.property(REQUEST, (req) => {
      deepStrictEqual(parseRequest(requestWords(req)), req);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("encodeCommand() and encodeFrame() decode to the same words the relay parses (property)", () => {
  fc.assert(
    fc.property(REQUEST, (req) => {
      const words = requestWords(req);
      deepStrictEqual(tokenizeWords(encodeCommand("rsendmail", req)), ["rsendmail", ...words]);
      deepStrictEqual(tokenizeWords(frameWords(encodeFrame(req))), words);
      deepStrictEqual(parseRequest(tokenizeWords(frameWords(encodeFrame(req)))), req);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("decodeFrame() reads the declared size with the grammar, even when it refuses the frame", async (t) => {
  const SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  await t.step("a good frame: size, id, request", () => {
    const frame = decodeFrame(
      `MSG -oi -f a@b.example --size=12 --sha256=${SHA} --id=abcdefgh -- c@d.example`,
    );
    deepStrictEqual([frame.size, frame.id, frame.request?.recipients], [12, "abcdefgh", [
      "c@d.example",
    ]]);
    strictEqual(frame.refusal, undefined);
  });
  await t.step("a bad sender before --size: refused, still skipped by its size", () => {
    const frame = decodeFrame(`MSG -f a@@b --size=7 --sha256=${SHA} --id=abcdefgh -- c@d.example`);
    deepStrictEqual([frame.size, frame.id, frame.request], [7, "abcdefgh", undefined]);
    ok(frame.refusal instanceof DataError);
  });
  await t.step("an unknown option: refused, skipped by its size", () => {
    const frame = decodeFrame(`MSG -bs --size=3 --id=abcdefgh -- c@d.example`);
    deepStrictEqual([frame.size, frame.request], [3, undefined]);
    ok(frame.refusal instanceof UsageError);
  });
  await t.step("two sizes: the first delimits, the grammar refuses", () => {
    const frame = decodeFrame(`MSG --size=3 --size=4 -- c@d.example`);
    deepStrictEqual([frame.size, frame.id, frame.request], [3, "-", undefined]);
  });
  await t.step("no --size (or one only as -f's value or after --): cannot be delimited", () => {
    for (
      const line of ["MSG -oi -- c@d.example", "MSG -f --size=3 -- c@d.example", "MSG -- --size=3"]
    ) {
      throws(() => decodeFrame(line), UsageError, line);
    }
  });
  await t.step("not a frame, or unbalanced quoting: throws", () => {
    throws(() => decodeFrame("MAIL --size=3"), UsageError);
    throws(() => decodeFrame("MSG --size=3 'c@d.example"), UsageError);
  });
  await t.step("id and hash are the caller's to require: a frame without them parses", () => {
    const frame = decodeFrame("MSG --size=0 -- c@d.example");
    deepStrictEqual([frame.size, frame.id, frame.request?.recipients], [0, "-", ["c@d.example"]]);
  });
});
