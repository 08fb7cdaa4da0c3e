import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  applySetting,
  type ClientSettings,
  ConfigError,
  defaultSettings,
  parseConfigFile,
} from "../../lib/client/client_config.ts";
import { EX_TEMPFAIL } from "../../lib/shared/exit_codes.ts";
import { SPOOL_ROOT } from "../../lib/shared/layout.ts";
import { assertRefused } from "./_assert.ts";

/** A configuration fault defers, loudly. */
const REFUSED = { exitCode: EX_TEMPFAIL, status: "4.3.5" };

/** Settings after one `key = value`. */
function apply(key: string, value: string): ClientSettings {
  const s = defaultSettings();
  applySetting(s, key, value);
  return s;
}

Deno.test("defaultSettings() has the service's defaults", () => {
  const s = defaultSettings();
  strictEqual(s.spool, SPOOL_ROOT);
  strictEqual(s.spool, "/var/spool/sshsendmail");
  strictEqual(s.maxSize, 52_428_800);
  strictEqual(s.sessionIdle, 60);
  strictEqual(s.queue, true);
});

/** [name, value, spool] */
const SPOOL_ACCEPT: [string, string, string][] = [
  ["the default path", "/var/spool/sshsendmail", "/var/spool/sshsendmail"],
  ["another absolute path", "/srv/mail-spool_2.d", "/srv/mail-spool_2.d"],
  ["a trailing slash trimmed", "/srv/spool/", "/srv/spool"],
  ["several trailing slashes trimmed", "/srv/spool///", "/srv/spool"],
  ["inner double slashes kept", "/srv//spool", "/srv//spool"],
  ["the root directory", "/", "/"],
  ["the root directory spelt //", "//", "/"],
  ["a . component (only .. is refused)", "/srv/./spool", "/srv/./spool"],
  ["a name containing two dots", "/srv/a..b", "/srv/a..b"],
  ["a ... component", "/srv/.../spool", "/srv/.../spool"],
];

/** [attack, value] */
const SPOOL_REFUSE: [string, string][] = [
  ["the empty value", ""],
  ["a relative path", "var/spool/sshsendmail"],
  ["a ./ path", "./spool"],
  ["a home-relative path", "~/spool"],
  ["a .. component", "/var/spool/../../etc"],
  ["a trailing ..", "/var/spool/.."],
  ["a trailing ../", "/var/spool/../"],
  ["/..", "/.."],
  ["a space", "/var/spool sshsendmail"],
  ["a shell variable", "/tmp/$HOME"],
  ["a ;", "/tmp/spool;rm"],
  ["a non-ASCII letter", "/srv/spöol"],
  ["a LF", "/srv/spool\n/etc"],
  ["an ESC", "/srv/\x1b[2J"],
];

Deno.test("applySetting() spool takes an absolute path without .. and trims trailing slashes", async (t) => {
  for (const [name, value, spool] of SPOOL_ACCEPT) {
    await t.step(name, () => {
      strictEqual(apply("spool", value).spool, spool);
    });
  }
});

Deno.test("applySetting() spool refuses relative paths, .. and odd characters", async (t) => {
  for (const [name, value] of SPOOL_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => apply("spool", value), ConfigError, REFUSED);
    });
  }
});

/** [name, key, value, field, expected] */
const NUMBER_ACCEPT: [string, string, string, "maxSize" | "sessionIdle", number][] = [
  ["max_size 1", "max_size", "1", "maxSize", 1],
  ["max_size 50 MB", "max_size", "52428800", "maxSize", 52_428_800],
  ["max_size of 12 digits", "max_size", "999999999999", "maxSize", 999_999_999_999],
  ["max-size (option spelling)", "max-size", "1000", "maxSize", 1000],
  ["session_idle 1", "session_idle", "1", "sessionIdle", 1],
  ["session_idle 60", "session_idle", "60", "sessionIdle", 60],
  ["session_idle of 6 digits", "session_idle", "999999", "sessionIdle", 999_999],
  ["session-idle (option spelling)", "session-idle", "5", "sessionIdle", 5],
];

/** [attack, key, value] */
const NUMBER_REFUSE: [string, string, string][] = [
  ["max_size 0", "max_size", "0"],
  ["max_size empty", "max_size", ""],
  ["max_size negative", "max_size", "-1"],
  ["max_size with a leading zero", "max_size", "01"],
  ["max_size with a unit", "max_size", "10M"],
  ["max_size in exponent form", "max_size", "1e6"],
  ["max_size with a fraction", "max_size", "1.5"],
  ["max_size in hex", "max_size", "0x10"],
  ["max_size of 13 digits", "max_size", "1000000000000"],
  ["max_size with a space", "max_size", "1 000"],
  ["session_idle 0", "session_idle", "0"],
  ["session_idle empty", "session_idle", ""],
  ["session_idle negative", "session_idle", "-5"],
  ["session_idle with a unit", "session_idle", "5s"],
  ["session_idle with a fraction", "session_idle", "1.5"],
  ["session_idle of 7 digits", "session_idle", "1000000"],
];

