# The sshsendmail service's account, spool and key, in POSIX sh: sourced by
# scripts/install, and put by debian/rules into the client package's
# maintainer scripts (debian/rsendmail-ng-client.postinst.in, .postrm.in),
# so both set a machine up the same way.
#
# Rule: root never opens, creates, renames or deletes a path inside a
# directory another account can write. Root works only in directories that
# are root's alone: the spool's top directory (root's 0755, made so by
# --init-spool before anything else), its root/ part, /etc/sshsendmail;
# whatever happens inside the account's parts or an old per-user queue runs
# as the account or as the queue's owner (setpriv), so a symlink planted
# there can lead nowhere those could not go.

SSHSENDMAIL_ACCOUNT=sshsendmail
SSHSENDMAIL_SPOOL=/var/spool/sshsendmail
SSHSENDMAIL_ETC=/etc/sshsendmail

# Creates the system account (group of the same name, home the spool, no
# login shell) unless it exists.
sshsendmail_account() {
  if getent passwd "$SSHSENDMAIL_ACCOUNT" >/dev/null; then return 0; fi
  if command -v adduser >/dev/null 2>&1; then
    if getent group "$SSHSENDMAIL_ACCOUNT" >/dev/null; then
      set -- --ingroup "$SSHSENDMAIL_ACCOUNT"
    else
      set -- --group
    fi
    adduser --system "$@" --home "$SSHSENDMAIL_SPOOL" --no-create-home \
      --shell /usr/sbin/nologin --quiet "$SSHSENDMAIL_ACCOUNT"
  else
    if getent group "$SSHSENDMAIL_ACCOUNT" >/dev/null; then
      set -- --gid "$SSHSENDMAIL_ACCOUNT"
    else
      set -- --user-group
    fi
    useradd --system "$@" --home-dir "$SSHSENDMAIL_SPOOL" --no-create-home \
      --shell /usr/sbin/nologin "$SSHSENDMAIL_ACCOUNT"
  fi
}

# Makes the spool the way the service checks it: `PROGRAM --init-spool`
# (root) makes the top directory root's 0755 first (so an old 1777 spool is
# closed to writers before anything else happens), then the account's parts
# inside it (sshsendmail(8), FILES).
sshsendmail_init_spool() {
  if [ -L "$SSHSENDMAIL_SPOOL" ] || { [ -e "$SSHSENDMAIL_SPOOL" ] && [ ! -d "$SSHSENDMAIL_SPOOL" ]; }; then
    echo "sshsendmail: $SSHSENDMAIL_SPOOL is not a directory; left alone" >&2
    return 1
  fi
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$1" --init-spool </dev/null
}

# Gives the key `setup` wrote to the account (0600) and lets the account
# reach it: the directory stays root's, 0755 (setup used to make it 0700),
# known_hosts root's 0644.
sshsendmail_key() {
  d=$SSHSENDMAIL_ETC
  if [ -L "$d" ] || [ ! -d "$d" ] || [ "$(stat -c %u "$d")" != 0 ]; then return 0; fi
  chmod 0755 "$d"
  if [ -f "$d/id_ed25519" ] && [ ! -L "$d/id_ed25519" ]; then
    chown "$SSHSENDMAIL_ACCOUNT:$SSHSENDMAIL_ACCOUNT" "$d/id_ed25519"
    chmod 0600 "$d/id_ed25519"
  fi
  if [ -f "$d/known_hosts" ] && [ ! -L "$d/known_hosts" ]; then
    chmod 0644 "$d/known_hosts"
  fi
}

# Hands the old per-user queues (SPOOL/<uid>/, owned by that uid) to the
# service: `PROGRAM --migrate` runs as each owner, never as root; root then
# removes the directory if the owner emptied it (the top is root's: nobody
# can swap the name meanwhile). Call it after sshsendmail_init_spool.
# Root's own old queue (SPOOL/0) is not taken over: that would be root
# working inside a queue directory.
sshsendmail_migrate() {
  program=$1
  for d in "$SSHSENDMAIL_SPOOL"/*; do
    if [ -L "$d" ] || [ ! -d "$d" ]; then continue; fi
    uid=${d##*/}
    case $uid in '' | *[!0-9]*) continue ;; esac
    if [ "$(stat -c %u "$d")" != "$uid" ]; then continue; fi
    if [ "$uid" = 0 ]; then
      echo "sshsendmail: root's old queue $d is not taken over (nothing runs as root inside a queue); resend what it holds and remove it" >&2
      continue
    fi
    if ! entry=$(getent passwd "$uid"); then
      echo "sshsendmail: no account has uid $uid; its old queue $d is left as it is" >&2
      continue
    fi
    name=${entry%%:*}
    gid=$(echo "$entry" | cut -d: -f4)
    home=$(echo "$entry" | cut -d: -f6)
    if env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" USER="$name" LOGNAME="$name" \
      setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$program" --migrate </dev/null; then
      rmdir "$d" 2>/dev/null || true
    else
      echo "sshsendmail: the old queue $d of $name was not taken over; run 'sshsendmail --migrate' as $name" >&2
    fi
  done
}

