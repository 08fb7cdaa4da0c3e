#!/bin/sh
# The fake ssh (tests/integration), rrsync's trick: mounted over
# /usr/bin/ssh inside the case's namespace, where sshsendmail runs it, or the
# test itself as a plain ssh user. It records its argv and environment
# (ssh.N.argv, NUL-terminated, $0 first; ssh.N.env), skips the transport
# options, takes the host, joins the remaining words with spaces as ssh
# does, and starts the BUILT relay as sshd starts a forced command: the
# request in SSH_ORIGINAL_COMMAND (unset when there is none), a fake
# SSH_CONNECTION, and the admin options of the key (relay.args, one a line).
#
# Case files it reads (all optional but relay.args):
#   ssh.env       NAME=VALUE lines exported to the relay (what AcceptEnv lets through)
#   ssh.exit      ssh fails by itself with this code (and ssh.stderr), the relay never runs
#   ssh.truncate  only this many bytes of stdin reach the relay (a cut connection);
#                 in batch mode (`… --batch`), this many bytes after the frame line
#   ssh.corrupt   stdin reaches the relay with every 'a' turned into 'b' (same size);
#                 in batch mode, after the frame line
# What reaches the relay's stdin is recorded as ssh.N.stdin.
#   ssh.stdout    printed on stdout before the relay starts (a login banner)
#   relay.launch  words that start the bundle instead of its own first line
# The harness replaces @CASE@ and @RELAY@.
case_dir=@CASE@
relay=@RELAY@
n=1
while [ -e "$case_dir/ssh.$n.argv" ]; do n=$((n + 1)); done
{
  printf '%s\0' "$0"
  for word in "$@"; do printf '%s\0' "$word"; done
} >"$case_dir/ssh.$n.argv"
/bin/cat "/proc/$$/environ" >"$case_dir/ssh.$n.env"
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    -[BbcDEeFIiJLlmOoPpQRSWw]) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "usage: ssh [options] destination [command]" >&2
  exit 255
fi
shift # the destination: every host is the relay
if [ -f "$case_dir/ssh.exit" ]; then
  if [ -f "$case_dir/ssh.stderr" ]; then /bin/cat "$case_dir/ssh.stderr" >&2; fi
  read -r code <"$case_dir/ssh.exit"
  exit "$code"
fi
if [ $# -gt 0 ]; then
  SSH_ORIGINAL_COMMAND="$*"
  export SSH_ORIGINAL_COMMAND
fi
if [ -f "$case_dir/ssh.stdout" ]; then /bin/cat "$case_dir/ssh.stdout"; fi
SSH_CONNECTION="192.0.2.7 50022 192.0.2.1 22"
export SSH_CONNECTION
if [ -f "$case_dir/ssh.env" ]; then
  while IFS= read -r assignment; do export "$assignment"; done <"$case_dir/ssh.env"
fi
set --
if [ -f "$case_dir/relay.launch" ]; then
  while IFS= read -r word; do set -- "$@" "$word"; done <"$case_dir/relay.launch"
fi
set -- "$@" "$relay"
while IFS= read -r word; do set -- "$@" "$word"; done <"$case_dir/relay.args"
record="$case_dir/ssh.$n.stdin"
batch=no
case ${SSH_ORIGINAL_COMMAND-} in *" --batch") batch=yes ;; esac
# The frame line passes whole in batch mode; the damage hits the message.
frame() {
  if [ "$batch" = yes ]; then IFS= read -r line && printf '%s\n' "$line"; fi
}
if [ -f "$case_dir/ssh.truncate" ]; then
  read -r bytes <"$case_dir/ssh.truncate"
  { frame; /usr/bin/head -c "$bytes"; } | /usr/bin/tee "$record" | "$@"
  exit $?
fi
if [ -f "$case_dir/ssh.corrupt" ]; then
  { frame; /usr/bin/stdbuf -o0 /usr/bin/tr a b; } | /usr/bin/tee "$record" | "$@"
  exit $?
fi
/usr/bin/tee "$record" | "$@"
