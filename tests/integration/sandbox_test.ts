/**
 * What each built program may spawn. A probe is written with the bundle's
 * own first line (the same Deno, launcher and permission flags, byte for
 * byte) and tries to spawn every path given; inside the case's namespace
 * (recording sendmail on /usr/sbin/sendmail, fake ssh on /usr/bin/ssh) the
 * allowed paths must start (positive control: the fakes record the call)
 * and every other path must fail with NotCapable: a shell, env, the
 * interpreter itself (which could run anything with -A), the other
 * program's binary, and the very fake that is mounted on the allowed path,
 * under its own name.
 *
 * The behaviour beside it, that the relay's `--sendmail` cannot point
 * anywhere else, is a row of relay_cases.jsonc.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Bed, interpreterOf, RSENDMAIL, runInNamespace, SSHSENDMAIL } from "./_harness.ts";

/** Spawns each argument; prints {path: "spawned" | error name}. Plain JS (the bundles run --ext=js). */
const PROBE = `
const result = {};
for (const path of Deno.args) {
  try {
    new Deno.Command(path, {
      args: ["--version"],
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).outputSync();
    result[path] = "spawned";
  } catch (err) {
    result[path] = err?.name ?? String(err);
  }
}
console.log(JSON.stringify(result));
`;

/** Runs a probe with `bundle`'s first line and returns what each path did. */
async function probe(
  bed: Bed,
  bundle: string,
  paths: (dir: string) => string[],
): Promise<{ dir: string; result: Record<string, string> }> {
  const dir = await bed.caseDir();
  const text = await Deno.readTextFile(bundle);
  const shebang = text.slice(0, text.indexOf("\n"));
  const path = `${dir}/probe`;
  await Deno.writeTextFile(path, `${shebang}\n${PROBE}`);
  await Deno.writeTextFile(`${dir}/relay.args`, "");
  // Started as the kernel starts a #! file (/tmp may be noexec): the
  // interpreter, the rest of the first line as one word, the file, its arguments.
  const [interpreter, rest] = [
    shebang.slice(2, shebang.indexOf(" ")),
    shebang.slice(shebang.indexOf(" ") + 1),
  ];
  const out = await runInNamespace(dir, [interpreter, rest, path, ...paths(dir)]);
  assert.equal(out.code, 0, `probe failed: ${out.stderr}`);
  return { dir, result: JSON.parse(out.stdout) };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("dist/rsendmail may spawn /usr/sbin/sendmail and logger(1), nothing else", async () => {
  const bed = await Bed.open();
  try {
    const deno = await interpreterOf(RSENDMAIL);
    const { dir, result } = await probe(bed, RSENDMAIL, (dir) => [
      "/usr/sbin/sendmail",
      "/usr/bin/logger",
      "/bin/sh",
      "/usr/bin/env",
      "/usr/bin/ssh",
      "/bin/cat",
      deno,
      SSHSENDMAIL,
      `${dir}/fake_sendmail.sh`,
    ]);
    assert.deepEqual(result, {
      "/usr/sbin/sendmail": "spawned",
      "/usr/bin/logger": "spawned",
      "/bin/sh": "NotCapable",
      "/usr/bin/env": "NotCapable",
      "/usr/bin/ssh": "NotCapable",
      "/bin/cat": "NotCapable",
      [deno]: "NotCapable",
      [SSHSENDMAIL]: "NotCapable",
      [`${dir}/fake_sendmail.sh`]: "NotCapable",
    });
    // Positive control: "spawned" really ran the recording sendmail, once.
    assert.ok(await exists(`${dir}/sendmail.1.argv`), "the recording sendmail did not run");
    assert.ok(!await exists(`${dir}/sendmail.2.argv`), "the recording sendmail ran twice");
    assert.ok(!await exists(`${dir}/ssh.1.argv`), "the fake ssh ran");
  } finally {
    await bed.close();
  }
});

Deno.test("dist/sshsendmail may spawn /usr/bin/ssh, cat and logger(1), nothing else", async () => {
  const bed = await Bed.open();
  try {
    const deno = await interpreterOf(SSHSENDMAIL);
    const { dir, result } = await probe(bed, SSHSENDMAIL, (dir) => [
      "/usr/bin/ssh",
      "/bin/cat",
      "/usr/bin/logger",
      "/usr/sbin/sendmail",
      "/bin/sh",
      "/usr/bin/env",
      deno,
      RSENDMAIL,
      `${dir}/fake_ssh.sh`,
    ]);
    assert.deepEqual(result, {
      "/usr/bin/ssh": "spawned",
      "/bin/cat": "spawned",
      "/usr/bin/logger": "spawned",
      "/usr/sbin/sendmail": "NotCapable",
      "/bin/sh": "NotCapable",
      "/usr/bin/env": "NotCapable",
      [deno]: "NotCapable",
      [RSENDMAIL]: "NotCapable",
      [`${dir}/fake_ssh.sh`]: "NotCapable",
    });
    assert.ok(await exists(`${dir}/ssh.1.argv`), "the fake ssh did not run");
    assert.ok(!await exists(`${dir}/ssh.2.argv`), "the fake ssh ran twice");
    assert.ok(!await exists(`${dir}/sendmail.1.argv`), "the recording sendmail ran");
  } finally {
    await bed.close();
  }
});

Deno.test("the namespace's mounts never reach the host", async () => {
  const paths = ["/usr/sbin/sendmail", "/usr/bin/ssh"];
  const identity = async (path: string) => {
    const info = await Deno.stat(path).catch(() => undefined);
    return info && `${info.dev}:${info.ino}:${info.size}`;
  };
  const before = await Promise.all(paths.map(identity));
  const bed = await Bed.open();
  try {
    const dir = await bed.caseDir();
    await Deno.writeTextFile(`${dir}/relay.args`, "");
    // Inside: the fakes are mounted (positive control).
    const inside = await runInNamespace(dir, [
      "/usr/bin/cmp",
      `${dir}/fake_ssh.sh`,
      "/usr/bin/ssh",
    ]);
    assert.equal(inside.code, 0, `the fake ssh is not on /usr/bin/ssh inside: ${inside.stderr}`);
  } finally {
    await bed.close();
  }
  assert.deepEqual(await Promise.all(paths.map(identity)), before);
});
