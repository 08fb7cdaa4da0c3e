import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  accountFromPasswd,
  loginFromPasswd,
  loginsFromPasswd,
} from "../../lib/client/prepare_local_io.ts";

/** An /etc/passwd with the oddities these readers must step over. */
const PASSWD = [
  "# Managed by hand. evil:x:0:0 is not an entry",
  "#evil:x:1000:1000::/home/evil:/bin/sh",
  "root:x:0:0:root:/root:/bin/bash",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "carl:x:5000:1000:gid 1000, not uid 1000:/home/carl:/bin/sh",
  "ann:x:1000:1000:Ann,,,:/home/ann:/bin/bash",
  "",
  "short:x",
  "nouid::",
  ":x:1001:1001:no login name:/:/bin/sh",
  "bob:x:1001:1001::/home/bob:/bin/sh",
  "ann2:x:1000:1000:same uid as ann:/home/ann2:/bin/sh",
  "ann:x:1002:1002:same login as ann:/home/ann-again:/bin/sh",
  "bad:x:abc:1::/:/bin/sh",
  "badgid:x:7:-1::/:/bin/sh",
  "nohome:x:8:8",
  "sshsendmail:x:999:995::/var/spool/sshsendmail:/usr/sbin/nologin",
  "+::::::",
].join("\n");

/** [name, uid, login] */
const LOGIN: [string, number, string | undefined][] = [
  ["root", 0, "root"],
  ["a system account", 1, "daemon"],
  ["the uid column, not the gid column", 5000, "carl"],
  ["a comment line is not an entry", 1000, "ann"],
  ["an entry without a login name is skipped", 1001, "bob"],
  ["the service account", 999, "sshsendmail"],
  ["a uid nobody has", 4242, undefined],
  ["a line without home and shell fields", 8, "nohome"],
];

Deno.test("loginFromPasswd() finds a uid's login, first entry wins", async (t) => {
  for (const [name, uid, login] of LOGIN) {
    await t.step(name, () => {
      strictEqual(loginFromPasswd(PASSWD, uid), login);
    });
  }
  await t.step("a duplicate uid: the first entry wins", () => {
    strictEqual(loginFromPasswd("a:x:5:5::/:/\nb:x:5:5::/:/\n", 5), "a");
  });
  await t.step("a commented-out entry before the real one", () => {
    strictEqual(loginFromPasswd("#old:x:5:5::/:/\nnew:x:5:5::/:/\n", 5), "new");
  });
  await t.step("only a commented-out entry", () => {
    strictEqual(loginFromPasswd("#old:x:5:5::/:/\n", 5), undefined);
  });
  await t.step("the empty text", () => {
    strictEqual(loginFromPasswd("", 0), undefined);
  });
  await t.step("no final newline", () => {
    strictEqual(loginFromPasswd("root:x:0:0::/root:/bin/sh", 0), "root");
  });
});

/** [name, login, account] */
const ACCOUNT: [string, string, { uid: number; gid: number; home: string } | undefined][] = [
  ["root", "root", { uid: 0, gid: 0, home: "/root" }],
  ["a user", "carl", { uid: 5000, gid: 1000, home: "/home/carl" }],
  ["a duplicate login: the first entry wins", "ann", { uid: 1000, gid: 1000, home: "/home/ann" }],
  ["the service account", "sshsendmail", {
    uid: 999,
    gid: 995,
    home: "/var/spool/sshsendmail",
  }],
  ["a line without a home field", "nohome", { uid: 8, gid: 8, home: "/" }],
  ["a login nobody has", "nobody", undefined],
  ["a commented-out login", "#evil", undefined],
  ["a short line", "short", undefined],
  ["empty uid and gid fields", "nouid", undefined],
  ["a non-numeric uid", "bad", undefined],
  ["a negative gid", "badgid", undefined],
  ["the empty login (an unknown uid's) matches no nameless line", "", undefined],
  ["a NIS compat line", "+", undefined],
];

Deno.test("accountFromPasswd() finds a login's uid, gid and home, first entry wins", async (t) => {
  for (const [name, login, account] of ACCOUNT) {
    await t.step(name, () => {
      deepStrictEqual(accountFromPasswd(PASSWD, login), account);
    });
  }
});

Deno.test("loginsFromPasswd() agrees with loginFromPasswd() for every uid (the service's cache)", () => {
  const logins = loginsFromPasswd(PASSWD);
  for (const uid of [0, 1, 7, 8, 999, 1000, 1001, 1002, 4242, 5000]) {
    strictEqual(logins.get(String(uid)), loginFromPasswd(PASSWD, uid), `uid ${uid}`);
  }
  strictEqual(logins.get("1000"), "ann");
  strictEqual(logins.get("1001"), "bob");
  strictEqual(logins.has("4242"), false);
});
