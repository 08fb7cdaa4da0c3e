/**
 * The one source of the manual pages rsendmail(8) and sshsendmail(8):
 * structured sections that scripts/man.ts renders as man(7) roff into
 * dist/man/. The text follows README.md (its "rsendmail(8)" and
 * "sshsendmail(8)" sections and the client's settings); paths come from
 * lib/shared/layout.ts, so the pages name what the code and its sandbox use.
 *
 * Inline markup in every text: `literal` (bold: commands, options, files)
 * and «PLACEHOLDER» (italic: a value to fill in). Nothing else is special;
 * roff escapes are added by the renderer.
 *
 * @module
 */

import {
  CAT_PATH,
  LOGGER_PATH,
  SENDMAIL_PATH,
  SERVER_ENV,
  SERVICE_USER,
  SPOOL_DIR,
  SPOOL_ROOT,
  SSH_PATH,
  STATE_DIR,
} from "../lib/shared/layout.ts";

/** One block of a section's body. */
export type Block =
  /** A filled paragraph. */
  | { p: string }
  /** A tagged paragraph: the term (an option, a code), then its description paragraphs. */
  | { tp: string; body: string[] }
  /** Verbatim lines (commands, files), indented, not filled. */
  | { pre: string }
  /** A bulleted list of filled items. */
  | { list: string[] }
  /** A subsection heading. */
  | { ss: string };

/** A top-level section (`.SH`). */
export interface Section {
  title: string;
  blocks: Block[];
}

/** One manual page. */
export interface Page {
  name: string;
  section: 8;
  /** The NAME line's description, after `name \-`. */
  summary: string;
  sections: Section[];
}

/** The packages' shared name prefix; the pages say where the package puts things. */
export const PACKAGE = "rsendmail-ng";

const seeAlso = (self: string): Section => ({
  title: "SEE ALSO",
  blocks: [{
    p: [
      self === "rsendmail" ? "`sshsendmail`(8)" : "`rsendmail`(8)",
      "`sshd`(8)",
      "`sshd_config`(5)",
      "`ssh`(1)",
      "`ssh-keygen`(1)",
      "`sendmail`(1)",
      "`pipe`(8)",
      "`nullmailer-send`(8)",
      "`logger`(1)",
      "`systemd.service`(5)",
      "`systemd.exec`(5)",
    ].join(", ") + ".",
  }],
});