Deno.test("applySetting() max_size and session_idle take positive whole numbers", async (t) => {
  for (const [name, key, value, field, expected] of NUMBER_ACCEPT) {
    await t.step(name, () => {
      strictEqual(apply(key, value)[field], expected);
    });
  }
});

Deno.test("applySetting() max_size and session_idle refuse zero, units and absurd lengths", async (t) => {
  for (const [name, key, value] of NUMBER_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => apply(key, value), ConfigError, REFUSED);
    });
  }
});

/** [key, value]: the old per-user queue setting, accepted and ignored. */
const QUEUE_DIR: [string, string][] = [
  ["queue_dir", "/var/spool/sshsendmail"],
  ["queue-dir", "/home/ann/.sshsendmail"],
  ["queue_dir", "relative/even"],
  ["queue_dir", ""],
];

Deno.test("applySetting() accepts queue_dir and ignores it", async (t) => {
  for (const [key, value] of QUEUE_DIR) {
    await t.step(`${key} = ${JSON.stringify(value)}`, () => {
      deepStrictEqual(apply(key, value), defaultSettings());
    });
  }
  await t.step("refuses a control character even there", () => {
    assertRefused(() => apply("queue_dir", "/x\x1b[2J"), ConfigError, REFUSED);
  });
});

Deno.test("parseConfigFile() reads the service's settings", async (t) => {
  await t.step("spool, max_size, session_idle and queue_dir together", () => {
    const s = parseConfigFile(
      [
        "# the satellite service",
        "spool = /srv/sshsendmail/",
        "max_size=1048576",
        "  session_idle =  30  ",
        "queue_dir = /var/spool/sshsendmail-old",
        "",
      ].join("\n"),
    );
    deepStrictEqual(s, {
      ...defaultSettings(),
      spool: "/srv/sshsendmail",
      maxSize: 1_048_576,
      sessionIdle: 30,
    });
  });
  await t.step("queue = no (standalone, direct)", () => {
    strictEqual(parseConfigFile("queue = no\n").queue, false);
  });
  await t.step("keys are case-insensitive", () => {
    strictEqual(parseConfigFile("SPOOL = /srv/x\n").spool, "/srv/x");
  });
  await t.step("refuses a spool with ..", () => {
    assertRefused(() => parseConfigFile("spool = /srv/../etc\n"), ConfigError, REFUSED);
  });
  await t.step("refuses max_size 0", () => {
    assertRefused(() => parseConfigFile("max_size = 0\n"), ConfigError, REFUSED);
  });
});

/**
 * The settings that reach ssh's argv or the relay's command line: [the
 * attack or mistake, key, refused value, the control that passes]. A value
 * ssh could read as an option (`-o…`) must never get there.
 */
const SSH_FACING: [string, string, string, string][] = [
  ["a relay user ssh would read as an option", "user", "-oProxyCommand=id", "rsendmail"],
  ["a relay user with a space", "user", "rs mail", "rs_mail"],
  ["a relay user with a shell metacharacter", "user", "r;id", "r.id"],
  ["a host ssh would read as an option", "host", "-oProxyCommand=id", "relay.example"],
  ["a host with a user that is an option", "host", "-l@relay.example", "l@relay.example"],
  ["port 0", "port", "0", "1"],
  ["port 65536", "port", "65536", "65535"],
  ["a port with a leading zero", "port", "022", "22"],
  ["a port with letters", "port", "22x", "22"],
  ["a negative port", "port", "-1", "2222"],
  ["an ssh_option without =", "ssh_option", "Compression", "Compression=yes"],
  ["an ssh_option that is an ssh flag", "ssh_option", "-oProxyCommand=id", "ProxyJump=none"],
  ["an ssh_option with an empty value", "ssh_option", "Compression=", "Compression=no"],
  [
    "an ssh_option whose value starts with a space",
    "ssh_option",
    "Compression= yes",
    "Compression=yes",
  ],
  ["a relay_command that is an option", "relay_command", "-c", "rsendmail"],
  [
    "a relay_command with a shell metacharacter",
    "relay_command",
    "rsendmail;id",
    "/usr/sbin/rsendmail",
  ],
  ["a relay_command with a space", "relay_command", "rsendmail -bp", "rsendmail"],
  ["a relative identity", "identity", "keys/id_ed25519", "/etc/sshsendmail/id_ed25519"],
  ["a relative known_hosts", "known_hosts", "known_hosts", "/etc/sshsendmail/known_hosts"],
];

Deno.test("applySetting() refuses ssh-facing values ssh could misread, beside the controls that pass", async (t) => {
  for (const [name, key, refused, control] of SSH_FACING) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => apply(key, refused), ConfigError, REFUSED);
    });
    await t.step(`control: ${key} = ${control}`, () => {
      apply(key, control);
    });
  }
});
