/**
 * The satellite against a hostile relay and a careless admin (issue 12),
 * end to end on the built artefacts: a relay flooding stderr cannot
 * exhaust the client's or the service's memory; terminal escapes in a
 * relay's reply never reach a terminal, mailq or the queue's state;
 * `setup` refuses a relay whose host key is not the one given with
 * --fingerprint before any login, and policy values the forced command
 * cannot carry before anything is written. Each beside a positive control,
 * each a row of the attack table.
 *
 * @module
 */

import assert from "node:assert/strict";
import { match, ok, strictEqual } from "node:assert/strict";
import {
  account,
  exists,
  RSENDMAIL,
  run,
  SSHSENDMAIL,
  startRelay,
  takeByToken,
  token,
  waitFor,
} from "./_bed.ts";
import { setupArgs } from "./_standalone.ts";
import { peakRssKiB } from "./_adversarial.ts";
import { startServiceBed } from "./_service.ts";
import { record } from "./_attack_table.ts";

const SECTION = "7. hostile relay, careless admin";

/** A relay program (a script run as the forced command) in a temp dir. */
async function hostileRelay(body: string): Promise<{ path: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "rsm-hostile-" });
  await Deno.chmod(dir, 0o755);
  const path = `${dir}/relay.sh`;
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return { path, dir };
}

/** Peak RSS (KiB) of a process, from /proc. */
/** A control character other than LF (what a terminal would act on). */
// deno-lint-ignore no-control-regex
const CONTROL_REGEXP = /[\x00-\x09\x0b-\x1f\x7f]/;

const FLOOD = "head -c 300000000 /dev/zero | tr '\\0' x >&2; exit 75";
const ESCAPES =
  "printf '4.3.0 rsendmail: evil \\033]0;owned\\007\\033[2J\\033[31mred\\n' >&2; exit 75";

Deno.test("client: 300 MB of stderr from the relay does not exhaust the sender's memory (direct)", async () => {
  const hostile = await hostileRelay(`cat >/dev/null; ${FLOOD}`);
  const bed = await startServiceBed({ keyOptions: `restrict,command="${hostile.path}"` });
  try {
    const ann = await account("rsmhard1");
    await bed.writeConfig(["queue = no"]);
    const res = await run("/usr/bin/time", [
      "-f",
      "%M",
      "/usr/bin/setpriv",
      `--reuid=${bed.service.uid}`,
      `--regid=${bed.service.gid}`,
      "--init-groups",
      "/usr/bin/env",
      "-i",
      "PATH=/usr/bin:/bin",
      `SSHSENDMAIL_CONFIG=${bed.conf}`,
      bed.sendmail,
      `${ann.name}@${bed.domain}`,
    ], { stdin: "Subject: flood\n\nx\n", check: false });
    const lines = res.stderr.trim().split("\n");
    const rssKiB = Number(lines.at(-1));
    assert.equal(res.code, 75, res.stderr.slice(0, 400));
    // One line of ours, then time(1)'s "Command exited …" and its figure.
    assert.ok(lines.length <= 3, `one line, then time's: ${res.stderr.slice(0, 400)}`);
    assert.ok(lines[0]!.length < 300, "the flood is not echoed");
    assert.ok(rssKiB < 200 * 1024, `peak RSS ${rssKiB} KiB`);
    console.log(
      `direct send against a 300 MB stderr flood: peak RSS ${Math.round(rssKiB / 1024)} MiB`,
    );
    record(SECTION, "300 MB of stderr to a direct send", "refused");
  } finally {
    await bed.stop();
    await Deno.remove(hostile.dir, { recursive: true });
  }
});

