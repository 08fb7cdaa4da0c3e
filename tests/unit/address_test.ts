import { ok, strictEqual } from "node:assert/strict";
import { domainOf, isEnvelopeAddress, MAX_ADDRESS_LENGTH } from "../../lib/shared/address.ts";

/** [name, address]: all accepted. */
const ACCEPT: [string, string][] = [
  ["a plain address", "a@b.example"],
  ["a bare local name", "root"],
  ["an apostrophe", "o'brien@x.example"],
  ["a quoted local part with a space", '"john doe"@x.example'],
  ["a quoted local part holding an @", '"a@b"@x.example'],
  ["a quoted local part with a backslash pair", '"a\\"b"@x.example'],
  ["a quoted local part that looks like an option", '"a -X/tmp/log"@x.example'],
  ["UTF-8 local and domain", "jörg@bücher.example"],
  ["CJK", "用户@例子.广告"],
  ["an emoji (well-formed surrogate pair)", "\u{1F600}@x.example"],
  ["atext symbols", "a!#$%&*+/=?^_`{|}~-z@x.example"],
  ["plus addressing", "a+tag@x.example"],
  ["a dash inside", "a-b@x-y.example"],
  ["a trailing dot in the domain", "a@b.example."],
  ["an IPv4 literal", "a@[192.0.2.1]"],
  ["an IPv6 literal", "a@[IPv6:2001:db8::1]"],
  ["exactly MAX_ADDRESS_LENGTH", `${"a".repeat(250)}@${"b".repeat(MAX_ADDRESS_LENGTH - 251)}`],
];

/** [attack or mistake, address]: all refused. */
const REFUSE: [string, string][] = [
  ["the empty string", ""],
  ["a leading dash (CVE-2016-10033: read as an option)", "-X/tmp/log"],
  ["a leading dash before an address", "-oQ/tmp@x.example"],
  ["a lone dash", "-"],
  ["--", "--"],
  ["a space outside quotes (a second argument under a shell)", "a@b -X/tmp/log"],
  ["a space in the local part", "a b@x.example"],
  ["LF (log and header injection)", "a@b.example\nRCPT TO:<c@d>"],
  ["CR", "a\r@x.example"],
  ["NUL", "a\0@x.example"],
  ["TAB", "a\t@x.example"],
  ["LF inside a quoted local part", '"a\nb"@x.example'],
  ["U+2028 line separator in the local part", "a\u2028b@x.example"],
  ["U+2028 inside a quoted local part", '"a\u2028b"@x.example'],
  ["U+2029 in the domain", "a@x\u2029y.example"],
  ["C1 NEL", "a\u0085b@x.example"],
  ["NBSP (whitespace that is not a space)", "a\u00a0b@x.example"],
  ["ideographic space", "a\u3000b@x.example"],
  ["a BOM", "a\ufeff@x.example"],
  ["a lone surrogate (re-encoded as U+FFFD on exec)", "a\ud800@x.example"],
  ["a leading dot", ".a@x.example"],
  ["two dots", "a..b@x.example"],
  ["a trailing dot in the local part", "a.@x.example"],
  ["an empty local part", "@x.example"],
  ["an empty domain", "a@"],
  ["a domain label starting with a dash", "a@-x.example"],
  ["an empty domain label", "a@x..example"],
  ["angle brackets", "<a@b.example>"],
  ["a comma (two addresses in one word)", "a@b.example,c@d.example"],
  ["an unterminated quoted local part", '"a@x.example'],
  ["a shell substitution in the domain", "a@$(id).example"],
  ["one over MAX_ADDRESS_LENGTH", `${"a".repeat(250)}@${"b".repeat(MAX_ADDRESS_LENGTH - 250)}`],
  ["a local part over 256", `${"a".repeat(257)}@x`],
];

Deno.test("isEnvelopeAddress() accepts real-world addresses", async (t) => {
  for (const [name, address] of ACCEPT) {
    await t.step(name, () => ok(isEnvelopeAddress(address), JSON.stringify(address)));
  }
});

Deno.test("isEnvelopeAddress() refuses option-looking, multi-word and malformed addresses", async (t) => {
  for (const [name, address] of REFUSE) {
    await t.step(`refuses ${name}`, () => {
      ok(!isEnvelopeAddress(address), JSON.stringify(address));
      // Positive control: the same shape with the attack removed passes.
      ok(isEnvelopeAddress("a@x.example"));
    });
  }
});

Deno.test("domainOf() returns the lower-cased domain, or '' for a bare name", () => {
  strictEqual(domainOf("a@B.Example"), "b.example");
  strictEqual(domainOf('"x@evil.example"@Good.Example'), "good.example");
  strictEqual(domainOf("root"), "");
});
