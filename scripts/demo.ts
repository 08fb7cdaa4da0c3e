/**
 * `deno task demo`: the whole path on loopback, from nothing. Builds the two
 * programs, starts a throwaway sshd on 127.0.0.1 whose only key is
 * `restrict,command="rsendmail"`, starts Postfix as the relay's MTA, sends a
 * message with sshsendmail as a satellite would, then shows what a stolen key
 * can (send mail) and cannot (anything else) do, and where the mail landed.
 * Needs root (it creates the relay and mailbox accounts).
 *
 * @module
 */

import {
  clearMailbox,
  run,
  startPostfix,
  startRelay,
  startSyslog,
  takeMail,
} from "../tests/e2e/_bed.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const say = (text: string) => console.log(text);

say("1. building dist/rsendmail and dist/sshsendmail");
await run(Deno.execPath(), ["task", "-q", "build"], { env: { NO_COLOR: "1" } });

say("2. starting a relay on loopback: sshd, Postfix, syslog");
const syslog = await startSyslog();
const postfix = await startPostfix();
const relay = await startRelay();
const box = postfix.mailbox("demo");
await clearMailbox(box);
const forced = `restrict,command="${root}/dist/rsendmail --label demo"`;
const key = await relay.addKey(forced);
say(`   sshd on ${relay.host}:${relay.port}, key restricted to: ${forced}`);

const dir = await Deno.makeTempDir({ prefix: "rsendmail-demo-" });
const conf = `${dir}/sshsendmail.conf`;
await Deno.writeTextFile(
  conf,
  [
    `host = ${relay.user}@${relay.host}`,
    `port = ${relay.port}`,
    `identity = ${key}`,
    `known_hosts = ${relay.knownHosts}`,
    "",
  ].join("\n"),
);
say(`3. sending a message as a satellite: sshsendmail -i demo@${postfix.domain}`);
const message = [
  "From: Demo <demo@satellite.test>",
  `To: demo@${postfix.domain}`,
  "Subject: hello through rsendmail",
  "",
  "This line is followed by a lone dot, which upstream 1.1.4 truncated at:",
  ".",
  "and this line still arrives.",
  "",
].join("\n");
const sent = await run(`${root}/dist/sshsendmail`, [
  "-i",
  "-f",
  "demo@satellite.test",
  `demo@${postfix.domain}`,
], { stdin: message, check: false, env: { SSHSENDMAIL_CONFIG: conf } });
say(
  `   exit ${sent.code}, stdout ${JSON.stringify(sent.stdout)}, stderr ${
    JSON.stringify(sent.stderr)
  }`,
);

say("4. what else that key can do:");
for (const words of [["sendmail", "-bp"], ["sh", "-c", "id"], ["sendmail", "-C/tmp", "root"]]) {
  const [ssh, ...args] = relay.sshArgv(key);
  const r = await run(ssh!, [...args, words.join(" ")], { check: false });
  say(`   ssh relay ${words.join(" ")}  ->  exit ${r.code}: ${r.stderr.trim()}`);
}
const [ssh, ...args] = relay.sshArgv(key);
const shell = await run(ssh!, args, { check: false, stdin: "id\n" });
say(`   ssh relay (a shell)  ->  exit ${shell.code}: ${shell.stderr.trim()}`);

const mail = new TextDecoder().decode(await takeMail(box));
say(`5. delivered into ${box.dir}/new:`);
say(mail.split("\n").map((l) => `   | ${l}`).join("\n"));
const logLines = await syslog.waitForLine(/event=sent .*label=demo/).catch(() => []);
say("6. the relay's syslog line:");
for (const l of logLines.filter((l) => l.includes("rsendmail"))) say(`   ${l}`);

await relay.stop();
await syslog.stop();
await Deno.remove(dir, { recursive: true });
say(
  `done: sshd and syslog stopped; Postfix (system instance) left running for a look: postfix stop`,
);
Deno.exit(sent.code === 0 && mail.includes("still arrives") ? 0 : 1);
