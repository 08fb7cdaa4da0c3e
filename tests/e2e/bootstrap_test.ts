/**
 * scripts/bootstrap stops only the daemons it started: with apt-get,
 * dpkg-query, debconf-set-selections and service replaced by stubs that
 * record what they are asked (every package reported missing; postfix and
 * ssh running before), it installs the packages, then stops rsyslog and
 * cron, and leaves postfix and ssh alone. Nothing is installed for real.
 *
 * @module
 */

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { ROOT as root, run } from "./_bed.ts";

const STUBS: Record<string, string> = {
  // Every package missing, so bootstrap installs.
  "dpkg-query": "exit 1",
  "debconf-set-selections": "cat >/dev/null",
  "apt-get": 'echo "apt-get $*" >>"$STUB_LOG"',
  // A daemon named in $STUB_RUNNING is running until it is stopped.
  service: [
    'echo "service $*" >>"$STUB_LOG"',
    'case "$2" in',
    '  status) case " $STUB_RUNNING " in *" $1 "*) exit 0 ;; esac; exit 3 ;;',
    "  *) exit 0 ;;",
    "esac",
  ].join("\n"),
  npm: 'echo "npm $*" >>"$STUB_LOG"',
};

Deno.test("scripts/bootstrap stops only the daemons that were not running before", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rsm-bootstrap-" });
  try {
    for (const [name, body] of Object.entries(STUBS)) {
      await Deno.writeTextFile(`${dir}/${name}`, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    }
    const log = `${dir}/log`;
    const res = await run("/usr/bin/env", [
      `PATH=${dir}:/usr/bin:/bin:/usr/sbin:/sbin`,
      `STUB_LOG=${log}`,
      "STUB_RUNNING=postfix ssh",
      `${root}/scripts/bootstrap`,
    ]);
    match(res.stdout, /^deno \d/m, "the pinned Deno is there (npm not needed)");
    const lines = (await Deno.readTextFile(log)).trim().split("\n");
    const install = lines.findIndex((l) => l.startsWith("apt-get install"));
    ok(install > 0, lines.join("\n"));
    for (const p of ["debhelper", "lintian", "debootstrap", "postfix", "openssh-server"]) {
      ok(lines[install]!.split(" ").includes(p), `bootstrap installs ${p}`);
    }
    const before = lines.slice(0, install).filter((l) => l.startsWith("service "));
    deepStrictEqual(before, [
      "service postfix status",
      "service rsyslog status",
      "service ssh status",
      "service cron status",
    ]);
    const after = lines.slice(install + 1).filter((l) => l.startsWith("service "));
    deepStrictEqual(after, ["service rsyslog stop", "service cron stop"]);
    strictEqual(lines.filter((l) => l.startsWith("npm")).length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
