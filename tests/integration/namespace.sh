#!/bin/sh
# Runs one integration case inside its own user and mount namespaces:
#
#   unshare --user --map-root-user --mount /bin/sh namespace.sh CASE_DIR PROGRAM [ARG]...
#
# As the namespace's root (an ordinary user outside it: no privilege on the
# host), it bind-mounts the case's recording sendmail over /usr/sbin/sendmail
# and its fake ssh over /usr/bin/ssh, the only paths the built programs may
# run (scripts/permissions.ts). The mounts are private to this namespace and
# vanish with its last process: nothing on the host changes, and the real
# sendmail is never reached.
#
# The fakes are copied to a private tmpfs on /mnt first: a bind mount keeps
# its source's mount flags, and /tmp is often mounted noexec.
#
# PROGRAM then runs in a nested user namespace as uid/gid 65534 (nobody), an
# ordinary account as in production, holding no capability. Not as the
# namespace's root: util-linux 2.38's logger(1), run as uid 0, sends
# SCM_CREDENTIALS with the relay's pid and an uninitialised uid/gid (strace
# shows uid=42), which the kernel refuses inside a user namespace (EINVAL),
# and the relay's syslog line would be lost.
set -eu
case_dir=$1
shift
if [ ! -e /usr/sbin/sendmail ]; then
  # A machine without an MTA: a private, empty /usr/sbin to mount over.
  /usr/bin/mount -t tmpfs -o mode=0755 rsm-int /usr/sbin
  : >/usr/sbin/sendmail
fi
if [ ! -e /usr/bin/ssh ]; then
  echo "namespace.sh: /usr/bin/ssh is missing (install openssh-client): nothing to mount over" >&2
  exit 99
fi
fakes=$case_dir
if [ -d /mnt ]; then
  /usr/bin/mount -t tmpfs -o mode=0755 rsm-fakes /mnt
  /usr/bin/cp "$case_dir/fake_sendmail.sh" "$case_dir/fake_ssh.sh" /mnt/
  /usr/bin/chmod 0755 /mnt/fake_sendmail.sh /mnt/fake_ssh.sh
  fakes=/mnt
fi
/usr/bin/mount --bind "$fakes/fake_sendmail.sh" /usr/sbin/sendmail
/usr/bin/mount --bind "$fakes/fake_ssh.sh" /usr/bin/ssh
# Deno keeps its caches in the home of the account it runs as, and nobody's
# is /nonexistent: the program (on the host, the user running the tests,
# root in CI) would make /nonexistent/.cache. A private /etc/passwd gives
# nobody the bed's own directory instead (shared by the bed's cases).
home=${case_dir%/*}/home
/usr/bin/mkdir -p "$home"
/usr/bin/sed "s#^\(nobody:[^:]*:65534:65534:[^:]*:\)[^:]*:#\1$home:#" /etc/passwd >"$fakes/passwd"
/usr/bin/mount --bind "$fakes/passwd" /etc/passwd
exec /usr/bin/unshare --user --map-user=65534 --map-group=65534 -- "$@"
