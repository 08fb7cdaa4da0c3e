import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { type ClientSettings, defaultSettings } from "../../lib/client/client_config.ts";
import {
  classifyExit,
  type Failure,
  remoteCommand,
  sshArgv,
} from "../../lib/client/ssh_command.ts";
import { parseRequest } from "../../lib/shared/request_codec.ts";
import { hasControl, tokenizeWords } from "../../lib/shared/words.ts";

const SSH = "/usr/bin/ssh";
const HOST = "relay.example";
const REMOTE = "rsendmail -oi -- a@x.example";

function settings(fields: Partial<ClientSettings> = {}): ClientSettings {
  return { ...defaultSettings(), ...fields };
}

/** The options every argv starts with, in order. */
const FIXED = [
  SSH,
  "-T",
  "-e",
  "none",
  "-a",
  "-x",
  "-o",
  "BatchMode=yes",
  "-o",
  "ConnectTimeout=10",
  "-o",
  "ServerAliveInterval=15",
  "-o",
  "ServerAliveCountMax=4",
  "-o",
  "ClearAllForwardings=yes",
];

/** The `-o` values of an argv, in order. */
function options(argv: readonly string[]): string[] {
  return argv.flatMap((a, i) => (argv[i - 1] === "-o" ? [a] : []));
}

Deno.test("sshArgv() builds a safe, quiet, 8-bit clean ssh command", async (t) => {
  await t.step("the defaults", () => {
    deepStrictEqual(sshArgv(SSH, settings(), HOST, REMOTE), [
      ...FIXED,
      "-o",
      "LogLevel=ERROR",
      "--",
      HOST,
      REMOTE,
    ]);
  });
  await t.step("the connect timeout from the settings", () => {
    ok(
      options(sshArgv(SSH, settings({ connectTimeout: 3 }), HOST, REMOTE)).includes(
        "ConnectTimeout=3",
      ),
    );
  });
  await t.step("port, user, identity and known_hosts", () => {
    deepStrictEqual(
      sshArgv(
        SSH,
        settings({
          port: 2222,
          user: "mail",
          identity: "/etc/sshsendmail/id_ed25519",
          knownHosts: "/etc/sshsendmail/known_hosts",
        }),
        HOST,
        REMOTE,
      ),
      [
        ...FIXED,
        "-o",
        "LogLevel=ERROR",
        "-p",
        "2222",
        "-l",
        "mail",
        "-i",
        "/etc/sshsendmail/id_ed25519",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "UserKnownHostsFile=/etc/sshsendmail/known_hosts",
        "--",
        HOST,
        REMOTE,
      ],
    );
  });
  await t.step("a control path turns on connection sharing", () => {
    const argv = sshArgv(SSH, settings(), HOST, REMOTE, "/run/sshsendmail/cm-%C");
    deepStrictEqual(argv.slice(FIXED.length + 2, -3), [
      "-o",
      "ControlMaster=auto",
      "-o",
      "ControlPath=/run/sshsendmail/cm-%C",
      "-o",
      "ControlPersist=60",
    ]);
  });
  await t.step("ssh_options come after the fixed options (ssh keeps the first value)", () => {
    const argv = sshArgv(
      SSH,
      settings({ sshOptions: ["BatchMode=no", "ClearAllForwardings=no", "Compression=yes"] }),
      HOST,
      REMOTE,
    );
    const o = options(argv);
    ok(o.indexOf("BatchMode=yes") < o.indexOf("BatchMode=no"));
    ok(o.indexOf("ClearAllForwardings=yes") < o.indexOf("ClearAllForwardings=no"));
    deepStrictEqual(argv.slice(FIXED.length), [
      "-o",
      "LogLevel=ERROR",
      "-o",
      "BatchMode=no",
      "-o",
      "ClearAllForwardings=no",
      "-o",
      "Compression=yes",
      "--",
      HOST,
      REMOTE,
    ]);
  });
  await t.step("-- always stands before the host, and the remote command is one last word", () => {
    const argv = sshArgv(
      SSH,
      settings({ sshOptions: ["Compression=yes"] }),
      "-oProxyCommand=id",
      REMOTE,
    );
    deepStrictEqual(argv.slice(-3), ["--", "-oProxyCommand=id", REMOTE]);
    strictEqual(argv.indexOf("--"), argv.length - 3);
  });
  await t.step("the path of ssh is argv[0] as given", () => {
    strictEqual(sshArgv("/opt/ssh", settings(), HOST, REMOTE)[0], "/opt/ssh");
  });
});

