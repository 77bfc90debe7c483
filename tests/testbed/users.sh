# shellcheck shell=bash
# tests/testbed/users.sh — sourced by up and down: the Unix accounts a test bed needs
# (the SSH user, the Samba user). up creates an account only when it is missing, marks it
# with the comment below, and records in /run/offbox-testbed/users/USER/ which beds use it;
# down removes the bed from that list and deletes the account once no bed uses it and the
# account carries the mark (an account the machine had before is never deleted). Both
# hold /run/offbox-testbed.lock, so parallel beds never delete an account in use.

testbed_user_mark="offbox test bed (tests/testbed/up)"
testbed_user_reg=/run/offbox-testbed/users

# testbed_user_use ID USER SHELL: makes sure USER exists and records that bed ID uses it.
testbed_user_use() {
  local bed=$1 user=$2 shell=$3
  (
    flock 8
    mkdir -p "$testbed_user_reg/$user"
    if ! id "$user" >/dev/null 2>&1; then
      useradd -M -d /nonexistent -s "$shell" -c "$testbed_user_mark" "$user" || exit 1
    fi
    touch "$testbed_user_reg/$user/$bed"
  ) 8>/run/offbox-testbed.lock
}

# testbed_user_release ID USER: bed ID no longer uses USER; deletes USER (and its group)
# when no other bed does and up created it.
testbed_user_release() {
  local bed=$1 user=$2
  (
    flock 8
    rm -f "$testbed_user_reg/$user/$bed"
    [[ -n "$(ls -A "$testbed_user_reg/$user" 2>/dev/null)" ]] && exit 0
    rmdir "$testbed_user_reg/$user" 2>/dev/null
    if [[ "$(getent passwd "$user" | cut -d: -f5)" == "$testbed_user_mark" ]]; then
      userdel "$user" 2>/dev/null
    fi
    exit 0
  ) 8>/run/offbox-testbed.lock
}
