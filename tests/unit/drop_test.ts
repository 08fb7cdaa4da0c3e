import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  checkDrop,
  classifyDropName,
  DROP_HEX_REGEXP,
  type DropCheck,
  dropHex,
  type DropLimits,
  type DropName,
  type DropStat,
  encodeDropHeader,
  mayAccess,
  parseDropHeader,
  parseServiceRequest,
  sameFile,
  type ServiceRequest,
} from "../../lib/client/drop.ts";

const HEX = "0123456789abcdef0123456789abcdef";
const ID = `m${HEX}`;

/** [name, drop directory entry, expected kind] */
const NAMES_ACCEPT: [string, string, DropName][] = [
  ["d<hex> is a message", `d${HEX}`, { kind: "message", hex: HEX }],
  ["q<hex> is a request", `q${HEX}`, { kind: "request", hex: HEX }],
  ["t<hex> is a temp file", `t${HEX}`, { kind: "temp", hex: HEX }],
  ["all-zero hex", `d${"0".repeat(32)}`, { kind: "message", hex: "0".repeat(32) }],
  ["all-f hex", `q${"f".repeat(32)}`, { kind: "request", hex: "f".repeat(32) }],
];

/** [attack or oddity, name]: each classified "other". */
const NAMES_REFUSE: [string, string][] = [
  ["the empty name", ""],
  ["a bare prefix", "d"],
  [".", "."],
  ["..", ".."],
  ["a path traversal", `../d${HEX}`],
  ["a path traversal after the prefix", `d../${HEX.slice(3)}`],
  ["a slash inside", `d${HEX.slice(0, 16)}/${HEX.slice(17)}`],
  ["an absolute path", `/d${HEX}`],
  ["a trailing /..", `d${HEX}/..`],
  ["31 hex digits", `d${HEX.slice(1)}`],
  ["33 hex digits", `d${HEX}0`],
  ["a doubled prefix", `dd${HEX}`],
  ["upper-case hex", `d${HEX.toUpperCase()}`],
  ["an upper-case prefix", `D${HEX}`],
  ["a non-hex letter", `d${HEX.slice(0, 31)}g`],
  ["a queue id (m<hex>) is not a drop", `m${HEX}`],
  ["an unknown prefix", `x${HEX}`],
  ["32 hex digits without a prefix", HEX],
  ["a trailing LF ($ is end of input only)", `d${HEX}\n`],
  ["a leading LF", `\nd${HEX.slice(1)}`],
  ["a trailing NUL", `d${HEX}\0`],
  ["a trailing space", `d${HEX} `],
  ["a leading space", ` d${HEX.slice(1)}`],
  ["a suffix", `t${HEX}.tmp`],
  ["full-width digits", `d${"０".repeat(32)}`],
  ["Arabic-Indic digits", `d${"٠".repeat(32)}`],
  ["the alive file", "alive"],
];

Deno.test("classifyDropName() tells messages, requests and temp files apart", async (t) => {
  for (const [name, entry, expected] of NAMES_ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(classifyDropName(entry), expected);
    });
  }
});

Deno.test("classifyDropName() classifies path traversals and odd names as other", async (t) => {
  for (const [name, entry] of NAMES_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      deepStrictEqual(classifyDropName(entry), { kind: "other" });
    });
  }
});

Deno.test("dropHex() spells 16 bytes as 32 lower-case hex digits", async (t) => {
  await t.step("zero bytes are padded to two digits", () => {
    strictEqual(dropHex(new Uint8Array(16)), "0".repeat(32));
  });
  await t.step("every byte value in order", () => {
    const bytes = Uint8Array.from([
      0,
      1,
      9,
      10,
      15,
      16,
      127,
      128,
      160,
      171,
      200,
      239,
      240,
      250,
      254,
      255,
    ]);
    strictEqual(dropHex(bytes), "0001090a0f107f80a0abc8eff0fafeff");
  });
  await t.step("the result names a drop", () => {
    const hex = dropHex(Uint8Array.from({ length: 16 }, (_, i) => i * 17));
    deepStrictEqual(classifyDropName(`d${hex}`), { kind: "message", hex });
  });
});

