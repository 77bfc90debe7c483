# shellcheck shell=bash disable=SC2154 # sourced by up, which sets dir ns remote srv id fail
# tests/testbed/smb.sh — sourced by tests/testbed/up once the namespace, the veth and the
# SSH part are ready: adds a real Samba smbd inside the namespace, listening on the remote
# address only (port 445, no NetBIOS), with SMB3 encryption "desired", its own private,
# lock, state, cache, pid and ncalrpc directories under DIR/smb, and a tdbsam passdb.
#
# Shares, each on its own tmpfs (so the SSH directories stay as the SSH tests expect):
#   data   256 MiB, behind SMB_URL
#   small  ${TESTBED_SMALL_MB:-2} MiB, behind SMB_SMALL_URL (the full-target test)
# The Samba user is a Unix account (offbox-smb, or $TESTBED_SMB_USER; no shell; made by
# users.sh); its password contains \ & ! , ; ' " $ % and a space, and is written to
# DIR/smb/password (mode 600).
#
# Uses from up: dir ns remote srv id fail. Appends smbd_pid and the mounts to DIR/state,
# and SMB_* lines to DIR/targets.env and [targets.testbed-smb*] to DIR/offbox-targets.toml.
# Needs samba and smbclient (tests/deps.sh).

smb_user=${TESTBED_SMB_USER:-offbox-smb}
smb_dir="$dir/smb"
# Every character the seeds' product forbids, and a few more that shells and config
# parsers like to eat.
# shellcheck disable=SC2016 # literal $HOME: part of the password
smb_pw='Pa\ss&w!rd,1;'"'"'q"$HOME %s x'

echo "users=\"\$users $smb_user\"" >> "$dir/state"
testbed_user_use "$id" "$smb_user" /usr/sbin/nologin || fail "cannot create the user $smb_user"
smb_uid=$(id -u "$smb_user"); smb_gid=$(id -g "$smb_user")
mkdir -p "$srv/smb-data" "$srv/smb-small"
mount -t tmpfs -o "size=256m,mode=0755,uid=$smb_uid,gid=$smb_gid" "offbox-tb-$id-smb" "$srv/smb-data" || fail "cannot mount the SMB tmpfs"
mount -t tmpfs -o "size=${TESTBED_SMALL_MB:-2}m,mode=0755,uid=$smb_uid,gid=$smb_gid" "offbox-tb-$id-smb-small" "$srv/smb-small" || fail "cannot mount the small SMB tmpfs"
echo "mounts=\"\$mounts $srv/smb-data $srv/smb-small\"" >> "$dir/state"

mkdir -p "$smb_dir"/{private,lock,state,cache,pid,ncalrpc,log}
chmod 700 "$smb_dir/private"
cat > "$smb_dir/smb.conf" <<CONF
[global]
  server role = standalone server
  workgroup = OFFBOXTB
  netbios name = OFFBOXTB
  interfaces = $remote/24
  bind interfaces only = yes
  smb ports = 445
  disable netbios = yes
  private dir = $smb_dir/private
  lock directory = $smb_dir/lock
  state directory = $smb_dir/state
  cache directory = $smb_dir/cache
  pid directory = $smb_dir/pid
  ncalrpc dir = $smb_dir/ncalrpc
  passdb backend = tdbsam:$smb_dir/private/passdb.tdb
  log file = $smb_dir/log/log.%m
  log level = 1
  server min protocol = SMB2_10
  server smb encrypt = desired
  map to guest = never
  restrict anonymous = 2
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  usershare max shares = 0

[data]
  path = $srv/smb-data
  read only = no
  valid users = $smb_user
  force user = $smb_user
  create mask = 0600
  strict sync = yes

[small]
  path = $srv/smb-small
  read only = no
  valid users = $smb_user
  force user = $smb_user
  create mask = 0600
  strict sync = yes
CONF
printf '%s\n%s\n' "$smb_pw" "$smb_pw" | smbpasswd -c "$smb_dir/smb.conf" -a -s "$smb_user" >"$smb_dir/smbpasswd.log" 2>&1 \
  || fail "smbpasswd failed"
printf '%s\n' "$smb_pw" > "$smb_dir/password"; chmod 600 "$smb_dir/password"

# setsid: smbd signals its whole process group when it stops (kill(0, SIGTERM)); in a
# group of its own that is smbd and its children, not the shell or test that ran up.
# (setsid does not fork here: a background job of a script is no group leader, so the
# PID is smbd's.)
ip netns exec "$ns" setsid /usr/sbin/smbd --foreground --no-process-group --debug-stdout \
  -s "$smb_dir/smb.conf" > "$smb_dir/smbd.log" 2>&1 &
echo "smbd_pid=$!" >> "$dir/state"
smb_ok=""
for _ in $(seq 1 200); do
  if ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$remote/445" 2>/dev/null; then smb_ok=1; break; fi
  sleep 0.05
done
[[ -n "$smb_ok" ]] || fail "smbd did not start: $(cat "$smb_dir/smbd.log")"

cat >> "$dir/targets.env" <<ENV
SMB_URL=smb://$smb_user@$remote/data
SMB_SMALL_URL=smb://$smb_user@$remote/small
SMB_PASSWORD_FILE=$smb_dir/password
SMB_CONF=$smb_dir/smb.conf
SMB_DATA_DIR=$srv/smb-data
SMB_SMALL_DIR=$srv/smb-small
SMBD_PID=$(grep smbd_pid "$dir/state" | cut -d= -f2)
ENV
cat >> "$dir/offbox-targets.toml" <<TOML

[targets.testbed-smb]
url = "smb://$smb_user@$remote/data"
password_file = "$smb_dir/password"
timeout_secs = 10

[targets.testbed-smb-small]
url = "smb://$smb_user@$remote/small"
password_file = "$smb_dir/password"
timeout_secs = 10
TOML