const rsendmail: Page = {
  name: "rsendmail",
  section: 8,
  summary: "restricted sendmail for an SSH forced command",
  sections: [
    {
      title: "SYNOPSIS",
      blocks: [
        {
          p: '`restrict,command="`/usr/sbin/rsendmail` [`«ADMIN OPTIONS»`]"` «KEY» (a line of the relay account\'s `~/.ssh/authorized_keys`)',
        },
        { p: "`rsendmail` [«ADMIN OPTIONS»] [`sendmail` «REQUEST»…]" },
        { p: "`rsendmail --help` | `--version`" },
      ],
    },
    {
      title: "DESCRIPTION",
      blocks: [
        {
          p: '`rsendmail` runs on a mail relay as the forced command of an SSH key. It accepts only "send this message", refuses everything else with one line and a sysexits code, and hands the message to the real sendmail with an argv it rebuilds itself. No shell, ever. A satellite sends with `sshsendmail`(8); the key can send mail and do nothing else.',
        },
        {
          p: "The request comes from `SSH_ORIGINAL_COMMAND`. Without a forced command (`ssh relay rsendmail -f a@b c@d` with an unrestricted key) the request is the argv after the admin options. No request at all (`ssh relay`) is a usage error at once; stdin is never waited on.",
        },
        {
          p: `stdin is spooled, counted and hashed: a message of less than 4 MiB is held in memory (at most \`--parallel\` + 1 of them in a batch), a larger one goes to a 0600 file in \`${SPOOL_DIR}\` that is unlinked the moment it is created (it cannot linger, even after \`kill -9\`); the size limit and the idle timeout apply while reading; the declared size and SHA-256 are checked; only then does sendmail start, with a cleared environment (\`PATH=/usr/sbin:/usr/bin:/sbin:/bin\`, \`LANG=C\`: no \`MAIL_CONFIG\`, no \`LD_*\`) and the spool on its stdin. The relay runs exactly «SENDMAIL» \`-oi\` [\`-f\` «SENDER»] [\`-t\`] \`--\` «RCPT»…`,
        },
        {
          p: "The request `rsendmail --batch` (sent by the satellite service, `sshsendmail --serve`, by `-bs` sessions and by every direct send) reads framed messages on one connection, each with its envelope, size, SHA-256 and id, and answers each on its own line.",
        },
        {
          p: `Every message may carry an id; the relay records what it delivered per key label (\`${STATE_DIR}/rsendmail-\`«UID»\`/\`«LABEL»\`/\`, kept \`--dedup-days\`) and answers "already delivered" to a repeat, so a connection cut after delivery never sends a message twice. While it delivers an id it holds that id's lock (flock(2) on one of 256 \`.lock-\`«XX» files beside the record, shared by hash), so a retry racing the cut session's relay waits for it; the kernel releases the lock when that relay ends, however it ends, so a relay that was killed holds nothing.`,
        },
      ],
    },
    {
      title: "OPTIONS",
      blocks: [
        {
          p: "Admin options come only from the forced command's argv, never from the peer.",
        },
        {
          tp: "`--sendmail` «PATH»",
          body: [
            `The real sendmail (default \`${SENDMAIL_PATH}\`; the build's permission must grant it).`,
          ],
        },
        {
          tp: "`--allow-sender` «ADDR», `--allow-sender @`«DOMAIN»",
          body: [
            "Repeatable; envelope senders this key may use (`-f`). The null sender and no `-f` (the relay account) stay allowed.",
          ],
        },
        {
          tp: "`--max-size` «BYTES»",
          body: ["Largest message, default 10240000 (Postfix's `message_size_limit`)."],
        },
        {
          tp: "`--max-recipients` «N»",
          body: [
            "Most recipients, default 1000: the command line's and, with `-t`, those sendmail will take from the headers (Postfix's own parser, ported; a header section that cannot be counted with certainty is refused, `5.6.0`).",
          ],
        },
        { tp: "`--label` «NAME»", body: ["Names the key in the log and in the duplicate record."] },
        {
          tp: "`--require-integrity`",
          body: ["Refuse requests without `--size`/`--sha256`."],
        },
        {
          tp: "`--allow-header-sender`",
          body: [
            "Every address in `From:`, `Sender:` and their `Resent-` forms must match `--allow-sender` too (`5.7.1` otherwise). It costs reading the message's head before sendmail runs (the message is spooled first anyway).",
          ],
        },
        {
          tp: "`--max-messages` «N»`/`«PERIOD»",
          body: [
            "At most «N» messages per «PERIOD» (`s`, `min`, `hour`, `day`, optionally with a count: `10/5m`) for this label, counted in the state directory under a lock across concurrent sessions; more are refused for now (`4.7.0`, exit 75), so an honest satellite's queue waits. `sshsendmail setup` writes `200/hour`.",
          ],
        },
        {
          tp: "`--max-sessions` «N»",
          body: [
            "At most «N» concurrent sessions of this label (each idle relay costs about 35 MB); one more is refused for now (`4.7.0`). `sshsendmail setup` writes 4.",
          ],
        },
        {
          tp: "`--message-timeout` «S», `--session-timeout` «S», `--min-rate` «BYTES»",
          body: [
            "Deadlines, not idle times: a message must arrive whole within «S» (default 600), a batch session ends at a frame boundary after «S» (default 3600), and after its first minute a message slower than «BYTES» a second on average (default 256) is cut (`4.4.2`). A peer trickling a byte a minute holds nothing for ever.",
          ],
        },
        {
          tp: "`--parallel` «N»",
          body: [
            "In a batch session, run at most «N» sendmail processes at once (1 to 16, default 4; 1 runs them one after another). Frames are still read, spooled and verified one at a time and answered in their order; a message id is held by one frame at a time, so two frames with the same id (in one batch or in two sessions) never both deliver.",
          ],
        },
        {
          tp: "`--log-level` «LEVEL»",
          body: [
            "`err`, `warning`, `notice`, `info` (default), `debug`; upstream's `--loglevel` is accepted.",
          ],
        },
        {
          tp: "`--idle-timeout` «S», `--sendmail-timeout` «S»",
          body: ["Seconds; default 300 each."],
        },
        {
          tp: "`--dedup-days` «N»",
          body: [
            "How long the duplicate record keeps a message id, default 7. A batch session forgets older ids at most once an hour, after its first reply (a large record costs that session's end, not a message's wait).",
          ],
        },
        {
          tp: "`--syslog-socket` «PATH», `--spool-dir` «DIR», `--state-dir` «DIR»",
          body: [
            "For builds that grant other paths. The state directory is shared (`/var/tmp`): the relay makes `rsendmail-`«UID» and each key's directory in it one level at a time, follows no symlink, and uses them only when they are its own and private. If another account took the name first, messages still go but without the duplicate record (their log lines say `record=unusable`), and a key with `--max-sessions` or `--max-messages` defers (4.3.0) rather than run without its limits.",
          ],
        },
        {
          tp: "`--help`, `--version`",
          body: [
            "Print usage or the version and exit 0, for a local admin only: as the only argument, and never when `SSH_CONNECTION` or `SSH_ORIGINAL_COMMAND` is set (a peer's `--help` is refused like any other option).",
          ],
        },
      ],
    },
    {
      title: "REQUEST GRAMMAR",
      blocks: [
        {
          p: "Exact match, fail closed. The command is split with a strict tokenizer: POSIX single quotes, double quotes (without `$` or backquote) and backslash; no expansion; control characters (NUL, CR, LF, TAB …), unbalanced quotes, unquoted shell metacharacters and absurd lengths (64 KiB command, 4096 words, 4096-character word) are refused.",
        },
        { p: "The first word is `sendmail` or `rsendmail` (bare or a path). Then:" },
        {
          list: [
            'recipients, never starting with `-` (even after `--`): `local`, `local@domain`, `"quoted local"@domain`; bare `root` is allowed;',
            "`-t`, `-f` «ADDR», `-f`«ADDR», `-r` «ADDR» (`''` or `<>`: the null sender), `-i`, `-oi`, `-v`, `-N` «DSN», `-R` «RET»;",
            "the harmless report and queue flags callers pass, all dropped: `-oem -oep -oee -oeq -oew -odi -odb -om -bm -B8BITMIME -B7BIT -F` «NAME» `-V`;",
            "`--`, and the integrity extension `--size=`«N» `--sha256=`«HEX» sent by `sshsendmail`.",
          ],
        },
        {
          p: "Refused with EX_USAGE and one line such as `5.5.4 rsendmail: option -bp is not allowed`: `-bp -bi -bd -bs -bv -bh -bH -q`… `-C -X -O -o`… (but the flags above) `-h -d -G -L -A`…, any peer long option (`--loglevel`, `--help`, …), option clusters, anything else.",
        },
      ],
    },
    {
      title: "SECURITY",
      blocks: [
        {
          p: "The peer controls the whole request string and the message. It never reaches a shell; every word is looked up exactly; sendmail's argv is rebuilt from parsed values; sendmail's environment is cleared. `restrict` in `authorized_keys` disables forwarding, pty and `~/.ssh/rc`.",
        },
        {
          p: `The process runs in Deno's permission sandbox (flags in the program's first line): it may run only \`${SENDMAIL_PATH}\` and \`${LOGGER_PATH}\`, read and write only \`${SPOOL_DIR}\` and \`${STATE_DIR}\`, read only the variables \`${
            Object.values(SERVER_ENV).join("` and `")
          }\` (its first line starts Deno through \`env -i\`, passing exactly these two as \`${
            Object.keys(SERVER_ENV).join("` and `")
          }\`: no \`DENO_*\`, \`LD_*\` or other variable an sshd lets through can steer the runtime), and has no network access at all.`,
        },
        {
          p: "A stolen key can send mail as the senders its line allows, up to its size limit, and nothing else: no shell, no files, no forwarding.",
        },
      ],
    },
    {
      title: "ENVIRONMENT",
      blocks: [
        { tp: "`SSH_ORIGINAL_COMMAND`", body: ["The request."] },
        { tp: "`SSH_CONNECTION`", body: ["The client address, for the log."] },
        { p: "Nothing else is read." },
      ],
    },
    {
      title: "EXIT STATUS",
      blocks: [
        { tp: "0", body: ["Delivered to sendmail (silent)."] },
        { tp: "64", body: ["Request outside the grammar (`5.5.`x)."] },
        {
          tp: "65",
          body: [
            "Bad address (`5.1.3`, `5.1.7`), message too big (`5.3.4`), hash mismatch (`5.6.0`), too many recipients (`5.5.3`).",
          ],
        },
        { tp: "77", body: ["Sender not allowed (`5.7.1`), integrity required (`5.7.0`)."] },
        {
          tp: "75",
          body: [
            "Message truncated in transit (`4.4.2`), idle timeout, sendmail killed, timed out, missing or failing with a non-sysexits code, relay misconfiguration (`4.3.5`) and internal errors: everything that a retry can fix, or that is the relay's own fault, defers.",
          ],
        },
        {
          p: "sendmail's own sysexits code passes through (Postfix's sendmail exits 75 for all its errors).",
        },
      ],
    },
    {
      title: "LOGGING",
      blocks: [
        {
          p: "One line per request through `logger`(1) to `/dev/log`, facility mail, tag `rsendmail`: `event=sent label=`… `client=`«IP» `sender=<`…`> rcpts=`«N» `size=`«N» `sha256=`«PREFIX» `exit=0 ms=`«N» at info; refusals at warning and deferrals at err with `reason=`. Values are sanitised (no CR/LF, quoted, truncated). No `/dev/log`, or a syslogd that stops reading: no log, no noise, no delay past 250 ms. The line costs a `logger` process per message (Deno grants no `/dev/log` to a sandboxed program): about 5-8 ms on a small message, measured in docs/benchmarks.md; with `--log-level warning` a delivered message starts none.",
        },
      ],
    },
    {
      title: "FILES",
      blocks: [
        { tp: "`/usr/sbin/rsendmail`", body: [`This program (package ${PACKAGE}-relay).`] },
        { tp: `\`/usr/lib/${PACKAGE}/deno\``, body: ["The Deno runtime it runs on."] },
        { tp: `\`${SENDMAIL_PATH}\``, body: ["The relay's real sendmail."] },
        {
          tp: `\`${SPOOL_DIR}/rsendmail-\`*`,
          body: ["The spool of one message of 4 MiB or more, unlinked at creation."],
        },
        {
          tp: `\`${STATE_DIR}/rsendmail-\`«UID»\`/\``,
          body: ["The duplicate record, per key label, and its delivery locks (`.lock-`«XX»)."],
        },
        { tp: "`~/.ssh/authorized_keys`", body: ["The relay account's keys and forced commands."] },
      ],
    },
    {
      title: "EXAMPLES",
      blocks: [
        { p: "One line per satellite key in the relay account's `~/.ssh/authorized_keys`:" },
        {
          pre:
            'restrict,command="/usr/sbin/rsendmail --label laptop1 --allow-sender @example.net --require-integrity --max-messages 200/hour --max-sessions 4" ssh-ed25519 AAAA... laptop1',
        },
        {
          p: "The account's login shell must be a real shell: sshd runs the forced command through it. `sshsendmail setup` on the satellite prints this line (or installs it).",
        },
      ],
    },
    seeAlso("rsendmail"),
  ],
};