Deno.test("dropHex() refuses any length but 16", async (t) => {
  for (const length of [0, 1, 15, 17, 32]) {
    await t.step(`refuses ${length} bytes`, () => {
      throws(() => dropHex(new Uint8Array(length)), RangeError);
    });
  }
});

Deno.test("dropHex() is one-to-one and always matches DROP_HEX_REGEXP (property)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
      const hex = dropHex(bytes);
      ok(DROP_HEX_REGEXP.test(hex));
      const back = Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
      deepStrictEqual(back, bytes);
    }),
    { seed: 0xd409, numRuns: 1000 },
  );
});

/** A drop that passes every check. */
const FILE: DropStat = {
  isFile: true,
  isDirectory: false,
  isSymlink: false,
  nlink: 1,
  uid: 1000,
  size: 100,
  dev: 2049,
  ino: 131_072,
};
const LIMITS: DropLimits = { serviceUid: 999, maxSize: 1000 };

/** [name, stat fields, limits, verdict] */
const CHECK_ACCEPT: [string, Partial<DropStat>, DropLimits, DropCheck][] = [
  ["a regular file with one link", {}, LIMITS, { kind: "ok", uid: 1000 }],
  ["an empty file", { size: 0 }, LIMITS, { kind: "ok", uid: 1000 }],
  ["exactly maxSize bytes", { size: 1000 }, LIMITS, { kind: "ok", uid: 1000 }],
  ["a drop by root (uid 0)", { uid: 0 }, LIMITS, { kind: "ok", uid: 0 }],
  ["the service's own request when allowServiceUid", { uid: 999 }, {
    ...LIMITS,
    allowServiceUid: true,
  }, { kind: "ok", uid: 999 }],
  ["another user's drop when allowServiceUid", {}, { ...LIMITS, allowServiceUid: true }, {
    kind: "ok",
    uid: 1000,
  }],
  ["a file without dev/ino (only sameFile reads them)", { dev: null, ino: null }, LIMITS, {
    kind: "ok",
    uid: 1000,
  }],
];

/** [attack, stat fields, limits, reason] */
const CHECK_REFUSE: [string, Partial<DropStat>, DropLimits, string][] = [
  ["a symlink", { isFile: false, isSymlink: true }, LIMITS, "symlink"],
  ["a symlink even when isFile is also set", { isSymlink: true }, LIMITS, "symlink"],
  ["a directory", { isFile: false, isDirectory: true }, LIMITS, "directory"],
  [
    "a FIFO, socket or device (neither file nor directory)",
    { isFile: false },
    LIMITS,
    "not a regular file",
  ],
  ["a file with 0 links (unlinked while open)", { nlink: 0 }, LIMITS, "0 links"],
  ["a hard link to another file (2 links)", { nlink: 2 }, LIMITS, "2 links"],
  ["an unknown link count", { nlink: null }, LIMITS, "unknown links"],
  ["no owner (null uid)", { uid: null }, LIMITS, "no owner"],
  ["a drop owned by the service account", { uid: 999 }, LIMITS, "owned by the service account"],
  ["the service account when allowServiceUid is false", { uid: 999 }, {
    ...LIMITS,
    allowServiceUid: false,
  }, "owned by the service account"],
  ["one byte over maxSize", { size: 1001 }, LIMITS, "over the size limit"],
  ["a huge file", { size: Number.MAX_SAFE_INTEGER }, LIMITS, "over the size limit"],
  [
    "a symlink owned by the service (the first reason wins)",
    {
      isFile: false,
      isSymlink: true,
      uid: 999,
      nlink: 2,
    },
    LIMITS,
    "symlink",
  ],
];

Deno.test("checkDrop() takes a regular file with one link owned by someone else", async (t) => {
  for (const [name, fields, limits, verdict] of CHECK_ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(checkDrop({ ...FILE, ...fields }, limits), verdict);
    });
  }
});

Deno.test("checkDrop() refuses links, non-files, the service's own files and oversize drops", async (t) => {
  for (const [name, fields, limits, reason] of CHECK_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      deepStrictEqual(checkDrop({ ...FILE, ...fields }, limits), { kind: "refused", reason });
    });
  }
});

