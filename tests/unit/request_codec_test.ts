import { deepStrictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
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
