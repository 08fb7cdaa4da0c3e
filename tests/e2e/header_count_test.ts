/**
 * The relay's `-t` recipient count (lib/relay/header_recipients.ts) against the
 * real Postfix 3.7 `sendmail -t -oi`: for every measured fact
 * (tests/fuzz/header_corpus.ts) and for a seeded sample of generated header
 * blocks (tests/fuzz/header_gen.ts), Postfix never extracts more recipients
 * than the relay counts. The fuzzer's reference model
 * (tests/fuzz/postfix_model.ts) must match Postfix exactly on the same
 * messages, so that its million cases a run stand for Postfix too.
 *
 * How Postfix's extraction is recorded: `sendmail -t` itself parses the
 * headers and writes each extracted recipient into the queue file it hands
 * to postdrop (sendmail.c; cleanup only deduplicates and rewrites later).
 * So each message goes through the real /usr/sbin/sendmail and postdrop
 * with `-C` pointing at a private, daemon-less instance (its own main.cf and
 * queue directory in a temp dir, no pickup): the queue files stay in its
 * maildrop, and `postcat` lists their extracted recipients, before any
 * deduplication. The shared Postfix that other suites deliver through is
 * neither reconfigured nor used. `maillog_file` keeps the instance's log
 * lines off /dev/log (the suites' rsyslog).
 *
 * Run (root): `deno task test tests/e2e/header_count_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { countHeaderRecipients, type HeaderCount } from "../../lib/relay/header_recipients.ts";
import { HEADER_FACTS } from "../fuzz/header_corpus.ts";
import { genHeaderMessage } from "../fuzz/header_gen.ts";
import { postfixExtract } from "../fuzz/postfix_model.ts";
import { Rng } from "../fuzz/prng.ts";
import { run } from "./_bed.ts";

const SENDMAIL = "/usr/sbin/sendmail";
const POSTCAT = "/usr/sbin/postcat";
/** Pinned seed of the sample: a failure is rebuilt from (SEED, case index). */
const SEED = 0x4ead;
const SAMPLE = 400;
const CONCURRENCY = 4;

/** What the real sendmail did with one message. */
interface Extracted {
  code: number;
  stderr: string;
  recipients: string[];
}

/** A message given as one character per byte, as bytes. */
function bytesOf(message: string): Uint8Array {
  return Uint8Array.from(message, (c) => c.charCodeAt(0));
}

/** A private Postfix configuration and queue in a temp dir, no daemon. */
async function privateInstance(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "rsm-hdrcount-" });
  await Deno.chmod(dir, 0o755);
  for (const sub of ["queue", "queue/maildrop", "queue/public", "queue/pid"]) {
    await Deno.mkdir(`${dir}/${sub}`);
  }
  await run("/usr/bin/chown", ["postfix:postdrop", `${dir}/queue/maildrop`, `${dir}/queue/public`]);
  await Deno.chmod(`${dir}/queue/maildrop`, 0o1730);
  await Deno.chmod(`${dir}/queue/public`, 0o2710);
  await Deno.writeTextFile(
    `${dir}/main.cf`,
    [
      "compatibility_level = 3.6",
      `queue_directory = ${dir}/queue`,
      `data_directory = ${dir}/data`,
      `maillog_file_prefixes = ${dir}`,
      `maillog_file = ${dir}/maillog`,
      "",
    ].join("\n"),
  );
  await Deno.copyFile("/etc/postfix/master.cf", `${dir}/master.cf`);
  return dir;
}