/** [name, second stat fields, same] */
const SAME: [string, Partial<DropStat>, Partial<DropStat>, boolean][] = [
  ["the same dev and ino", {}, {}, true],
  ["dev 0 and ino 0 are real numbers", { dev: 0, ino: 0 }, { dev: 0, ino: 0 }, true],
  ["the same file grown in between (size is not compared)", {}, { size: 5 }, true],
  ["another inode (swapped after the check)", {}, { ino: 131_073 }, false],
  ["another device", {}, { dev: 2050 }, false],
  ["both dev unknown", { dev: null }, { dev: null }, false],
  ["both ino unknown", { ino: null }, { ino: null }, false],
  ["the second dev unknown", {}, { dev: null }, false],
  ["the second ino unknown", {}, { ino: null }, false],
];

Deno.test("sameFile() compares device and inode, and unknown is never the same", async (t) => {
  for (const [name, a, b, same] of SAME) {
    await t.step(name, () => {
      strictEqual(sameFile({ ...FILE, ...a }, { ...FILE, ...b }), same);
      strictEqual(sameFile({ ...FILE, ...b }, { ...FILE, ...a }), same);
    });
  }
});

Deno.test("encodeDropHeader() writes one JSON line", async (t) => {
  await t.step("a typical request", () => {
    strictEqual(
      encodeDropHeader(["-oi", "-f", "a@b.example", "--", "c@d.example"]),
      '["-oi","-f","a@b.example","--","c@d.example"]\n',
    );
  });
  await t.step("no words", () => {
    strictEqual(encodeDropHeader([]), "[]\n");
  });
  await t.step("LF and CR inside a word stay escaped on the one line", () => {
    const header = encodeDropHeader(["a\nb", "c\rd", "e\u2028f"]);
    strictEqual(header.indexOf("\n"), header.length - 1);
    ok(!header.includes("\r"));
  });
});

/** [name, first line, words] */
const HEADER_ACCEPT: [string, string, string[]][] = [
  ["an array of words", '["-oi","--","a@b"]', ["-oi", "--", "a@b"]],
  ["the empty array", "[]", []],
  ["an empty word (null sender)", '["-f","","--","a@b"]', ["-f", "", "--", "a@b"]],
  ["white space around JSON", ' [ "a" ] ', ["a"]],
  ["escapes", '["\\u0041\\n"]', ["A\n"]],
  ["exactly 4096 words", JSON.stringify(Array(4096).fill("a")), Array(4096).fill("a")],
];

/** [attack, first line] */
const HEADER_REFUSE: [string, string][] = [
  ["the empty line", ""],
  ["not JSON", "-oi -- a@b"],
  ["an unterminated array", '["a"'],
  ["trailing garbage", '["a"] x'],
  ["an object", '{"0":"a"}'],
  ["a string", '"-oi"'],
  ["null", "null"],
  ["a number", "42"],
  ["a number among the words", '["a",1]'],
  ["null among the words", '["a",null]'],
  ["a nested array", '[["a"]]'],
  ["an object among the words", '[{"w":"a"}]'],
  ["4097 words", JSON.stringify(Array(4097).fill("a"))],
];

Deno.test("parseDropHeader() reads a JSON array of strings", async (t) => {
  for (const [name, line, words] of HEADER_ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(parseDropHeader(line), words);
    });
  }
});

Deno.test("parseDropHeader() refuses anything but a JSON array of at most 4096 strings", async (t) => {
  for (const [name, line] of HEADER_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      strictEqual(parseDropHeader(line), undefined);
    });
  }
});

/** Any UTF-16 code unit, lone surrogates and controls included. */
const CODE_UNIT = fc.nat({ max: 0xffff }).map((n) => String.fromCharCode(n));
const ANY_WORD = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.string({ unit: CODE_UNIT }),
  fc.constantFrom("", "\n", "\r\n", "\u2028", '"', "\\", "]", "\ud800", "\udfff", "\0"),
);

Deno.test("parseDropHeader() reads back encodeDropHeader() exactly, on one line (property)", () => {
  fc.assert(
    fc.property(fc.array(ANY_WORD, { maxLength: 20 }), (words) => {
      const header = encodeDropHeader(words);
      strictEqual(header.indexOf("\n"), header.length - 1);
      deepStrictEqual(parseDropHeader(header.slice(0, -1)), words);
    }),
    { seed: 0xd20b, numRuns: 2000 },
  );
});

