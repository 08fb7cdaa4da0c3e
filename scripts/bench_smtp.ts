/**
 * Section 4 of `deno task bench`, SMTP mode (the sshd of section 2):
 * `--smtp N` messages in one `sshsendmail -bs -i` session (one client
 * process whose messages share one ssh session, the relay in `--batch`
 * mode), driven like a PHP mailer (a reply awaited per message,
 * MAIL/RCPT/DATA pipelined) and with the whole dialogue written at once
 * (tests/e2e/_smtp.ts's `smtpSession`), `--smtp-runs N` sessions each; vs N
 * sequential command-line sends `sshsendmail -i -f … rcpt`, cold and with
 * `reuse = yes` (ControlPersist master opened by an untimed send first).
 * Per-message time = wall / N; target: the session ≥ 5× faster per
 * message. The relay's peak RSS per forced command (`/usr/bin/time -a`).
 *
 * @module
 */

import { run } from "../tests/e2e/_bed.ts";
import { parseReplies, type Reply, smtpSession } from "../tests/e2e/_smtp.ts";
import type { SshBed } from "./bench_ssh_bed.ts";
import {
  BENCH_USER,
  countFiles,
  decoder,
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  done,
  encoder,
  makeMessage,
  type Options,
  progress,
  readRssKiB,
  type SectionResult,
  SENDER,
  tagOf,
  TIME,
} from "./bench_common.ts";
import { type Sample, timeOnce } from "./bench_run.ts";
import { type SeqPass, smtpReport, type SmtpSession } from "./bench_smtp_report.ts";
import type { MailGroup } from "./bench_delivery.ts";

/** A message as DATA: CRLF line ends, dot-stuffed, ended by the lone dot. */
function dataSection(message: Uint8Array): string {
  const lines = decoder.decode(message).split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.map((l) => (l.startsWith(".") ? `.${l}` : l)).join("\r\n") + "\r\n.\r\n";
}

/** Complete replies from a child's stdout as they come (parsed by _smtp.ts). */
class ReplyStream {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf = "";
  #ready: Reply[] = [];
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }
  async next(): Promise<Reply | undefined> {
    while (this.#ready.length === 0) {
      const ends = [...this.#buf.matchAll(/^\d{3} [^\r\n]*\r\n/gm)];
      const last = ends[ends.length - 1];
      if (last !== undefined) {
        const end = last.index + last[0].length;
        this.#ready.push(...parseReplies(this.#buf.slice(0, end)));
        this.#buf = this.#buf.slice(end);
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#buf += decoder.decode(value, { stream: true });
    }
    return this.#ready.shift();
  }
}

/** A reply awaited per message: MAIL/RCPT/DATA pipelined, then the message. */
async function stepSession(
  argv: string[],
  env: Record<string, string>,
  messages: Uint8Array[],
  rcpt: string,
) {
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const w = child.stdin.getWriter();
  const replies = new ReplyStream(child.stdout);
  const finals: string[] = [];
  try {
    await replies.next();
    await w.write(encoder.encode("EHLO bench.relay.test\r\n"));
    await replies.next();
    for (const m of messages) {
      await w.write(encoder.encode(`MAIL FROM:<${SENDER}>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`));
      const codes = [];
      for (let k = 0; k < 3; k++) codes.push((await replies.next())?.code);
      if (codes.join(" ") !== "250 250 354") {
        finals.push(`refused: ${codes.join(" ")}`);
        await w.write(encoder.encode("RSET\r\n"));
        await replies.next();
        continue;
      }
      await w.write(encoder.encode(dataSection(m)));
      const r = await replies.next();
      finals.push(r === undefined ? "(no reply)" : `${r.code} ${r.lines.join(" ")}`);
    }
    await w.write(encoder.encode("QUIT\r\n"));
    await w.close();
    while (await replies.next() !== undefined);
  } catch {
    // the client died early: its status tells
  }
  return { code: (await child.status).code, finals };
}

/** Every peak RSS line `/usr/bin/time -a -f %M -o FILE` appended (KiB). */
async function readRssAllKiB(file: string): Promise<number[]> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.split("\n").filter((l) => /^\d+$/.test(l)).map(Number).sort((a, b) => a - b);
}

