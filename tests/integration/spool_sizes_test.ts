/**
 * Messages past the first read buffer, through the BUILT dist/rsendmail and
 * dist/sshsendmail: up to 4 MiB each holds a message in memory and hashes it
 * with the native digest; past that it spools to an unlinked file in /tmp,
 * hashing as it reads. Either way sendmail gets every byte, the SHA-256 the
 * client declares is that of all of them and the relay checks it, and a
 * byte changed in transit is refused.
 *
 * @module
 */

import { assertOutcome, Bed, type Case } from "./_harness.ts";

/** A message of exactly `size` bytes, lines of 76, with an `a` on each (the corrupting ssh's target). */
function message(size: number): string {
  const head = `Subject: ${size} bytes\n\n`;
  const line = "a".padEnd(75, "x") + "\n";
  const body = line.repeat(Math.ceil((size - head.length) / line.length));
  return (head + body).slice(0, size - 1) + "\n";
}

const SIZES = [
  ["1 MiB (held in memory)", 1 << 20],
  ["4 MiB less one byte (the most held in memory)", (4 << 20) - 1],
  ["5 MiB (spooled to a file)", 5 << 20],
] as const;

for (const [name, size] of SIZES) {
  Deno.test(`relay: a message of ${name} reaches sendmail whole, its SHA-256 checked`, async (t) => {
    const stdin = message(size);
    const bed = await Bed.open();
    try {
      const ok: Case = {
        request: "sendmail --size={{size}} --sha256={{sha256}} -- b@example.org",
        stdin,
        exitCode: 0,
        stderr: "",
        sendmail: [{ argv: ["/usr/sbin/sendmail", "-oi", "--", "b@example.org"], stdin }],
      };
      await t.step("delivered whole", async () => {
        const { c, outcome } = await bed.run(ok);
        assertOutcome(c, outcome);
      });
      await t.step("bytes changed in transit: refused (65, 5.6.0), nothing delivered", async () => {
        const { c, outcome } = await bed.run({
          ...ok,
          fakeSsh: { corrupt: true },
          exitCode: 65,
          stderr: "5.6.0 rsendmail: message does not match its SHA-256\n",
          sendmail: [],
        });
        assertOutcome(c, outcome);
      });
    } finally {
      await bed.close();
    }
  });
}

for (const [name, size] of SIZES) {
  Deno.test(`client (Postfix pipe): a message of ${name} is framed with its size and SHA-256 and delivered whole`, async () => {
    const stdin = message(size);
    const bed = await Bed.open();
    try {
      const { c, outcome } = await bed.run({
        args: ["--host", "relay.example", "--", "b@example.org"],
        stdin,
        exitCode: 0,
        stderr: "",
        ssh: [{
          command: "rsendmail --batch",
          stdin: "MSG -oi --size={{size}} --sha256={{sha256}} --id=m[WILDLINE] -- b@example.org\n" +
            "[WILDCARD]",
        }],
        sendmail: [{ argv: ["/usr/sbin/sendmail", "-oi", "--", "b@example.org"], stdin }],
      });
      assertOutcome(c, outcome);
    } finally {
      await bed.close();
    }
  });
}