/** [name, request text, parsed] */
const REQUEST_ACCEPT: [string, string, ServiceRequest][] = [
  ["list", '{"op":"list"}', { op: "list" }],
  ["flush", '{"op":"flush"}', { op: "flush" }],
  ["remove with a queue id", `{"op":"remove","id":"${ID}"}`, { op: "remove", id: ID }],
  ["remove, keys in the other order", `{"id":"${ID}","op":"remove"}`, { op: "remove", id: ID }],
  ["white space and a trailing LF", ' { "op" : "list" }\n', { op: "list" }],
  ['a duplicate "op" key (JSON.parse keeps the last)', '{"op":"list","op":"flush"}', {
    op: "flush",
  }],
];

/** [attack, request text] */
const REQUEST_REFUSE: [string, string][] = [
  ["the empty text", ""],
  ["a bare word", "list"],
  ["truncated JSON", '{"op":"list"'],
  ["two JSON values", '{"op":"list"}{"op":"flush"}'],
  ["null", "null"],
  ["a string", '"list"'],
  ["a number", "42"],
  ["an array", "[]"],
  ["an array holding a request", '[{"op":"list"}]'],
  ["an empty object", "{}"],
  ["an unknown op", '{"op":"rm -rf"}'],
  ["an upper-case op", '{"op":"LIST"}'],
  ["op as an array", '{"op":["list"]}'],
  ["op smuggled through __proto__", '{"__proto__":{"op":"list"}}'],
  ["remove without an id", '{"op":"remove"}'],
  ["remove with a null id", '{"op":"remove","id":null}'],
  ["remove with a numeric id", '{"op":"remove","id":1}'],
  ["remove with an array id", `{"op":"remove","id":["${ID}"]}`],
  ["an id of 31 hex digits", `{"op":"remove","id":"m${HEX.slice(1)}"}`],
  ["an id of 33 hex digits", `{"op":"remove","id":"${ID}0"}`],
  ["an upper-case id", `{"op":"remove","id":"${ID.toUpperCase()}"}`],
  ["a drop name as the id", `{"op":"remove","id":"d${HEX}"}`],
  ["a path as the id", `{"op":"remove","id":"../${ID}"}`],
  ["an id with a trailing LF", `{"op":"remove","id":"${ID}\\n"}`],
  ["an id with a trailing slash", `{"op":"remove","id":"${ID}/"}`],
  ["an extra field on list", '{"op":"list","all":true}'],
  ["an extra uid on flush", '{"op":"flush","uid":0}'],
  ["an extra uid on remove", `{"op":"remove","id":"${ID}","uid":0}`],
  ["an id on list", `{"op":"list","id":"${ID}"}`],
];

Deno.test("parseServiceRequest() reads list, flush and remove", async (t) => {
  for (const [name, text, request] of REQUEST_ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(parseServiceRequest(text), request);
    });
  }
});

Deno.test("parseServiceRequest() refuses non-JSON, bad ids and extra fields", async (t) => {
  for (const [name, text] of REQUEST_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      strictEqual(parseServiceRequest(text), undefined);
    });
  }
});

const SERVICE = 999;

/** [name, requester, owner, may] */
const ACCESS: [string, number, number | undefined, boolean][] = [
  ["root sees another user's message", 0, 1000, true],
  ["root sees a message without an owner", 0, undefined, true],
  ["the service account sees another user's message", SERVICE, 1000, true],
  ["the service account sees a message without an owner", SERVICE, undefined, true],
  ["a user sees their own message", 1000, 1000, true],
  ["a user does not see another user's message", 1000, 1001, false],
  ["a user does not see root's message", 1000, 0, false],
  ["a user does not see the service account's message", 1000, SERVICE, false],
  ["a user does not see a message without an owner", 1000, undefined, false],
];

Deno.test("mayAccess() lets root and the service see all, and others their own", async (t) => {
  for (const [name, requester, owner, may] of ACCESS) {
    await t.step(name, () => {
      strictEqual(mayAccess(requester, SERVICE, owner), may);
    });
  }
});
