/**
 * The text of `sshsendmail --help`. Pure.
 *
 * @module
 */

/** What `--help` prints. */
export const CLIENT_USAGE =
  `usage: sshsendmail [SENDMAIL OPTIONS] [--] RECIPIENT...   a message on stdin (any user)
       sshsendmail -bs [-i] [-f ADDR]                 SMTP on stdin/stdout (PHP frameworks)
       sshsendmail -t [-i] [-f ADDR]                  recipients from the headers
       mailq | sshsendmail -bp | --list               your queued messages (root: all)
       sshsendmail -q [-v] | --flush                  ask the service to run the queue now
       sshsendmail --remove ID                        drop one of your queued messages
       sshsendmail --test ADDRESS                     send a test message through the relay
       sshsendmail setup --host [USER@]RELAY ...      key, relay host key, config (see setup --help)
       sshsendmail --serve                            the delivery service (its account; systemd)
       sshsendmail --init-spool | --migrate           make the spool (root) | hand over an old queue
       sshsendmail --host [USER@]HOST [--user U] [--port P] [--identity KEY] [--known-hosts FILE]
                   [--ssh-option K=V]... [--reuse] [--no-integrity] [--connect-timeout S]
                   [--relay-command NAME] [-f SENDER] [--] RECIPIENT...   Postfix pipe(8)
       (run as .../nullmailer/sshsendmail: a nullmailer 2.x protocol module)
Common: --config FILE (default /etc/sshsendmail.conf, or $SSHSENDMAIL_CONFIG), --mta
postfix|nullmailer|sendmail, --help, --version. Sendmail options: -f/-r ADDR, -t, -i, -oi,
-oem/-oep/-oee/-oeq/-oew, -odi/-odb, -om, -bm, -B8BITMIME/-B7BIT, -F NAME, -N DSN, -R RET, -v.
See sshsendmail(8).
`;
