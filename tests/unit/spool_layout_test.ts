import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  partIds,
  partProblem,
  type PartStat,
  SPOOL_PARTS,
  SPOOL_TOP_MODE,
  type SpoolIds,
  type SpoolPart,
  topProblem,
} from "../../lib/client/spool_layout.ts";

const IDS: SpoolIds = { serviceUid: 999, serviceGid: 995 };
/** S_IFDIR, as stat's mode carries it. */
const S_IFDIR = 0o040000;

function part(name: string): SpoolPart {
  const found = SPOOL_PARTS.find((p) => p.name === name);
  if (found === undefined) throw new Error(`no part ${name}`);
  return found;
}

Deno.test("SPOOL_PARTS is the layout the spec names, in --init-spool's order", () => {
  deepStrictEqual(
    SPOOL_PARTS.map((p) => [p.name, p.owner, p.group, p.mode.toString(8)]),
    [
      ["drop", "service", "service", "1733"],
      ["root", "root", "service", "750"],
      ["incoming", "service", "service", "700"],
      ["queue", "service", "service", "700"],
      ["hold", "service", "service", "700"],
      ["reply", "service", "service", "711"],
    ],
  );
  strictEqual(SPOOL_TOP_MODE, 0o755);
});

/** [part, uid, gid] */
const IDS_TABLE: [string, number, number][] = [
  ["drop", 999, 995],
  ["root", 0, 995],
  ["incoming", 999, 995],
  ["queue", 999, 995],
  ["hold", 999, 995],
  ["reply", 999, 995],
];

Deno.test("partIds() gives root 0 and the service its uid and gid", async (t) => {
  for (const [name, uid, gid] of IDS_TABLE) {
    await t.step(name, () => {
      deepStrictEqual(partIds(part(name), IDS), { uid, gid });
    });
  }
  await t.step("a part owned and grouped by root", () => {
    deepStrictEqual(partIds({ name: "x", owner: "root", group: "root", mode: 0o755 }, IDS), {
      uid: 0,
      gid: 0,
    });
  });
});

/** The stat of a part exactly as --init-spool makes it. */
function made(p: SpoolPart): PartStat {
  const { uid, gid } = partIds(p, IDS);
  return { isDirectory: true, isSymlink: false, uid, gid, mode: S_IFDIR | p.mode };
}

Deno.test("partProblem() accepts every part as --init-spool makes it", async (t) => {
  for (const p of SPOOL_PARTS) {
    await t.step(p.name, () => {
      strictEqual(partProblem(p, made(p), IDS), undefined);
    });
  }
  await t.step("the mode without the file type bits", () => {
    strictEqual(partProblem(part("drop"), { ...made(part("drop")), mode: 0o1733 }, IDS), undefined);
  });
});

/** [attack, part, stat fields, problem] */
const PART_REFUSE: [string, string, Partial<PartStat>, string][] = [
  ["a symlink to a directory", "drop", { isSymlink: true }, "not a directory"],
  ["a symlink to elsewhere", "queue", { isSymlink: true, isDirectory: false }, "not a directory"],
  ["a regular file", "reply", { isDirectory: false }, "not a directory"],
  ["drop/ owned by a user", "drop", { uid: 1000 }, "owned by uid 1000, not 999"],
  ["drop/ owned by root", "drop", { uid: 0 }, "owned by uid 0, not 999"],
  ["root/ owned by the service (it could delete root's drops)", "root", {
    uid: 999,
  }, "owned by uid 999, not 0"],
  ["an unknown owner", "incoming", { uid: null }, "owned by uid null, not 999"],
  ["root/ in root's group (the service could not read it)", "root", {
    gid: 0,
  }, "group 0, not 995"],
  ["a user's group", "hold", { gid: 100 }, "group 100, not 995"],
  ["an unknown group", "queue", { gid: null }, "group null, not 995"],
  ["drop/ without the sticky bit (users could delete others' drops)", "drop", {
    mode: S_IFDIR | 0o733,
  }, "mode 733, not 1733"],
  ["drop/ world-readable (users could list drops)", "drop", {
    mode: S_IFDIR | 0o1777,
  }, "mode 1777, not 1733"],
  ["queue/ readable by the group", "queue", { mode: S_IFDIR | 0o750 }, "mode 750, not 700"],
  ["reply/ listable", "reply", { mode: S_IFDIR | 0o755 }, "mode 755, not 711"],
  ["root/ group-writable", "root", { mode: S_IFDIR | 0o770 }, "mode 770, not 750"],
  ["a setgid bit on incoming/", "incoming", { mode: S_IFDIR | 0o2700 }, "mode 2700, not 700"],
  ["an unknown mode", "hold", { mode: null }, "mode 0, not 700"],
];

Deno.test("partProblem() refuses links, wrong owners, groups and modes", async (t) => {
  for (const [name, partName, fields, problem] of PART_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      const p = part(partName);
      strictEqual(partProblem(p, { ...made(p), ...fields }, IDS), problem);
    });
  }
});

const TOP: PartStat = {
  isDirectory: true,
  isSymlink: false,
  uid: 0,
  gid: 0,
  mode: S_IFDIR | 0o755,
};

/** [name, stat fields] */
const TOP_ACCEPT: [string, Partial<PartStat>][] = [
  ["root's 0755", {}],
  ["root's 0700", { mode: S_IFDIR | 0o700 }],
  ["root's 0711", { mode: S_IFDIR | 0o711 }],
  ["any group while only root can write", { gid: 100 }],
  ["the mode without the file type bits", { mode: 0o755 }],
];

/** [attack, stat fields, problem] */
const TOP_REFUSE: [string, Partial<PartStat>, string][] = [
  ["a symlink", { isSymlink: true }, "not a directory"],
  ["a regular file", { isDirectory: false }, "not a directory"],
  ["owned by the service account", { uid: 999 }, "owned by uid 999, not root"],
  ["owned by a user", { uid: 1000 }, "owned by uid 1000, not root"],
  ["an unknown owner", { uid: null }, "owned by uid null, not root"],
  ["group-writable", { mode: S_IFDIR | 0o775 }, "writable by others than root"],
  ["world-writable", { mode: S_IFDIR | 0o757 }, "writable by others than root"],
  [
    "sticky and world-writable like /tmp",
    { mode: S_IFDIR | 0o1777 },
    "writable by others than root",
  ],
  ["an unknown mode (fails closed)", { mode: null }, "mode unknown"],
];

Deno.test("topProblem() accepts a directory only root can write", async (t) => {
  for (const [name, fields] of TOP_ACCEPT) {
    await t.step(name, () => {
      strictEqual(topProblem({ ...TOP, ...fields }), undefined);
    });
  }
});

Deno.test("topProblem() refuses links, other owners and directories others can write", async (t) => {
  for (const [name, fields, problem] of TOP_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      strictEqual(topProblem({ ...TOP, ...fields }), problem);
    });
  }
});
