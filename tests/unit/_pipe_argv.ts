/** README's Postfix pipe line as pipe(8) runs it (its own options in plain forms), for the parse tests. */
export const PIPE_ARGV: readonly string[] = [
  "--host",
  "relay.example",
  "--identity",
  "/etc/sshsendmail/id_ed25519",
  "--known-hosts",
  "/etc/sshsendmail/known_hosts",
  "--queue-id",
  "4XkT1d2Lz3",
  "-f",
  "root@sat.example",
  "--",
  "ops@example.net",
];