export async function benchSmtp(
  o: Options,
  runId: string,
  rcpt: string,
  bed: SshBed,
): Promise<SectionResult> {
  const { relay, asBench } = bed;
  const n = o.smtpN;
  const dir = await Deno.makeTempDir({ prefix: "rsm-bench-smtp-" });
  await run("/usr/bin/chown", [`${BENCH_USER}:`, dir]);
  const relayDir = await Deno.makeTempDir({ prefix: "rsm-bench-smtprss-" });
  await run("/usr/bin/chown", [`${relay.user}:`, relayDir]);
  await Deno.chmod(relayDir, 0o755);
  // Every variant's forced command appends the relay's peak RSS to its own file.
  const variant = async (name: string, reuse: boolean) => {
    const key = await relay.addKey(
      `restrict,command="${TIME} -a -f %M -o ${relayDir}/${name} ${DIST_RSENDMAIL} --state-dir ${relay.stateDir}"`,
      BENCH_USER,
    );
    const conf = `${dir}/${name}.conf`;
    await Deno.writeTextFile(
      conf,
      [
        "# written by scripts/bench_smtp.ts",
        `host = ${relay.host}`,
        `user = ${relay.user}`,
        `port = ${relay.port}`,
        `identity = ${key}`,
        `known_hosts = ${relay.knownHosts}`,
        "queue = no", // one batch session per SMTP session (direct -bs)
        `reuse = ${reuse ? "yes" : "no"}`,
        "",
      ].join("\n"),
    );
    await run("/usr/bin/chown", [`${BENCH_USER}:`, conf]);
    return { name, conf, queueDir: `${dir}/queue-${name}` };
  };
  const msg = (id: string, i: number) => makeMessage(1024, tagOf(runId, "smtp", id, i), rcpt);
  const findings: string[] = [];
  try {
    await bed.closeMasters();
    const vSession = await variant("smtp", false);
    const vCold = await variant("seq-cold", false);
    const vWarm = await variant("seq-warm", true);
    const sessions: SmtpSession[] = [];
    const sessionRun = async (mode: "step" | "full", r: number) => {
      await progress(`smtp: ${n}-message -bs session (${mode}), run ${r + 1}/${o.smtpRuns}`);
      const messages = Array.from({ length: n }, (_, i) => msg(`smtp-${mode}`, r * n + i));
      const clientRss = `${dir}/client-${mode}-${r}`;
      const spec = asBench(
        TIME,
        ["-f", "%M", "-o", clientRss, DIST_SSHSENDMAIL, "-bs", "-i"],
        undefined,
        {
          SSHSENDMAIL_CONFIG: vSession.conf,
        },
      );
      const argv = [spec.cmd, ...spec.args];
      const t0 = performance.now();
      let finals: string[];
      let code: number;
      if (mode === "step") ({ code, finals } = await stepSession(argv, spec.env, messages, rcpt));
      else {
        const input = `EHLO bench.relay.test\r\n${
          messages.map((m) =>
            `MAIL FROM:<${SENDER}>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n${dataSection(m)}`
          )
            .join("")
        }QUIT\r\n`;
        const res = await smtpSession(argv, input, spec.env).catch(() => undefined);
        code = res?.code ?? -1;
        // greeting, EHLO, then per message MAIL, RCPT, DATA, final dot; QUIT.
        finals = Array.from({ length: n }, (_, i) => res?.replies[2 + i * 4 + 3])
          .map((r) => (r === undefined ? "(no reply)" : `${r.code} ${r.lines.join(" ")}`));
      }
      const ms = performance.now() - t0;
      const sent = finals.filter((f) => /^250 .*\bsent as\b/.test(f)).length;
      if (code !== 0 || sent !== n) {
        findings.push(
          `smtp -bs (${mode}): exit ${code}, ${sent}/${n} relayed, e.g. ${
            finals.find((f) => !/sent as/.test(f))
          }`,
        );
      }
      sessions.push({ mode, ms, sent, clientKiB: await readRssKiB(clientRss) });
    };
    const sequential = async (v: { conf: string }, id: string) => {
      const samples: Sample[] = [];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        if (i % 10 === 0) await progress(`smtp: ${id}, ${i}/${n}`);
        samples.push(
          await timeOnce(asBench(DIST_SSHSENDMAIL, ["-i", "-f", SENDER, "--", rcpt], msg(id, i), {
            SSHSENDMAIL_CONFIG: v.conf,
          })),
        );
      }
      return { id, samples, wallMs: performance.now() - t0 };
    };
    // Round-robin, so that drift in the load hits sessions and sequential sends alike.
    const seqs: SeqPass[] = [];
    let opener: Sample | undefined;
    for (let r = 0; r < o.smtpRuns; r++) {
      await sessionRun("step", r);
      await sessionRun("full", r);
      if (r === 0) seqs.push(await sequential(vCold, "seq-cold"));
      if (r === 1 || (r === 0 && o.smtpRuns === 1)) {
        // Warm-up send (untimed, not counted): opens the ControlPersist master.
        opener = await timeOnce(
          asBench(DIST_SSHSENDMAIL, ["-i", "-f", SENDER, "--", rcpt], msg("seq-warm-open", 0), {
            SSHSENDMAIL_CONFIG: vWarm.conf,
          }),
        );
        seqs.push(await sequential(vWarm, "seq-warm"));
      }
    }
    await bed.closeMasters();
    await done("smtp: done");

    // Mail accounting.
    const groups: MailGroup[] = [];
    for (const mode of ["step", "full"] as const) {
      const runs = sessions.filter((s) => s.mode === mode);
      groups.push({
        id: `smtp.smtp-${mode}`,
        label:
          `smtp.smtp-${mode}: ${runs.length} \`-bs\` sessions of ${n} (non-zero = no \`250 … sent as\`)`,
        sent: runs.length * n,
        failed: runs.reduce((a, s) => a + (n - s.sent), 0),
      });
    }
    for (const s of seqs) {
      const queued = await countFiles(`${(s.id === "seq-cold" ? vCold : vWarm).queueDir}/new`);
      const bad = s.samples.filter((x) => x.code !== 0);
      groups.push({
        id: `smtp.${s.id}`,
        label: `smtp.${s.id}: ${n} command-line sends`,
        sent: n,
        failed: bad.length + queued,
      });
      if (bad.length > 0 || queued > 0) {
        findings.push(
          `smtp ${s.id}: ${bad.length} sends exited non-zero, ${queued} queued` +
            (bad[0] ? ` (exit ${bad[0].code}: ${bad[0].stderr.trim().split("\n")[0]})` : ""),
        );
      }
    }
    if (opener !== undefined) {
      groups.push({
        id: "smtp.seq-warm-open",
        label: "smtp.seq-warm-open: untimed send that opens the master",
        sent: 1,
        failed: opener.code === 0 ? 0 : 1,
      });
    }

    // Report.
    const { text, goals } = smtpReport(o, sessions, seqs, {
      smtp: await readRssAllKiB(`${relayDir}/smtp`),
      seqCold: await readRssAllKiB(`${relayDir}/seq-cold`),
      seqWarm: await readRssAllKiB(`${relayDir}/seq-warm`),
    });
    for (const g of goals) if (!g.met) findings.push(`${g.what}: ${g.measured} (goal ${g.goal})`);
    return { key: "smtp", text, groups, goals, findings };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(relayDir, { recursive: true }).catch(() => {});
  }
}