/** [name, ssh_options, LogLevel=ERROR expected] */
const LOG_LEVEL: [string, string[], boolean][] = [
  ["no ssh_option", [], true],
  ["an unrelated ssh_option", ["Compression=yes"], true],
  ["LogLevel=DEBUG3 replaces the quiet default", ["LogLevel=DEBUG3"], false],
  ["loglevel=quiet in lower case", ["loglevel=quiet"], false],
  ["LOGLEVEL=INFO in upper case", ["LOGLEVEL=INFO"], false],
  ["LogLevel after another option", ["Compression=yes", "LogLevel=VERBOSE"], false],
  ["LogLevelX=1 is not LogLevel", ["LogLevelX=1"], true],
  ["XLogLevel=DEBUG is not LogLevel", ["XLogLevel=DEBUG"], true],
];

Deno.test("sshArgv() sets LogLevel=ERROR only when no ssh_option sets LogLevel", async (t) => {
  for (const [name, sshOptions, quiet] of LOG_LEVEL) {
    await t.step(name, () => {
      const o = options(sshArgv(SSH, settings({ sshOptions }), HOST, REMOTE));
      strictEqual(o.includes("LogLevel=ERROR"), quiet);
      for (const option of sshOptions) ok(o.includes(option), option);
      strictEqual(
        o.filter((x) => /^loglevel=/i.test(x)).length,
        quiet ? 1 : sshOptions.filter((x) => /^loglevel=/i.test(x)).length,
      );
    });
  }
});

Deno.test("remoteCommand() quotes the request for the relay and for a shell", () => {
  const req = parseRequest(["-f", "", "--", "o'brien@x.example", "ab@y.example"]);
  const command = remoteCommand(settings(), req);
  strictEqual(command, `rsendmail -oi -f '' -- 'o'\\''brien@x.example' ab@y.example`);
  deepStrictEqual(parseRequest(tokenizeWords(command).slice(1)), req);
  strictEqual(
    remoteCommand(settings({ relayCommand: "/usr/local/bin/rsendmail" }), req),
    "/usr/local/bin/rsendmail -oi -f '' -- 'o'\\''brien@x.example' ab@y.example",
  );
});

const P = "sshsendmail";

function failure(
  line: string,
  sysexit: number,
  nullmailer: number,
  connectPhase: boolean,
): Failure {
  return { line, sysexit, nullmailer, connectPhase };
}

