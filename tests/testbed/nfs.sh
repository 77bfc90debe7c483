#!/usr/bin/env bash
# tests/testbed/nfs.sh — the NFSv3 part of the test bed: NFS-Ganesha (FSAL VFS) with its
# rpcbind, both inside the bed's network namespace and in a private mount namespace, so
# that rpcbind's machine-wide paths (/run/rpcbind.sock, /run/rpcbind.lock, /run/rpcbind/)
# belong to this bed only: the private /run is DIR/nfs/run, with /run/offbox-testbed bound
# back into it.
#
# Two ways to use it:
#   source tests/testbed/nfs.sh   from tests/testbed/up, after targets.env and
#                                 offbox-targets.toml are written (uses up's variables)
#   tests/testbed/nfs.sh restart-ganesha DIR
#                                 start Ganesha again (after a test killed it), in the
#                                 same namespaces, and record its new PID
#
# Exports (NFSv3 over TCP, NFS port 2049, MOUNT port 20048, unprivileged client ports
# allowed, no root squash):
#   /offbox         a 256 MiB tmpfs; the target directory is its subdirectory pam01
#   /offbox-small   a tmpfs of TESTBED_SMALL_MB MiB (default 2), for the full-target test
#   /offbox-denied  open to 192.0.2.1 only: mounting it from the bed's host side is refused
# Writes NFS_* lines into DIR/targets.env and [targets.testbed-nfs*] into
# DIR/offbox-targets.toml. Needs nfs-ganesha, nfs-ganesha-vfs, rpcbind, util-linux.

# shellcheck disable=SC2154  # dir, ns, remote, srv, id, fail: set by tests/testbed/up
nfs_mount_port=20048

# Starts ganesha.nfsd in the mount and network namespaces of the bed's rpcbind.
nfs_start_ganesha() {
  local dir=$1 rpcbind_pid=$2
  rm -f "$dir/nfs/ganesha.pid"
  # A fresh log, so that the wait below sees this start's messages only.
  if [[ -f "$dir/nfs/ganesha.log" ]]; then
    cat "$dir/nfs/ganesha.log" >> "$dir/nfs/ganesha.log.old"; rm -f "$dir/nfs/ganesha.log"
  fi
  nsenter -t "$rpcbind_pid" -m -n -- /usr/bin/ganesha.nfsd -F -L "$dir/nfs/ganesha.log" \
    -f "$dir/nfs/ganesha.conf" -p "$dir/nfs/ganesha.pid" -N NIV_EVENT \
    > "$dir/nfs/ganesha.out" 2>&1 &
  echo "ganesha_pid=$!" >> "$dir/state"
}

# True while PID runs (a zombie, dead but not yet reaped, counts as gone).
nfs_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# Stops PID (SIGTERM, SIGKILL after 10 s) and waits until it is gone, so that its
# listening sockets are closed before another Ganesha starts on the same ports.
nfs_stop_pid() {
  local pid=$1
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 200); do nfs_alive "$pid" || return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null
  for _ in $(seq 1 200); do nfs_alive "$pid" || return 0; sleep 0.05; done
}

