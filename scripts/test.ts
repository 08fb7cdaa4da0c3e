/**
 * `deno task test`: builds the artefacts, runs the unit tests with no
 * permissions at all, the integration tier against dist/ (fake ssh,
 * recording sendmail, user namespaces; no root: tests/integration/), then
 * the end-to-end tests (real sshd, Postfix, rsyslog, nullmailer and
 * senders; root needed) against dist/, and prints one closing line
 * `N passed, N failed`.
 *
 * Arguments narrow the end-to-end run (and skip the unit and integration
 * tiers): `deno task test tests/e2e/server_test.ts`.
 *
 * @module
 */

const deno = Deno.execPath();

interface Outcome {
  passed: number;
  failed: number;
}

/** Reads deno test's summary line(s): `ok | 3 passed (4 steps) | 0 failed (1 step)`. */
export function parseSummary(text: string): Outcome {
  // deno-lint-ignore no-control-regex
  const plain = text.replace(/\x1b\[[0-9;]*m/g, "");
  const out = { passed: 0, failed: 0 };
  for (const m of plain.matchAll(/^(?:ok|FAILED) \| (.*)$/gm)) {
    const body = m[1]!;
    const p = /(\d+) passed(?: \((\d+) steps?\))?/.exec(body);
    const f = /(\d+) failed(?: \((\d+) steps?\))?/.exec(body);
    out.passed += Number(p?.[1] ?? 0) + Number(p?.[2] ?? 0);
    out.failed += Number(f?.[1] ?? 0) + Number(f?.[2] ?? 0);
  }
  return out;
}

async function step(name: string, args: string[]): Promise<Outcome & { ok: boolean }> {
  console.log(`\n== ${name}: deno ${args.join(" ")}`);
  const child = new Deno.Command(deno, { args, stdout: "piped", stderr: "inherit" }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    const s = decoder.decode(chunk, { stream: true });
    text += s;
    await Deno.stdout.write(chunk);
  }
  const status = await child.status;
  const outcome = parseSummary(text);
  if (!status.success && outcome.failed === 0) outcome.failed = 1;
  return { ...outcome, ok: status.success };
}

async function main(): Promise<number> {
  const total = { passed: 0, failed: 0 };
  const add = (o: Outcome) => {
    total.passed += o.passed;
    total.failed += o.failed;
  };
  const build = await step("build", [
    "run",
    "--allow-read=.",
    "--allow-write=dist",
    `--allow-run=${deno},/bin/ln`,
    "--allow-env",
    "scripts/build.ts",
  ]);
  if (!build.ok) {
    console.log(`\n0 passed, 1 failed`);
    return 1;
  }
  const e2eFiles = Deno.args.length > 0 ? Deno.args : ["tests/e2e/"];
  if (Deno.args.length === 0) {
    add(
      await step("unit (no permissions)", ["test", "--no-prompt", "--doc", "lib/", "tests/unit/"]),
    );
    // The same flags as `deno task test:int` in deno.json.
    add(
      await step("integration (built artefacts, fake ssh, recording sendmail; no root)", [
        "test",
        "--no-prompt",
        "--allow-run=/usr/bin/unshare",
        "--allow-read",
        "--allow-write=/tmp",
        "--allow-net",
        "tests/integration/",
      ]),
    );
  }
  add(
    await step("end-to-end (built artefacts, real servers)", [
      "test",
      "--no-prompt",
      "--allow-run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--allow-sys",
      ...e2eFiles,
    ]),
  );
  console.log(`\n${total.passed} passed, ${total.failed} failed`);
  return total.failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