/** [name, exit code, stderr, failure] */
const CLASSIFY: [string, number, string, Failure | undefined][] = [
  ["0 is success", 0, "", undefined],
  [
    "0 is success whatever stderr says",
    0,
    "Warning: Permanently added 'relay' to known hosts.\n",
    undefined,
  ],
  [
    "255: the host name does not resolve",
    255,
    "ssh: Could not resolve hostname relay.example: Name or service not known\r\n",
    failure(`4.4.3 ${P}: cannot resolve the relay's host name`, 75, 2, true),
  ],
  [
    "255: the resolver fails for now",
    255,
    "ssh: Could not resolve hostname relay.example: Temporary failure in name resolution\n",
    failure(`4.4.3 ${P}: cannot resolve the relay's host name`, 75, 2, true),
  ],
  [
    "255: connection refused",
    255,
    "ssh: connect to host relay.example port 22: Connection refused\n",
    failure(`4.4.1 ${P}: connection refused by the relay`, 75, 7, true),
  ],
  [
    "255: connect timed out",
    255,
    "ssh: connect to host relay.example port 22: Connection timed out\n",
    failure(`4.4.1 ${P}: connection to the relay timed out`, 75, 8, true),
  ],
  [
    "255: banner exchange timed out",
    255,
    "Connection timed out during banner exchange\n",
    failure(`4.4.1 ${P}: connection to the relay timed out`, 75, 8, true),
  ],
  [
    "255: no route to host",
    255,
    "ssh: connect to host 192.0.2.1 port 22: No route to host\n",
    failure(`4.4.1 ${P}: relay unreachable`, 75, 9, true),
  ],
  [
    "255: network unreachable",
    255,
    "ssh: connect to host 2001:db8::1 port 22: Network is unreachable\n",
    failure(`4.4.1 ${P}: relay unreachable`, 75, 9, true),
  ],
  [
    "255: unknown host key under BatchMode",
    255,
    "No ED25519 host key is known for relay.example and you have requested strict checking.\nHost key verification failed.\n",
    failure(`4.7.0 ${P}: relay host key verification failed (check known_hosts)`, 75, 10, true),
  ],
  [
    "255: changed host key",
    255,
    "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@\n",
    failure(`4.7.0 ${P}: relay host key verification failed (check known_hosts)`, 75, 10, true),
  ],
  [
    "255: key refused",
    255,
    "mail@relay.example: Permission denied (publickey).\n",
    failure(
      `4.7.0 ${P}: authentication refused by the relay (check the key and authorized_keys)`,
      75,
      20,
      true,
    ),
  ],
  [
    "255: too many authentication failures",
    255,
    "Received disconnect from 192.0.2.1 port 22:2: Too many authentication failures\n",
    failure(
      `4.7.0 ${P}: authentication refused by the relay (check the key and authorized_keys)`,
      75,
      20,
      true,
    ),
  ],
  [
    "255: the identity file is missing",
    255,
    "Warning: Identity file /etc/sshsendmail/id not accessible: No such file or directory.\nno such identity: /etc/sshsendmail/id: No such file or directory\nmail@relay: Permission denied (publickey).\n",
    failure(
      `4.7.0 ${P}: authentication refused by the relay (check the key and authorized_keys)`,
      75,
      20,
      true,
    ),
  ],
  [
    "255: the identity file is unreadable",
    255,
    'Load key "/etc/sshsendmail/id": Permission denied\n',
    failure(
      `4.7.0 ${P}: authentication refused by the relay (check the key and authorized_keys)`,
      75,
      20,
      true,
    ),
  ],
  [
    "255: the first pattern of the table wins",
    255,
    "Permission denied (publickey).\nssh: connect to host relay port 22: Connection refused\n",
    failure(`4.4.1 ${P}: connection refused by the relay`, 75, 7, true),
  ],
  [
    "255: connection closed after connecting",
    255,
    "Connection closed by 192.0.2.1 port 22\n",
    failure(`4.4.2 ${P}: connection to the relay lost`, 75, 10, false),
  ],
  [
    "255: connection reset",
    255,
    "kex_exchange_identification: read: Connection reset by peer\n",
    failure(`4.4.2 ${P}: connection to the relay lost`, 75, 10, false),
  ],
  [
    "255: broken pipe",
    255,
    "client_loop: send disconnect: Broken pipe\n",
    failure(`4.4.2 ${P}: connection to the relay lost`, 75, 10, false),
  ],
  [
    "255: lost connection",
    255,
    "lost connection\n",
    failure(`4.4.2 ${P}: connection to the relay lost`, 75, 10, false),
  ],
  [
    "255: an unknown ssh error shows its first line",
    255,
    "\n  mux_client_request_session: session request failed: Session open refused by peer\nsecond\n",
    failure(
      `4.4.2 ${P}: ssh failed: mux_client_request_session: session request failed: Session open refused by peer`,
      75,
      10,
      false,
    ),
  ],
  ["255: no stderr at all", 255, "", failure(`4.4.2 ${P}: ssh failed`, 75, 10, false)],
  [
    "127: the relay lacks the program",
    127,
    "sh: 1: rsendmail: not found\n",
    failure(`4.3.5 ${P}: relay program not found or not executable on the relay`, 75, 15, false),
  ],
  [
    "126: the relay's program is not executable",
    126,
    "",
    failure(`4.3.5 ${P}: relay program not found or not executable on the relay`, 75, 15, false),
  ],
  [
    "65 with the relay's status line",
    65,
    "5.1.3 rsendmail: invalid recipient address\n",
    failure("5.1.3 rsendmail: invalid recipient address", 65, 34, false),
  ],
  [
    "77 with the relay's status line",
    77,
    "5.7.1 rsendmail: sender not allowed for this key\r\n",
    failure("5.7.1 rsendmail: sender not allowed for this key", 77, 34, false),
  ],
  [
    "64 with the relay's status line",
    64,
    "5.5.4 rsendmail: option -bp is not allowed\n",
    failure("5.5.4 rsendmail: option -bp is not allowed", 64, 34, false),
  ],
  [
    "75 with the relay's status line",
    75,
    "4.3.0 rsendmail: sendmail failed\n",
    failure("4.3.0 rsendmail: sendmail failed", 75, 16, false),
  ],
  [
    "78 with the relay's status line",
    78,
    "4.3.5 rsendmail: configuration error\n",
    failure("4.3.5 rsendmail: configuration error", 78, 18, false),
  ],
  [
    "69 with the relay's status line",
    69,
    "5.3.0 rsendmail: unavailable\n",
    failure("5.3.0 rsendmail: unavailable", 69, 35, false),
  ],
  [
    "the status line found after a banner",
    65,
    "Welcome to relay\n  5.6.0 rsendmail: message too big  \n",
    failure("5.6.0 rsendmail: message too big", 65, 34, false),
  ],
  [
    "65 without a status line",
    65,
    "",
    failure(`5.3.0 ${P}: relay failed (exit 65)`, 65, 34, false),
  ],
  [
    "75 with stderr that is no status line",
    75,
    "something broke\n",
    failure(`4.3.0 ${P}: relay failed (exit 75)`, 75, 16, false),
  ],
  [
    "6.1.1 is no status line",
    65,
    "6.1.1 rsendmail: x\n",
    failure(`5.3.0 ${P}: relay failed (exit 65)`, 65, 34, false),
  ],
  [
    "a status code without text is no status line",
    65,
    "5.1.3\n5.1.3rsendmail\n",
    failure(`5.3.0 ${P}: relay failed (exit 65)`, 65, 34, false),
  ],
  [
    "1 is no sysexits code: deferred",
    1,
    "",
    failure(`4.3.0 ${P}: relay failed (exit 1)`, 75, 16, false),
  ],
  ["2: deferred", 2, "", failure(`4.3.0 ${P}: relay failed (exit 2)`, 75, 16, false)],
  ["63: deferred", 63, "", failure(`4.3.0 ${P}: relay failed (exit 63)`, 75, 16, false)],
  ["79: deferred", 79, "", failure(`4.3.0 ${P}: relay failed (exit 79)`, 75, 16, false)],
  [
    "137 (killed by SIGKILL): deferred",
    137,
    "",
    failure(`4.3.0 ${P}: relay failed (exit 137)`, 75, 16, false),
  ],
  ["254: deferred", 254, "", failure(`4.3.0 ${P}: relay failed (exit 254)`, 75, 16, false)],
  [
    "a non-sysexits code with a permanent-looking line: the code decides",
    1,
    "5.1.3 rsendmail: invalid recipient address\n",
    failure("5.1.3 rsendmail: invalid recipient address", 75, 16, false),
  ],
];