const sshsendmail: Page = {
  name: "sshsendmail",
  section: 8,
  summary: "send mail through SSH to a relay running rsendmail",
  sections: [
    {
      title: "SYNOPSIS",
      blocks: [
        {
          p: "`sshsendmail` [`--host` [«USER»`@`]«HOST»]… [`--user` «U»] [`--port` «P»] [`--identity` «FILE»] [`--known-hosts` «FILE»] [`--ssh-option` «K»`=`«V»]… [`--reuse`] [`--no-integrity`] [`--connect-timeout` «S»] [`--relay-command` «NAME»] [`--mta postfix`|`nullmailer`|`sendmail`] [`--config` «FILE»] [«SENDMAIL OPTIONS»] [`--`] «RECIPIENT»…",
        },
        { p: "`sshsendmail -bs` [`-i`] [`-f` «ADDR»]" },
        { p: "`sshsendmail --serve` | `--init-spool` [`--config` «FILE»]" },
        {
          p: "`sshsendmail --flush` | `--list` | `--remove` «ID» | `--test` «ADDRESS» | `--migrate`",
        },
        {
          p: "`sshsendmail setup --host` [«USER»`@`]«RELAY» [`--port` «P»] [`--label` «NAME»] [`--allow-sender` «ADDR»]… [`--max-size` «BYTES»] [`--max-messages` «N»`/`«PERIOD»] [`--max-sessions` «N»] [`--fingerprint` `SHA256:`«…»] [`--install-with` «ADMIN»] [`--test` «ADDRESS»]",
        },
        { p: "`sshsendmail --help` | `--version`" },
      ],
    },
    {
      title: "DESCRIPTION",
      blocks: [
        {
          p: "`sshsendmail` runs on a satellite (a laptop, a VM, a container host) and sends the message on stdin to a relay whose SSH key runs `rsendmail`(8) as its forced command. It serves as a plain `sendmail` for cron, mutt, mailx, git send-email, Emacs and PHP, as a Postfix `pipe`(8) transport, and as a nullmailer 2.x protocol module.",
        },
        {
          p: "With `--host`: Postfix pipe mode. Without: standalone mode, settings from the configuration file. Run as `.../nullmailer/sshsendmail` with no arguments: nullmailer mode (the options block on stdin, the envelope and message on fd 3). Invoked as `mailq` it lists the service's queue. Upstream's `--mta=postfix` and `--loglevel` are accepted.",
        },
        {
          p: "A direct send (Postfix pipe, nullmailer, `queue = no`) starts ssh and the relay's batch mode at once, so that ssh's handshake and the relay's start-up overlap the reading of the message. The message is spooled locally (bounded memory), then goes as one frame: its envelope, size, SHA-256 and id, then its bytes; the relay refuses to deliver anything else and answers on one line (a login banner printed before that line is skipped; a line naming another message is not an answer). Every word is quoted so that both the relay's tokenizer and a plain POSIX shell (a key without `command=`) see exactly the intended words. Hosts and users starting with `-` are refused. ssh runs as:",
        },
        {
          pre: [
            `${SSH_PATH} -T -e none -a -x -o BatchMode=yes -o ConnectTimeout=10 \\`,
            "  -o ServerAliveInterval=15 -o ServerAliveCountMax=4 \\",
            "  -o ClearAllForwardings=yes ... -- HOST \\",
            "  'rsendmail --batch'      (stdin: MSG -oi -f ... --size=N --sha256=H --id=ID -- RCPT...)",
          ].join("\n"),
        },
        { ss: "Delivery service (standalone mode)" },
        {
          p: `Any local user's standalone \`sshsendmail\` writes the message into the drop directory \`${SPOOL_ROOT}/drop/\` (1733: users may write there but not list or read; root's go into \`${SPOOL_ROOT}/root/\`, root's own) and exits 0. The delivery service, \`sshsendmail --serve\` running as the system account \`${SERVICE_USER}\` (the unit \`sshsendmail.service\`), takes each drop into its private queue (\`${SPOOL_ROOT}/queue/\`, 0700), delivers it over one batch session to the relay, retries while the relay cannot take it (1 min doubling to 1 h), and keeps it until the relay accepted it. The drop's owner is the sender's identity: the default envelope sender «LOGIN»\`@\`«DOMAIN», and whose mail it is for \`mailq\`.`,
        },
        {
          p: 'After `max_age` (default `30d`) a message moves to `failed/` and its sender gets a notice ("Undelivered Mail Returned to Sender", null sender) through the relay; a permanent refusal during a flush does the same. `queue = no` sends directly instead (the caller then sees exit 75). Postfix and nullmailer keep their own queues and send directly, unless the nullmailer remotes line says `--service`.',
        },
        { ss: "Setup" },
        {
          p: "`sshsendmail setup` creates a dedicated ed25519 key (`/etc/sshsendmail/id_ed25519`) if there is none, shows the relay's host key fingerprint and records it (`/etc/sshsendmail/known_hosts`), prints the `authorized_keys` line `restrict,command=\"/usr/sbin/rsendmail --label` «NAME» `--require-integrity` …`\"` «KEY» (or, with `--install-with` «ADMIN», the relay admin's own login, installs it), sets its own lines of `/etc/sshsendmail.conf` (`host`, `user`, `port`, `identity`, `known_hosts`: replaced in place, the missing ones added at the end; every other line, comments included, is kept, so the file the package ships stays the admin's), and with `--test` sends a test message, reporting each step. With `--fingerprint` (the relay's host key as `ssh-keygen -lf` prints it on the relay) it stops before any login, keeping nothing, when the relay shows another key; without it, on a terminal, it asks to confirm the printed fingerprint. `--allow-sender` and `--max-size` are checked with the relay's own grammar before anything is written.",
        },
      ],
    },
    {
      title: "OPTIONS",
      blocks: [
        {
          tp: "`--host` [«USER»`@`]«HOST»",
          body: ["The relay; repeatable: tried in order when a relay cannot be reached."],
        },
        { tp: "`--user` «U», `--port` «P»", body: ["Relay account and SSH port."] },
        { tp: "`--identity` «FILE»", body: ["The private key."] },
        { tp: "`--known-hosts` «FILE»", body: ["The relay's recorded host key."] },
        { tp: "`--ssh-option` «K»`=`«V»", body: ["Passed to ssh as `-o`; repeatable."] },
        {
          tp: "`--reuse`",
          body: ["Keep one ssh connection open for 60 s (ControlPath `~/.ssh/sshsendmail-%C`)."],
        },
        {
          tp: "`--no-integrity`",
          body: [
            "Send no `--size`/`--sha256`, and the request on ssh's command line instead of a batch frame (only for an upstream 1.1.4 relay).",
          ],
        },
        { tp: "`--connect-timeout` «S»", body: ["Seconds, default 10."] },
        { tp: "`--relay-command` «NAME»", body: ["The remote program, default `rsendmail`."] },
        {
          tp: "`--queue-id` «ID»",
          body: [
            'Postfix pipe mode: Postfix\'s `${queue_id}`. The delivery carries an id made from it and the envelope, so a retry after a lost answer is answered "already delivered" by the relay instead of sending the message twice.',
          ],
        },
        {
          tp: "`--mta postfix`|`nullmailer`|`sendmail`",
          body: ["Which caller's conventions to follow (exit codes, input)."],
        },
        { tp: "`--config` «FILE»", body: ["Another configuration file."] },
        {
          tp: "`--serve`",
          body: [
            `The delivery service, in the foreground, as the account \`${SERVICE_USER}\`, on a spool as \`--init-spool\` made it (it refuses to start on anything else); logs to syslog (facility mail) and exits 0 on SIGTERM. \`sshsendmail.service\` runs it.`,
          ],
        },
        {
          tp: "`--init-spool`",
          body: [
            "(root) Make the service's spool (see FILES): the top directory root's 0755 first, then each part with its owner and mode; a part that is something else is renamed aside. The packages and `scripts/install` run it.",
          ],
        },
        {
          tp: "`--flush` [`--due`] [`--all`]",
          body: [
            "Ask the service for a delivery run now and report what it did (also `sendmail -q`). `--due` and `--all` are accepted for old cron lines; the service decides.",
          ],
        },
        {
          tp: "`--list`",
          body: ["List the queue: id, age, size, sender, recipients, attempts and last error."],
        },
        { tp: "`--remove` «ID»", body: ["Drop one queued message."] },
        { tp: "`--test` «ADDRESS»", body: ["Send a test message with the configured settings."] },
        {
          tp: "`--migrate`",
          body: [
            `Hand the caller's old per-user queue (\`${SPOOL_ROOT}/\`«UID»\`/\`, before the service) to the service; the packages and \`scripts/install\` run it as each owner.`,
          ],
        },
        { tp: "`--help`, `--version`", body: ["Print usage or the version and exit 0."] },
        { ss: "Sendmail options" },
        {
          p: "Recipients, `-t`, `-f` «ADDR»/`-f`«ADDR»/`-r` «ADDR» (`''`, `<>` and `MAILER-DAEMON` are the null sender), `-i`, `-oi`, `-oem`, `-oee`, `-oep`, `-oeq`, `-oew`, `-odi`, `-odb`, `-om`, `-bm`, `-B8BITMIME`/`-B7BIT`, `-F` «NAME»/`-F`«NAME», `-v`, `-V`, `-N` «DSN», `-R` «RET», `--`. `-bs` (no recipients, no `-t`) speaks SMTP on stdin and stdout, as Symfony Mailer and Laravel expect; the messages of one dialogue share one batch session. `-q` (also `-q`«INTERVAL») asks the service for a run, `-bp` lists its queue. Everything else (`-bd`, `-bi`, `-C`, `-X`, `-O`, …) is refused with exit 64 and one line.",
        },
      ],
    },
    {
      title: "CONFIGURATION",
      blocks: [
        {
          p: "`/etc/sshsendmail.conf` (or `SSHSENDMAIL_CONFIG`, or `--config`): `key = value` lines, `#` comments.",
        },
        {
          tp: "`host`",
          body: ["Repeatable or a list: tried in order when a relay cannot be reached."],
        },
        {
          tp: "`user`, `port`, `identity`, `known_hosts`, `ssh_option`",
          body: ["As the options above (`ssh_option` is `KEY=VALUE`, repeatable)."],
        },
        { tp: "`relay_command`", body: ["Default `rsendmail`."] },
        { tp: "`connect_timeout`", body: ["Seconds, default 10."] },
        { tp: "`reuse`", body: ["`yes`: keep one ssh connection open for 60 s."] },
        { tp: "`integrity`", body: ["Default `yes`; `no` only for an upstream 1.1.4 relay."] },
        {
          tp: "`queue`, `spool`, `max_age`",
          body: [
            `\`yes\` (default): hand mail to the service; \`no\`: send directly (the caller needs the key; exit 75 when the relay cannot take it). The service's spool (default \`${SPOOL_ROOT}\`), and how long a message may wait (default \`30d\`; \`s\`, \`m\`, \`h\`, \`d\` units). \`queue_dir\` (the old per-user queues) is accepted and ignored.`,
          ],
        },
        {
          tp: "`max_size`, `session_idle`",
          body: [
            "The largest message the service takes from a local user (bytes, default 52428800), and how many seconds it keeps an idle session to the relay open (default 60).",
          ],
        },
        {
          tp: "`adminaddr`, `aliases`, `domain`",
          body: [
            "Local recipients: where mail for a local user goes (full addresses, like nullmailer's `adminaddr`), an `/etc/aliases`-style file (remote and local addresses only: pipes, files and `:include:` are dropped, and a name left with no target goes on as an unlisted one, to `adminaddr`; a name met again in its own expansion ends the loop the same way), and the mail domain of the default sender «LOGIN»`@`«DOMAIN» (default `/etc/mailname`, else the host name).",
          ],
        },
        {
          p: `The key belongs to the account \`${SERVICE_USER}\` (0600; \`setup\` hands it over when the account exists): local users never read it, they hand their mail to the service. Direct sending (\`queue = no\`, Postfix and nullmailer modes) needs an account that may read its key. The sending account's \`~/.ssh/config\` applies to the connection.`,
        },
      ],
    },
    {
      title: "SECURITY",
      blocks: [
        {
          p: `The program runs in Deno's permission sandbox (flags in its first line): it may run only \`${SSH_PATH}\`, \`${CAT_PATH}\` (nullmailer's fd 3) and \`${LOGGER_PATH}\` (the service's syslog lines), and write only its temporary spool in \`${SPOOL_DIR}\` (a message of 4 MiB or more, unlinked as soon as it is made; root keeps every message in memory instead, and creates nothing where other accounts write), \`${SPOOL_ROOT}\`, \`/etc/sshsendmail\` and \`/etc/sshsendmail.conf\`. The service runs as its own account, and \`sshsendmail.service\` adds systemd's sandbox: a read-only system but for the spool, a private \`/tmp\` and \`/dev\`, no home directories, no capabilities, only Unix and IP sockets. The relay side decides what the key may do; see \`rsendmail\`(8).`,
        },
      ],
    },
    {
      title: "ENVIRONMENT",
      blocks: [
        {
          tp: "`SSHSENDMAIL_CONFIG`",
          body: [
            "Names another configuration file. cron passes the daemon's environment, not the crontab's, to the mailer, so real deployments use `/etc/sshsendmail.conf`.",
          ],
        },
        { tp: "`HOME`", body: ["Where ssh finds `~/.ssh/config` and the `--reuse` socket."] },
      ],
    },
    {
      title: "EXIT STATUS",
      blocks: [
        { tp: "0", body: ["Sent, or queued for later in standalone mode (silent)."] },
        { tp: "64", body: ["A sendmail option that is not accepted."] },
        {
          tp: "75",
          body: [
            "ssh's own failure (255), with a line naming the cause: `4.4.3` cannot resolve the relay's host name, `4.4.1` connection refused by the relay, `4.4.1` connection to the relay timed out, `4.7.0` relay host key verification failed, `4.7.0` authentication refused by the relay, `4.3.5` relay program not found (remote 127), `4.4.2` connection to the relay lost. A local configuration fault is `4.3.5` and 75.",
          ],
        },
        {
          p: "Otherwise the relay's sysexits code passes through with its one line. In Postfix mode every local fault defers (75) except a malformed address (65). In nullmailer mode a relay's permanent refusal is 34 (bounced); network, authentication and relay-side temporary failures are 2, 7, 8, 9, 10, 15, 16, 20 (kept and retried); ssh's 255 is never passed through.",
        },
      ],
    },
    {
      title: "FILES",
      blocks: [
        { tp: "`/usr/sbin/sshsendmail`", body: [`This program (package ${PACKAGE}-client).`] },
        {
          tp: "`/usr/sbin/sendmail`, `/usr/lib/sendmail`, `/usr/bin/mailq`, `/usr/sbin/newaliases`",
          body: [
            `Links to it (package ${PACKAGE}-mta, which provides \`mail-transport-agent\` and replaces any other MTA): invoked as \`mailq\` it lists the queue, as \`newaliases\` it does nothing.`,
          ],
        },
        { tp: `\`/usr/lib/${PACKAGE}/deno\``, body: ["The Deno runtime it runs on."] },
        {
          tp: "`/etc/sshsendmail.conf`",
          body: ["Settings of standalone mode and of the service."],
        },
        {
          tp: "`/etc/sshsendmail/id_ed25519`, `/etc/sshsendmail/known_hosts`",
          body: [
            `The key (the account \`${SERVICE_USER}\`'s, 0600, in a directory that stays root's, 0755) and the relay's host key (root's, 0644), as \`setup\` writes them.`,
          ],
        },
        {
          tp: `\`${SPOOL_ROOT}/\``,
          body: [
            `The service's spool, made by \`--init-spool\`: the top directory root's (0755); \`drop/\` (the account's, 1733) where users hand in mail; \`root/\` (root's, group \`${SERVICE_USER}\`, 0750) where root hands in its own; the account's private \`incoming/\`, \`queue/\` and \`hold/\` (0700); \`reply/\` (0711: answers to \`mailq\` and \`--flush\`, and \`alive\`, the service's pid, refreshed every 5 s); \`.cache/\` (the account's, 0700): the top is the account's home, and Deno keeps its caches there for what the account runs outside the unit, such as the Postfix pipe.`,
          ],
        },
        {
          tp: `\`/lib/systemd/system/sshsendmail.service\``,
          body: [
            `The delivery service: \`sshsendmail --serve\` as \`${SERVICE_USER}\`, hardened; enabled (and started when systemd runs) by the package and \`scripts/install\`.`,
          ],
        },
      ],
    },
    {
      title: "EXAMPLES",
      blocks: [
        { ss: "First run" },
        { pre: "sshsendmail setup --host rsendmail@relay.example.net --test you@example.net" },
        { ss: "Standalone sendmail (cron, mutt, mailx, git send-email, Emacs, PHP)" },
        {
          pre: [
            "ln -sf /usr/sbin/sshsendmail /usr/sbin/sendmail",
            "cat > /etc/sshsendmail.conf <<'EOF'",
            "host = rsendmail@relay.example.net",
            "identity = /etc/sshsendmail/id_ed25519",
            "known_hosts = /etc/sshsendmail/known_hosts",
            "EOF",
          ].join("\n"),
        },
        { ss: "The delivery service" },
        {
          pre: [
            "systemctl status sshsendmail.service   # enabled by the package",
            "mailq                                  # what waits (your own mail; root: all)",
            "sshsendmail --flush                    # a delivery run now",
          ].join("\n"),
        },
        { ss: "Postfix pipe(8) transport" },
        { p: "`master.cf`:" },
        {
          pre: [
            "rsendmail unix - n n - - pipe flags=q user=mail",
            "  argv=/usr/sbin/sshsendmail --host ${nexthop}",
            "  --identity /var/mail/.ssh/id_ed25519 -f ${sender} -- ${recipient}",
          ].join("\n"),
        },
        {
          p: "`main.cf`: `default_transport = rsendmail` and `relayhost = rsendmail@relay.example.net` (so `${nexthop}` is «USER»`@`«HOST»). Every failure that is not the relay's permanent refusal exits 75 with a `4.x.x` line, so Postfix defers and retries.",
        },
        { ss: "nullmailer 2.x" },
        {
          pre: [
            "ln -s /usr/sbin/sshsendmail /usr/lib/nullmailer/sshsendmail",
            "echo 'relay.example.net sshsendmail --user=rsendmail' \\",
            "  '--identity=/etc/sshsendmail/id_ed25519' \\",
            "  '--known-hosts=/etc/sshsendmail/known_hosts' > /etc/nullmailer/remotes",
          ].join("\n"),
        },
      ],
    },
    seeAlso("sshsendmail"),
  ],
};