Deno.test("client: the service survives a relay flooding 300 MB of stderr with flat memory, then delivers to a good relay", async () => {
  const hostile = await hostileRelay(`read line; ${FLOOD}`);
  const bed = await startServiceBed({ keyOptions: `restrict,command="${hostile.path}"` });
  try {
    const ann = await account("rsmhard2");
    const box = bed.mailbox(ann.name);
    const tok = token("flood");
    const sent = await bed.sendAs(
      ann,
      [`${ann.name}@${bed.domain}`],
      `Subject: ${tok}\n\n${tok}\n`,
    );
    assert.equal(sent.code, 0, sent.stderr);
    await waitFor("the deferral", async () => {
      const q = await bed.sendAs(ann, [bed.sendmail, "-bp"]);
      return /attempts/.test(q.stdout);
    }, 60_000);
    const hwm = await peakRssKiB(bed.pid()!);
    assert.ok(hwm < 200 * 1024, `service peak RSS ${hwm} KiB`);
    console.log(`service against a 300 MB stderr flood: peak RSS ${Math.round(hwm / 1024)} MiB`);
    // Positive control: the same service, a good relay, delivers the message.
    const good = await bed.relay.addKey(
      `restrict,command="${RSENDMAIL} --label good"`,
      "sshsendmail",
    );
    await bed.stopService();
    await bed.writeConfig([`identity = ${good}`]);
    await bed.start();
    const q = await bed.sendAs(ann, [bed.sendmail, "-q"]);
    assert.equal(q.code, 0, q.stderr);
    await takeByToken(box, tok);
    record(SECTION, "300 MB of stderr to the service, then a good relay", "delivered");
  } finally {
    await bed.stop();
    await Deno.remove(hostile.dir, { recursive: true });
  }
});

Deno.test("client: terminal escapes in the relay's reply never reach stderr, mailq or the service's state", async () => {
  const hostile = await hostileRelay(`read line; ${ESCAPES}`);
  const bed = await startServiceBed({ keyOptions: `restrict,command="${hostile.path}"` });
  try {
    const ann = await account("rsmhard3");
    await bed.writeConfig(["queue = no"]);
    const direct = await bed.sendAs(
      { ...bed.service },
      [bed.sendmail, `${ann.name}@${bed.domain}`],
      "Subject: esc\n\nx\n",
    );
    assert.equal(direct.code, 75);
    assert.ok(!CONTROL_REGEXP.test(direct.stderr), JSON.stringify(direct.stderr));
    assert.match(direct.stderr, /^4\.3\.0 rsendmail: evil \?\]0;owned\?\?\[2J\?\[31mred\n$/);
    await bed.stopService();
    await bed.writeConfig([]);
    await bed.start();
    const sent = await bed.sendAs(ann, [`${ann.name}@${bed.domain}`], "Subject: esc\n\nx\n");
    assert.equal(sent.code, 0, sent.stderr);
    let listing = "";
    await waitFor("the deferral", async () => {
      listing = (await bed.sendAs(ann, [bed.sendmail, "-bp"])).stdout;
      return /attempts/.test(listing);
    }, 30_000);
    assert.ok(!CONTROL_REGEXP.test(listing), JSON.stringify(listing));
    assert.match(listing, /evil \?\]0;owned/);
    record(SECTION, "terminal escapes in the relay's reply (stderr, mailq, state)", "refused");
    for await (const e of Deno.readDir(`${bed.spool}/queue/state`)) {
      const state = await Deno.readTextFile(`${bed.spool}/queue/state/${e.name}`);
      assert.ok(!CONTROL_REGEXP.test(state) && !/\\u00(1b|07)/.test(state), state);
    }
  } finally {
    await bed.stop();
    await Deno.remove(hostile.dir, { recursive: true });
  }
});