Deno.test("classifyExit() tells ssh's failures from the relay's answer", async (t) => {
  for (const [name, code, stderr, expected] of CLASSIFY) {
    await t.step(name, () => deepStrictEqual(classifyExit(code, stderr, P), expected));
  }
});

/** [attack, exit code, stderr, line] */
const HOSTILE: [string, number, string, string][] = [
  [
    "terminal escapes in ssh's error",
    255,
    "ssh: \x1b]0;pwned\x07\x1b[2Jboom\n",
    `4.4.2 ${P}: ssh failed: ssh: ?]0;pwned??[2Jboom`,
  ],
  ["a NUL and C1 controls", 255, "a\0b\u0085c\u009bd\n", `4.4.2 ${P}: ssh failed: a?b?c?d`],
  [
    "a bidi override (Trojan Source)",
    255,
    "ok \u202eexe.txt\n",
    `4.4.2 ${P}: ssh failed: ok ?exe.txt`,
  ],
  ["bidi isolates", 255, "a\u2066b\u2069c\n", `4.4.2 ${P}: ssh failed: a?b?c`],
  [
    "zero-width characters and a BOM",
    255,
    "a\u200bb\u200dc\ufeffd\n",
    `4.4.2 ${P}: ssh failed: a?b?c?d`,
  ],
  [
    "U+2028 and U+2029 (line breaks to some readers)",
    255,
    "a\u2028Subject: x\u2029b\n",
    `4.4.2 ${P}: ssh failed: a?Subject: x?b`,
  ],
  ["a TAB inside the line", 255, "a\tb\n", `4.4.2 ${P}: ssh failed: a?b`],
  [
    "a relay status line with escapes",
    65,
    "5.1.3 rsendmail: \x1b[31mred\n",
    "5.1.3 rsendmail: ?[31mred",
  ],
  [
    "a relay status line with a bidi override",
    65,
    "5.1.3 rsendmail: \u202eevil\n",
    "5.1.3 rsendmail: ?evil",
  ],
  [
    "a relay status line of 10 000 characters is cut to 300",
    65,
    `5.1.3 ${"x".repeat(10_000)}\n`,
    `5.1.3 ${"x".repeat(294)}`,
  ],
  [
    "ssh's first line of 10 000 characters is cut to 300",
    255,
    `${"y".repeat(10_000)}\n`,
    `4.4.2 ${P}: ssh failed: ${"y".repeat(300)}`,
  ],
];

