/**
 * Adversarial suite, part 4: the client (standalone sshsendmail) under
 * attack. A relay whose host key changed, a relay that answers garbage on
 * stdout and stderr (a test-only forced command script) and exits 0, 1 or
 * 77, and a relay that accepts and then hangs (the client gives up after
 * `ssh_timeout`). With `queue = no` the client defers (75) and says why in
 * exactly one line; with the offline queue the message is queued, `--list`
 * shows it, and a flush to a good relay delivers each exactly once.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Mailbox, type Relay, run, type RunResult, startPostfix, startRelay } from "./_bed.ts";
import { parseMessage, takeByToken } from "./_standalone.ts";
import { attempt } from "./_attack_table.ts";
import { CLIENT_LINE, RSENDMAIL, SSHSENDMAIL } from "./_adversarial_bed.ts";

const SECTION = "5. the client under attack";
const RUN = crypto.randomUUID().slice(0, 8);
const RCPT = "rsmadv4@relay.test";
const tokenOf = (what: string) => `adv4-${what}-${crypto.randomUUID().slice(0, 10)}`;

let relay: Relay | undefined;
let scripts: string | undefined;
let dir: string | undefined;

const GARBAGE = `#!/bin/sh
# Test scaffolding: a "relay" that reads the message and answers junk.
cat >/dev/null
printf '220 relay.example ESMTP ready\\r\\n\\033[31mHACKED\\033[0m\\n'
printf 'junk \\033]0;title\\007 line\\nmore junk\\n' >&2
exit "$1"
`;
const HANG = `#!/bin/sh
# Test scaffolding: a "relay" that accepts, reads everything, then hangs (15 s at most).
exec timeout 15 sh -c 'cat >/dev/null; sleep 15'
`;

Deno.test("adversarial 4: the client under a changed host key, garbage and a hanging relay", async (t) => {
  try {
    const postfix = await startPostfix();
    const box: Mailbox = postfix.mailbox("rsmadv4");
    relay = await startRelay();
    scripts = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-adv-cli-" });
    dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-adv-cli-" });
    await Deno.chmod(scripts, 0o755);
    await Deno.writeTextFile(`${scripts}/garbage.sh`, GARBAGE, { mode: 0o755 });
    await Deno.writeTextFile(`${scripts}/hang.sh`, HANG, { mode: 0o755 });
    await Deno.chmod(`${scripts}/garbage.sh`, 0o755);
    await Deno.chmod(`${scripts}/hang.sh`, 0o755);

    const good = await relay.addKey(`restrict,command="${RSENDMAIL} --label cli-${RUN}"`);
    const garbage = new Map<number, string>();
    for (const code of [0, 1, 77]) {
      garbage.set(code, await relay.addKey(`restrict,command="${scripts}/garbage.sh ${code}"`));
    }
    const hang = await relay.addKey(`restrict,command="${scripts}/hang.sh"`);
    // A known_hosts that names another key for this relay: a changed host key.
    await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/other_host`]);
    const otherPub = (await Deno.readTextFile(`${dir}/other_host.pub`)).trim().split(" ");
    const changedKnownHosts = `${dir}/changed_known_hosts`;
    await Deno.writeTextFile(
      changedKnownHosts,
      `[127.0.0.1]:${relay.port} ${otherPub[0]} ${otherPub[1]}\n`,
    );

    const queueDir = `${dir}/queue`;
    const conf = async (
      name: string,
      key: string,
      extra: string[],
      knownHosts = relay!.knownHosts,
    ) => {
      const path = `${dir}/${name}.conf`;
      await Deno.writeTextFile(
        path,
        [
          "host = 127.0.0.1",
          `user = ${relay!.user}`,
          `port = ${relay!.port}`,
          `identity = ${key}`,
          `known_hosts = ${knownHosts}`,
          `queue_dir = ${queueDir}`,
          "connect_timeout = 5",
          ...extra,
          "",
        ].join("\n"),
      );
      return path;
    };
    const client = (config: string, args: string[], stdin?: string): Promise<RunResult> =>
      run(SSHSENDMAIL, args, {
        check: false,
        env: { SSHSENDMAIL_CONFIG: config, HOME: dir!, PATH: "/usr/bin:/bin" },
        ...(stdin === undefined ? {} : { stdin }),
      });
    const mail = (tok: string) =>
      `From: adv4 <adv4@relay.test>\nTo: ${RCPT}\nSubject: ${tok}\n\nbody ${tok}\n.\nend\n`;

    const attacks: Array<
      {
        name: string;
        key: string;
        knownHosts?: string;
        extra?: string[];
        code: number;
        line: RegExp;
        maxMs?: number;
      }
    > = [
      {
        name: "relay host key changed",
        key: good,
        knownHosts: changedKnownHosts,
        code: 75,
        line: /^4\.7\.0 sshsendmail: relay host key verification failed/,
      },
      {
        name: "relay answers garbage, exits 0",
        key: garbage.get(0)!,
        code: 75,
        line: /^4\.5\.0 sshsendmail: the relay answered with unexpected output\n$/,
      },
      {
        name: "relay answers garbage, exits 1",
        key: garbage.get(1)!,
        code: 75,
        line: /^4\.3\.0 sshsendmail: relay failed \(exit 1\)\n$/,
      },
      {
        name: "relay answers garbage, exits 77",
        key: garbage.get(77)!,
        code: 77,
        line: /^5\.3\.0 sshsendmail: relay failed \(exit 77\)\n$/,
      },
      {
        name: "relay accepts, then hangs (ssh_timeout = 3)",
        key: hang,
        extra: ["ssh_timeout = 3"],
        code: 75,
        line: /^4\.4\.2 sshsendmail: no answer from the relay within ssh_timeout \(3 s\)\n$/,
        maxMs: 8000,
      },
    ];

    const queued: string[] = [];
    for (const a of attacks) {
      await t.step(`${a.name}: queue = no → ${a.code}, one line`, async () => {
        await attempt(SECTION, a.name, async () => {
          const config = await conf(
            "noqueue",
            a.key,
            ["queue = no", ...(a.extra ?? [])],
            a.knownHosts,
          );
          const tok = tokenOf("noqueue");
          const started = performance.now();
          const res = await client(config, ["-oi", "--", RCPT], mail(tok));
          const ms = performance.now() - started;
          assert.equal(res.code, a.code, res.stderr);
          assert.equal(res.stdout, "");
          assert.match(res.stderr, CLIENT_LINE, `one line: ${JSON.stringify(res.stderr)}`);
          assert.match(res.stderr, a.line);
          assert.doesNotMatch(
            res.stderr,
            // deno-lint-ignore no-control-regex
            /HACKED|junk|\u001b|\u0007/,
            "no relay junk reaches the caller",
          );
          if (a.maxMs) assert.ok(ms < a.maxMs, `gave up after ${Math.round(ms)} ms`);
          return "refused";
        });
      });
      await t.step(`${a.name}: with the offline queue`, async () => {
        await attempt(SECTION, a.name, async () => {
          const config = await conf("queue", a.key, a.extra ?? [], a.knownHosts);
          const tok = tokenOf("queued");
          const res = await client(config, ["-oi", "--", RCPT], mail(tok));
          if (a.code === 75) {
            assert.deepEqual({ code: res.code, out: res.stdout, err: res.stderr }, {
              code: 0,
              out: "",
              err: "",
            });
            queued.push(tok);
          } else {
            assert.equal(res.code, a.code, "a permanent refusal is not queued");
            assert.match(res.stderr, CLIENT_LINE);
          }
          return "refused";
        });
      });
    }

    await t.step(
      "--list shows every deferred message; a flush to a good relay delivers each once",
      async () => {
        const goodConf = await conf("good", good, []);
        const list = await client(goodConf, ["--list"]);
        assert.equal(list.code, 0, list.stderr);
        assert.match(
          list.stdout,
          new RegExp(`-- ${queued.length} messages? in queue`),
          list.stdout,
        );
        const garbageFlush = await client(await conf("garbageflush", garbage.get(0)!, []), [
          "--flush",
        ]);
        assert.notEqual(garbageFlush.code, 0, "a flush to the garbage relay fails");
        const again = await client(goodConf, ["--list"]);
        assert.match(
          again.stdout,
          new RegExp(`-- ${queued.length} messages? in queue`),
          "queue intact",
        );
        const flush = await client(goodConf, ["--flush"]);
        assert.deepEqual({ code: flush.code, err: flush.stderr }, { code: 0, err: "" });
        for (const tok of queued) {
          await attempt(
            SECTION,
            "offline queue after the attacks, flushed to a good relay",
            async () => {
              const got = parseMessage(await takeByToken(box, tok));
              assert.equal(got.body, `body ${tok}\n.\nend\n`);
              return "delivered";
            },
          );
        }
        const empty = await client(goodConf, ["--list"]);
        assert.match(empty.stdout, /Mail queue is empty/);
      },
    );
  } finally {
    await teardown();
  }
});

/** Stops what this file started (also run when a filter skips the rest). */
async function teardown(): Promise<void> {
  const r = relay;
  relay = undefined;
  await r?.stop();
  if (scripts) await Deno.remove(scripts, { recursive: true }).catch(() => {});
  if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  scripts = dir = undefined;
}
