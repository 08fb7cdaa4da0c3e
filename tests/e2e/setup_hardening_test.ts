/**
 * `sshsendmail setup` under attack (issue 12): a relay whose host key is
 * not the one the admin was told is refused before any login, and policy
 * values the forced command cannot carry are refused before anything is
 * written. Each beside its positive control.
 *
 * @module
 */

import { match, ok, strictEqual } from "node:assert/strict";
import { run, startRelay } from "./_bed.ts";

const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const client = `${root}/dist/sshsendmail`;

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

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
      run(client, [
        "setup",
        "--host",
        `${relay.user}@${relay.host}`,
        "--port",
        String(relay.port),
        "--identity",
        `${dir}/keys/id_ed25519`,
        "--known-hosts",
        `${dir}/keys/known_hosts`,
        "--rsendmail",
        `${root}/dist/rsendmail`,
        "--fingerprint",
        fingerprint,
        "--install-with",
        relay.user,
        "--admin-identity",
        admin,
      ], { check: false, env });
    try {
      await t.step(
        "an impostor's key (wrong fingerprint): refused, nothing installed or kept",
        async () => {
          const before = await Deno.readTextFile(installed);
          const logins = (await Deno.readTextFile(relay.log)).split("Accepted publickey").length;
          const r = await setup("SHA256:" + "A".repeat(43));
          strictEqual(r.code, 77, r.stdout + r.stderr);
          match(r.stderr, /5\.7\.0 sshsendmail: setup: the relay's host key is not the one given/);
          ok(!r.stdout.includes("[3/5]"), r.stdout);
          strictEqual(await Deno.readTextFile(installed), before);
          ok(!(await exists(`${dir}/keys/known_hosts`)), "the impostor's key is not kept");
          ok(!(await exists(`${dir}/sshsendmail.conf`)));
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
        ok((await Deno.readTextFile(installed)).includes("--require-integrity"));
      });
    } finally {
      if (original !== undefined) await Deno.writeTextFile(installed, original);
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
        const r = await run(client, args(sender!), { check: false });
        ok(r.code !== 0, r.stdout);
        match(r.stderr, /setup: .*(cannot be carried|the relay would refuse)/);
        ok(!(await exists(`${dir}/keys`)), "nothing written");
      });
    }
    await t.step(
      "positive control: @example.net passes the check (then fails to connect)",
      async () => {
        const r = await run(client, args("@example.net"), { check: false });
        ok(!/cannot be carried|would refuse/.test(r.stderr), r.stderr);
        match(r.stdout, /\[1\/5\] key: created/);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