Deno.test({
  name: "setup: a wrong --fingerprint is refused before any login; the right one installs",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const relay = await startRelay();
    const admin = await relay.addKey("");
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-setuph-" });
    const env = { SSHSENDMAIL_CONFIG: `${dir}/sshsendmail.conf` };
    const installed = `/home/${relay.user}/.ssh/authorized_keys`;
    // The relay account's real authorized_keys: put back as found (setup_test counts lines).
    const original = await Deno.readTextFile(installed).catch(() => undefined);
    const real =
      (await run("/usr/bin/ssh-keygen", ["-lf", `${relay.dir}/ssh_host_ed25519_key.pub`]))
        .stdout.split(" ")[1]!;
    const setup = (fingerprint: string) =>
      run(SSHSENDMAIL, [...setupArgs(relay, dir, admin), "--fingerprint", fingerprint], {
        check: false,
        env,
      });
    try {
      await t.step(
        "an impostor's key (wrong fingerprint): refused, nothing installed or kept",
        async () => {
          // A fresh machine may have no authorized_keys yet: then none is made.
          const before = await Deno.readTextFile(installed).catch(() => undefined);
          const logins = (await Deno.readTextFile(relay.log)).split("Accepted publickey").length;
          const r = await setup("SHA256:" + "A".repeat(43));
          strictEqual(r.code, 77, r.stdout + r.stderr);
          match(r.stderr, /^sshsendmail: setup: the relay's host key is not the one given/);
          ok(!r.stdout.includes("[3/5]"), r.stdout);
          strictEqual(await Deno.readTextFile(installed).catch(() => undefined), before);
          ok(!(await exists(`${dir}/keys/known_hosts`)), "the impostor's key is not kept");
          ok(!(await exists(`${dir}/sshsendmail.conf`)));
          record(SECTION, "setup against an impostor's host key (--fingerprint)", "refused");
          strictEqual(
            (await Deno.readTextFile(relay.log)).split("Accepted publickey").length,
            logins,
            "no login happened",
          );
        },
      );
      await t.step("positive control: the relay's own fingerprint installs the key", async () => {
        const r = await setup(real);
        strictEqual(r.code, 0, r.stdout + r.stderr);
        match(r.stdout, /matches --fingerprint/);
        match(r.stdout, /\[3\/5\] authorized_keys line added/);
        record(SECTION, "setup with the relay's own --fingerprint", "delivered");
        ok((await Deno.readTextFile(installed)).includes("--require-integrity"));
      });
    } finally {
      if (original !== undefined) await Deno.writeTextFile(installed, original);
      else await Deno.remove(installed).catch(() => {});
      await relay.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("setup: --allow-sender values the forced command cannot carry are refused before anything is written", async (t) => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-setupv-" });
  const args = (sender: string) => [
    "setup",
    "--host",
    "rsendmail@127.0.0.1",
    "--port",
    "1",
    "--identity",
    `${dir}/keys/id_ed25519`,
    "--known-hosts",
    `${dir}/keys/known_hosts`,
    `--allow-sender=${sender}`,
  ];
  try {
    for (
      const [name, sender] of [
        ["a quote (the shell could not parse the line)", "o'brien@example.net"],
        ["a leading dash (the relay would read an option)", "-X/tmp/log"],
        ["a space", "a b@example.net"],
        ["a double quote (ends authorized_keys' command=)", 'a"b@example.net'],
      ]
    ) {
      await t.step(`refuses ${name}`, async () => {
        const r = await run(SSHSENDMAIL, args(sender!), { check: false });
        ok(r.code !== 0, r.stdout);
        match(r.stderr, /setup: .*(cannot be carried|the relay would refuse)/);
        ok(!(await exists(`${dir}/keys`)), "nothing written");
        record(SECTION, `setup --allow-sender with ${name}`, "refused");
      });
    }
    await t.step(
      "positive control: @example.net passes the check (then fails to connect)",
      async () => {
        const r = await run(SSHSENDMAIL, args("@example.net"), { check: false });
        ok(!/cannot be carried|would refuse/.test(r.stderr), r.stderr);
        match(r.stdout, /\[1\/5\] key: created/);
        record(SECTION, "setup --allow-sender @example.net", "delivered");
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