Deno.test("classifyExit() shows hostile stderr only as printable text", async (t) => {
  for (const [name, code, stderr, line] of HOSTILE) {
    await t.step(name, () => {
      const f = classifyExit(code, stderr, P)!;
      strictEqual(f.line, line);
      ok(!hasControl(f.line));
    });
  }
  await t.step("positive control: non-ASCII letters and an emoji stay", () => {
    strictEqual(
      classifyExit(255, "ssh: Zugriff verweigert für jörg 用户 \u{1F600}\n", P)!.line,
      `4.4.2 ${P}: ssh failed: ssh: Zugriff verweigert für jörg 用户 \u{1F600}`,
    );
  });
});

Deno.test("classifyExit() never lets a control or format character through (property)", () => {
  const text = fc.string({ unit: "binary", maxLength: 80 });
  const code = fc.oneof(
    fc.constantFrom(1, 64, 65, 75, 126, 127, 255),
    fc.integer({ min: 1, max: 255 }),
  );
  fc.assert(
    fc.property(code, text, fc.constantFrom("", "5.1.3 ", "4.4.1 x "), (c, stderr, prefix) => {
      const f = classifyExit(c, prefix + stderr, P)!;
      ok(!/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(f.line), JSON.stringify(f.line));
      ok(f.line.length <= 300 + `4.4.2 ${P}: ssh failed: `.length);
      ok(/^[245]\.\d{1,3}\.\d{1,3} /.test(f.line));
      strictEqual(f.sysexit === 75 || (f.sysexit >= 64 && f.sysexit <= 78), true);
      if (f.connectPhase) strictEqual(c, 255);
    }),
    { seed: 0x55c, numRuns: 3000 },
  );
});
