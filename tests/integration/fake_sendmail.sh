#!/bin/sh
# The recording sendmail (tests/integration): bind-mounted over
# /usr/sbin/sendmail inside the case's namespace. Each call N writes, in the
# case directory, sendmail.N.argv (NUL-terminated words, $0 first),
# sendmail.N.env (the environment it was started with, from
# /proc/self/environ, before this shell adds anything) and sendmail.N.stdin;
# then prints sendmail.stderr (if any) on stderr and exits with the code in
# sendmail.exit (default 0). The harness replaces @CASE@.
case_dir=@CASE@
n=1
while [ -e "$case_dir/sendmail.$n.argv" ]; do n=$((n + 1)); done
{
  printf '%s\0' "$0"
  for word in "$@"; do printf '%s\0' "$word"; done
} >"$case_dir/sendmail.$n.argv"
/bin/cat "/proc/$$/environ" >"$case_dir/sendmail.$n.env"
/bin/cat >"$case_dir/sendmail.$n.stdin"
if [ -f "$case_dir/sendmail.stderr" ]; then /bin/cat "$case_dir/sendmail.stderr" >&2; fi
code=0
if [ -f "$case_dir/sendmail.exit" ]; then read -r code <"$case_dir/sendmail.exit"; fi
exit "$code"