# Waits (up to 90 s: a loaded machine starts Ganesha slowly) until Ganesha (the last
# ganesha_pid in DIR/state) logged the end of its start-up, answers RPC NULL calls for NFS
# v3 and MOUNT v3 through the bed's rpcbind, and is the process listening on both ports
# (not a previous instance that is still going away).
nfs_wait_ganesha() {
  local dir=$1 ns=$2 remote=$3 pid deadline=$((SECONDS + 90)) port
  pid=$(grep '^ganesha_pid=' "$dir/state" | tail -1 | cut -d= -f2)
  while ! grep -q "NFS SERVER INITIALIZED" "$dir/nfs/ganesha.log" 2>/dev/null; do
    nfs_alive "$pid" && (( SECONDS < deadline )) || return 1
    sleep 0.05
  done
  while :; do
    nfs_alive "$pid" && (( SECONDS < deadline )) || return 1
    if ip netns exec "$ns" rpcinfo -t "$remote" nfs 3 >/dev/null 2>&1 &&
       ip netns exec "$ns" rpcinfo -t "$remote" mountd 3 >/dev/null 2>&1; then
      local mine=1
      for port in 2049 "$nfs_mount_port"; do
        ip netns exec "$ns" ss -Hltnp "sport = :$port" | grep -q "pid=$pid," || mine=""
      done
      [[ -n "$mine" ]] && return 0
    fi
    sleep 0.1
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # Run directly.
  set -euo pipefail
  [[ "${1:-}" == restart-ganesha ]] || { echo "usage: $0 restart-ganesha DIR" >&2; exit 2; }
  dir=$(cd "${2:?usage: $0 restart-ganesha DIR}" && pwd)
  # shellcheck disable=SC1091
  source "$dir/state"
  nfs_stop_pid "${ganesha_pid:-}"
  nfs_start_ganesha "$dir" "$rpcbind_pid"
  remote=$(grep '^TESTBED_REMOTE=' "$dir/targets.env" | cut -d= -f2)
  nfs_wait_ganesha "$dir" "$ns" "$remote" || {
    echo "testbed: ganesha did not restart: $(tail -5 "$dir/nfs/ganesha.log")" >&2; exit 1; }
  new=$(grep '^ganesha_pid=' "$dir/state" | tail -1 | cut -d= -f2)
  sed -i "s/^GANESHA_PID=.*/GANESHA_PID=$new/" "$dir/targets.env"
  echo "testbed: ganesha restarted ($new)"
  exit 0
fi

# Sourced by tests/testbed/up: dir, ns, remote, srv, id and fail are set.
mkdir -p "$dir/nfs/run/offbox-testbed" "$dir/nfs/recovery" "$srv/nfs" "$srv/nfs-small" \
  "$srv/nfs-denied"
mount -t tmpfs -o size=256m,mode=0755 "offbox-tb-$id-nfs" "$srv/nfs" || fail "cannot mount tmpfs"
mount -t tmpfs -o "size=${TESTBED_SMALL_MB:-2}m,mode=0755" "offbox-tb-$id-nfs-small" \
  "$srv/nfs-small" || fail "cannot mount tmpfs"
echo "mounts=\"\$mounts $srv/nfs $srv/nfs-small\"" >> "$dir/state"
mkdir -p "$srv/nfs/pam01"

cat > "$dir/nfs/ganesha.conf" <<CONF
NFS_CORE_PARAM {
  Bind_addr = $remote;
  NFS_Port = 2049;
  MNT_Port = $nfs_mount_port;
  Protocols = 3;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Mount_Path_Pseudo = true;
}
NFS_KRB5 {
  Active_krb5 = false;
}
NFSV4 {
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = "$dir/nfs/recovery";
}
LOG {
  Default_Log_Level = EVENT;
}
EXPORT_DEFAULTS {
  Transports = TCP;
  Protocols = 3;
  SecType = sys;
  PrivilegedPort = false;
  Squash = No_Root_Squash;
}
EXPORT {
  Export_Id = 1;
  Path = "$srv/nfs";
  Pseudo = /offbox;
  Access_Type = RW;
  FSAL { Name = VFS; }
}
EXPORT {
  Export_Id = 2;
  Path = "$srv/nfs-small";
  Pseudo = /offbox-small;
  Access_Type = RW;
  FSAL { Name = VFS; }
}
EXPORT {
  Export_Id = 3;
  Path = "$srv/nfs-denied";
  Pseudo = /offbox-denied;
  Access_Type = None;
  CLIENT { Clients = 192.0.2.1; Access_Type = RW; }
  FSAL { Name = VFS; }
}
CONF

# rpcbind in a private mount namespace whose /run is DIR/nfs/run (the bed's storage under
# /run/offbox-testbed stays visible); Ganesha registers with it through its unix socket.
# shellcheck disable=SC2016  # expanded by the inner bash
ip netns exec "$ns" unshare -m --propagation private -- bash -c '
  set -e
  mount --rbind /run/offbox-testbed "$1/nfs/run/offbox-testbed"
  mount --rbind "$1/nfs/run" /run
  mkdir -p /run/rpcbind
  exec /usr/sbin/rpcbind -f
' nfs-rpcbind "$dir" > "$dir/nfs/rpcbind.log" 2>&1 &
echo "rpcbind_pid=$!" >> "$dir/state"
nfs_rpcbind_pid=$!
for _ in $(seq 1 100); do [[ -S "$dir/nfs/run/rpcbind.sock" ]] && break; sleep 0.05; done
[[ -S "$dir/nfs/run/rpcbind.sock" ]] || fail "rpcbind did not start: $(cat "$dir/nfs/rpcbind.log")"

nfs_start_ganesha "$dir" "$nfs_rpcbind_pid"
if ! nfs_wait_ganesha "$dir" "$ns" "$remote"; then
  # One more try (the first log goes to ganesha.log.old).
  echo "testbed: ganesha did not start, trying again: $(tail -5 "$dir/nfs/ganesha.log" 2>/dev/null)" >&2
  nfs_stop_pid "$(grep '^ganesha_pid=' "$dir/state" | tail -1 | cut -d= -f2)"
  nfs_start_ganesha "$dir" "$nfs_rpcbind_pid"
  nfs_wait_ganesha "$dir" "$ns" "$remote" || fail "ganesha did not start: $(tail -20 "$dir/nfs/ganesha.log")"
fi

nfs_q="?mountport=$nfs_mount_port"
cat >> "$dir/targets.env" <<ENV
NFS_URL=nfs://$remote/offbox/pam01$nfs_q
NFS_SMALL_URL=nfs://$remote/offbox-small$nfs_q
NFS_DENIED_URL=nfs://$remote/offbox-denied$nfs_q
NFS_DATA_DIR=$srv/nfs/pam01
NFS_SMALL_DIR=$srv/nfs-small
GANESHA_PID=$(grep '^ganesha_pid=' "$dir/state" | tail -1 | cut -d= -f2)
RPCBIND_PID=$nfs_rpcbind_pid
ENV
cat >> "$dir/offbox-targets.toml" <<TOML

[targets.testbed-nfs]
url = "nfs://$remote/offbox/pam01$nfs_q"
timeout_secs = 10

[targets.testbed-nfs-small]
url = "nfs://$remote/offbox-small$nfs_q"
timeout_secs = 10

[targets.testbed-nfs-denied]
url = "nfs://$remote/offbox-denied$nfs_q"
timeout_secs = 10
TOML