/** Runs `fn` over `items`, at most `limit` at a time, results in order. */
async function pool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
) {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Submits each message with `sendmail -C dir -t -oi -f case-I@hc.test` and
 * reads the recipients it extracted from the queue files (postcat's
 * "HEADER EXTRACTED" section), keyed back by the envelope sender.
 */
async function extract(dir: string, messages: readonly string[]): Promise<Extracted[]> {
  const runs = await pool(
    messages,
    CONCURRENCY,
    (message, i) =>
      run(SENDMAIL, ["-C", dir, "-t", "-oi", "-f", `case-${i}@hc.test`], {
        stdin: bytesOf(message),
        check: false,
      }),
  );
  const out: Extracted[] = runs.map((r) => ({ code: r.code, stderr: r.stderr, recipients: [] }));
  const files: string[] = [];
  for await (const e of Deno.readDir(`${dir}/queue/maildrop`)) {
    files.push(`${dir}/queue/maildrop/${e.name}`);
  }
  for (let at = 0; at < files.length; at += 100) {
    const chunk = files.slice(at, at + 100);
    const text = (await run(POSTCAT, ["-c", dir, ...chunk])).stdout;
    for (const section of text.split(/^\*\*\* ENVELOPE RECORDS /m).slice(1)) {
      const envelope = section.slice(0, section.indexOf("\n*** MESSAGE CONTENTS "));
      const i = Number(/^sender: case-(\d+)@hc\.test$/m.exec(envelope)?.[1]);
      const start = section.indexOf("\n*** HEADER EXTRACTED ");
      const end = section.indexOf("\n*** MESSAGE FILE END ");
      assert.ok(
        Number.isInteger(i) && start > 0 && end > start,
        `unreadable postcat output:\n${section}`,
      );
      const extracted = section.slice(start, end).split("\n").filter((l) =>
        l.startsWith("recipient: ")
      );
      out[i]!.recipients.push(...extracted.map((l) => l.slice("recipient: ".length)));
    }
    for (const f of chunk) await Deno.remove(f);
  }
  for (const [i, r] of runs.entries()) {
    // sendmail exits 0 and queues the message, or refuses it (75) and queues nothing.
    assert.equal(
      r.code === 0,
      out[i]!.recipients.length > 0,
      `case ${i}: exit ${r.code} ${r.stderr}`,
    );
  }
  return out;
}

const show = (c: HeaderCount) =>
  c.kind === "counted" ? String(c.count) : `uncountable (${c.reason})`;
const bounds = (relay: HeaderCount, postfix: number) =>
  relay.kind === "uncountable" || postfix <= relay.count;

let instance: Promise<string> | undefined;

Deno.test("Postfix sendmail -t extracts what the measured facts say, never more than the relay counts", async (t) => {
  const dir = await (instance ??= privateInstance());
  const got = await extract(dir, HEADER_FACTS.map((f) => f.message));
  for (const [i, f] of HEADER_FACTS.entries()) {
    await t.step(f.name, () => {
      const relay = countHeaderRecipients(f.message);
      assert.equal(
        got[i]!.recipients.length,
        f.postfix,
        `Postfix took ${JSON.stringify(got[i]!.recipients)}`,
      );
      assert.ok(bounds(relay, f.postfix), `relay counts ${show(relay)}, Postfix took ${f.postfix}`);
    });
  }
});

Deno.test(`property: over ${SAMPLE} generated header blocks, Postfix never extracts more than the relay counts`, async (t) => {
  const dir = await (instance ??= privateInstance());
  const messages = Array.from({ length: SAMPLE }, (_, i) => genHeaderMessage(new Rng(SEED, 0, i)));
  const started = performance.now();
  const got = await extract(dir, messages);
  const ms = performance.now() - started;
  const tally: Record<string, number> = {};
  const failures: string[] = [];
  const modelMismatches: string[] = [];
  for (const [i, message] of messages.entries()) {
    const postfix = got[i]!.recipients.length;
    const relay = countHeaderRecipients(message);
    const model = postfixExtract(message);
    const outcome = relay.kind === "uncountable"
      ? "relay refuses (uncountable)"
      : relay.count === postfix
      ? postfix === 0 ? "equal, none" : "equal"
      : "relay counts more";
    tally[outcome] = (tally[outcome] ?? 0) + 1;
    const replay = `case ${i} (seed ${SEED}): ${JSON.stringify(message).slice(0, 500)}`;
    if (!bounds(relay, postfix)) {
      failures.push(
        `${replay}\n  relay ${show(relay)} < Postfix ${postfix}: ${
          JSON.stringify(got[i]!.recipients)
        }`,
      );
    }
    if ((model.kind === "extracted" ? model.count : 0) !== postfix) {
      modelMismatches.push(`${replay}\n  model ${JSON.stringify(model)}, Postfix ${postfix}`);
    }
  }
  console.log(
    `  ${SAMPLE} messages through sendmail -t in ${(ms / 1000).toFixed(1)} s: ${
      Object.entries(tally).sort().map(([k, v]) => `${k} ${v}`).join(", ")
    }`,
  );
  await t.step("Postfix never extracts more recipients than the relay counts", () => {
    assert.deepEqual(failures, []);
  });
  await t.step("positive control: most messages are counted exactly, many with recipients", () => {
    assert.ok((tally["equal"] ?? 0) > SAMPLE / 3, JSON.stringify(tally));
  });
  await t.step("the fuzzer's reference model extracts exactly what Postfix extracts", () => {
    assert.deepEqual(modelMismatches, []);
  });
});

Deno.test("teardown: remove the private Postfix instance", async () => {
  if (instance === undefined) return;
  await Deno.remove(await instance, { recursive: true });
});