# Runs a command as the account, with a minimal environment.
sshsendmail_as_account() {
  env -i PATH=/usr/bin:/bin setpriv --reuid="$SSHSENDMAIL_ACCOUNT" \
    --regid="$SSHSENDMAIL_ACCOUNT" --clear-groups -- "$@" </dev/null
}

# True when the spool may still hold mail: a file in the drop, the claim
# area, the held drops, some new/, tmp/ or failed/ (the queue, or an old
# per-user queue), or a drop of root's not taken yet; also when the
# account cannot tell (no account, an old queue it cannot read). Deno's
# cache (.cache/) holds no mail.
sshsendmail_spool_has_mail() {
  s=$SSHSENDMAIL_SPOOL
  if [ -L "$s" ] || [ ! -d "$s" ]; then return 1; fi
  if ! getent passwd "$SSHSENDMAIL_ACCOUNT" >/dev/null; then return 0; fi
  if ! found=$(sshsendmail_as_account find "$s" -mindepth 2 -path "$s/.cache/*" -prune -o \
    -type f \( -path "$s/drop/*" \
    -o -path "$s/incoming/*" -o -path "$s/hold/*" -o -path "$s/*/new/*" \
    -o -path "$s/*/tmp/*" -o -path "$s/*/failed/*" \
    -o \( -path "$s/root/*" -size +0c \) \) -print -quit 2>/dev/null); then
    return 0
  fi
  [ -n "$found" ]
}

# Removes the spool unless it may hold mail: what is inside the account's
# parts as the account (find -delete follows no link), root's drops in
# root's own root/, then the empty parts and the top directory as root
# (both root's). Returns 1 (and says why) when it keeps the spool.
sshsendmail_remove_spool() {
  s=$SSHSENDMAIL_SPOOL
  if [ -L "$s" ] || [ ! -d "$s" ]; then return 0; fi
  if [ "$(stat -c %u:%a "$s")" != 0:755 ]; then
    echo "sshsendmail: kept $s: not the service's layout (run sshsendmail --init-spool)" >&2
    return 1
  fi
  if sshsendmail_spool_has_mail; then
    echo "sshsendmail: kept $s: mail may still wait in it" >&2
    return 1
  fi
  sshsendmail_as_account find "$s" -mindepth 2 -delete 2>/dev/null || true
  if [ -d "$s/root" ] && [ ! -L "$s/root" ] && [ "$(stat -c %u:%a "$s/root")" = 0:750 ]; then
    find "$s/root" -mindepth 1 -maxdepth 1 -type f -delete
  fi
  for part in drop root incoming queue hold reply .cache; do
    if [ -d "$s/$part" ] && [ ! -L "$s/$part" ]; then rmdir "$s/$part" 2>/dev/null || true; fi
  done
  if ! rmdir "$s" 2>/dev/null; then
    echo "sshsendmail: kept $s: it still holds $(ls -A "$s" | tr '\n' ' ')" >&2
    return 1
  fi
}

# Deletes the account and its group (purge).
sshsendmail_delete_account() {
  if getent passwd "$SSHSENDMAIL_ACCOUNT" >/dev/null; then
    if command -v deluser >/dev/null 2>&1; then
      deluser --system --quiet "$SSHSENDMAIL_ACCOUNT" || true
    elif command -v userdel >/dev/null 2>&1; then
      userdel "$SSHSENDMAIL_ACCOUNT" || true
    fi
  fi
  if getent group "$SSHSENDMAIL_ACCOUNT" >/dev/null; then
    if command -v delgroup >/dev/null 2>&1; then
      delgroup --system --quiet "$SSHSENDMAIL_ACCOUNT" || true
    elif command -v groupdel >/dev/null 2>&1; then
      groupdel "$SSHSENDMAIL_ACCOUNT" || true
    fi
  fi
}