/**
 * The commented example /etc/sshsendmail.conf that the client package (a
 * conffile) and scripts/install ship.
 */
export const EXAMPLE_CONFIG =
  `# /etc/sshsendmail.conf: settings of sshsendmail(8) in standalone mode
# (as /usr/sbin/sendmail for cron, mutt, mailx, git send-email, PHP ...)
# and of its delivery service: key = value lines; a line starting with #
# is a comment. See sshsendmail(8), CONFIGURATION. Every setting below is
# commented out: the value shown is the default, or an example.
#
# \`sshsendmail setup --host rsendmail@relay.example.net\` sets the relay's
# lines (host, user, port, identity, known_hosts) in place, adding those
# missing at the end, and keeps every other line of this file as it is.
#
#host = rsendmail@relay.example.net
#identity = /etc/sshsendmail/id_ed25519
#known_hosts = /etc/sshsendmail/known_hosts
#port = 22
#connect_timeout = 10
#reuse = no
#integrity = yes
#
# Local recipients (root, cron's mail): where their mail goes, an
# /etc/aliases-style file, and the domain of the default sender LOGIN@DOMAIN
# (default /etc/mailname, else the host name):
#adminaddr = postmaster@example.net
#aliases = /etc/aliases
#domain = example.net
#
# The delivery service (sshsendmail.service) and its queue:
#queue = yes
#spool = /var/spool/sshsendmail
#max_size = 52428800
#session_idle = 60
#max_age = 30d
`;

/** Both pages, in the order they are generated. */
export const PAGES: readonly Page[] = [rsendmail, sshsendmail];
