#!/usr/bin/env bash
# bench/backup.sh — compare offbox backup/restore speed with common peers.
# This is a performance comparison, not a test: it prints a table and only
# fails if its own setup fails.
#
# Usage:
#   bench/backup.sh [SIZE_MIB]          (default 1024)
#
# Environment:
#   BENCH_DIR        where the dataset cache and run outputs live
#                    (default /tmp/offbox-bench); the dataset for a size is
#                    generated once into BENCH_DIR/data-SIZE and reused
#   OFFBOX_BIN       use this offbox binary instead of `cargo build --release`
#                    and target/release/offbox
#   BENCH_TPM=1      use the swtpm backend (hsm-sim/up --tpm) instead of SoftHSM2
#   BENCH_KEEP=1     keep the run's outputs (archives, repositories, restores)
#   RESTIC_PASSWORD  restic repository password (default: offbox-bench)
#   BORG_PASSPHRASE  borg repository passphrase (default: offbox-bench)
#
#   BENCH_REPEAT     rounds of every backup and restore (default 3); the tools run
#                    in a rotated order each round, and the report gives the
#                    median and the range of the wall time
#   BENCH_BACKUP_REPEAT  rounds of the backups alone (default BENCH_REPEAT), for
#                    runs that repeat the restores more than the backups
#   BENCH_RESTORE_FS ext4 (default): restore onto a new ext4 file system (journal
#                    on) on a loop device, made for the run (needs root, as the
#                    rest of the bench: losetup, mount); none: into the run
#                    directory (see RESTORE_ROOT below for why)
#
# What it measures (wall seconds, peak RSS, user and system CPU seconds via
# /usr/bin/time -f '%e %M %U %S'; CPU is reported as user+system seconds per GiB
# of the dataset):
#   backup  offbox    offbox backup create --kind system --source DATA --output - > offbox.obx
#   backup  tar|zstd|age   tar -cf - . | zstd -1 -T0 | age -r RECIPIENT > tzage.age
#   backup  restic    restic backup (fresh repo; `restic init` not timed)
#   backup  borg      borg create --compression zstd,1 (fresh repokey repo; init not timed)
#   restore offbox    offbox restore offbox.obx --to DIR (syncs the tree before publishing it)
#   restore offbox --no-sync   the same without the sync: what durability costs
#   restore tar|zstd|age   age -d | zstd -d | tar -x
#   restore restic    restic restore latest
#   restore borg      borg extract
# The dataset (~40% log-like text, ~30% random binary, ~15% already-compressed
# media/archives, ~15% small files of 1-16 KiB in nested dirs, a quarter of them
# with a user.* attribute and some with an ACL) is read once before timing, so
# every tool starts with a warm page cache. Before every timed restore the
# previous restores are removed and `sync` runs, so no tool pays for another's
# writeback; the restores go to a new ext4 file system (BENCH_RESTORE_FS). offbox alone is also timed on the
# small files with and without their attributes (the cost of reading them), and
# on a 1 GiB sparse file holding 1 MiB of data.
#
# Missing Debian packages (zstd, age, restic, borgbackup, time, python3) are
# installed with apt-get. The simulator and run outputs are removed at exit;
# the dataset cache is kept.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
note() { printf 'bench: %s\n' "$*" >&2; }

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
[ $# -le 1 ] || die "usage: bench/backup.sh [SIZE_MIB]"
SIZE_MIB=${1:-1024}
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a positive integer (got '$SIZE_MIB')"
[ "$SIZE_MIB" -ge 8 ] || die "SIZE_MIB must be at least 8"

BENCH_DIR=${BENCH_DIR:-/tmp/offbox-bench}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-offbox-bench}
export BORG_PASSPHRASE=${BORG_PASSPHRASE:-offbox-bench}

# --- packages -----------------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
APT_UPDATED=0
apt_install() {
  note "installing missing packages: $*"
  if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >&2; then
    return 0
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    APT_UPDATED=1
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >&2
  else
    return 1
  fi
}
# need CMD PKG : make sure CMD (a name on PATH or an absolute path) exists.
have() { if [[ $1 == /* ]]; then [ -x "$1" ]; else command -v "$1" >/dev/null 2>&1; fi; }
need() {
  have "$1" && return 0
  apt_install "$2" || die "could not install $2 (needed for $1)"
  have "$1" || die "$1 still missing after installing $2"
}
need zstd zstd
need age age
need age-keygen age
need restic restic
need borg borgbackup
need /usr/bin/time time
need python3 python3
need tar tar

# --- dataset ------------------------------------------------------------------
mkdir -p "$BENCH_DIR"
DATA="$BENCH_DIR/data-$SIZE_MIB"
if [ ! -f "$DATA.done" ]; then
  note "generating a ${SIZE_MIB} MiB dataset in $DATA (cached for later runs)"
  rm -rf "$DATA" "$DATA.partial"
  python3 - "$DATA.partial" "$SIZE_MIB" <<'PYEOF'
"""Generate the mixed benchmark dataset quickly (about 100 MB/s of text)."""
import os, random, sys

root, size_mib = sys.argv[1], int(sys.argv[2])
total = size_mib << 20
rng = random.Random()
ri = rng.randrange

LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
COMPONENTS = ["hsm", "kmip", "tls", "audit", "backup", "sched", "api", "raft"]
MSGS = ["request served", "key unwrapped", "session opened", "session closed",
        "certificate validated", "slot refreshed", "retrying connection",
        "audit record appended", "cache miss", "rotated log segment"]
# Lines are a random head joined to a random body: 2^32 distinct lines, no
# long repeats for deduplicating tools to exploit, compresses roughly 3.5:1.
HEADS = [("%d.%06d %s [%s] pid=%d " % (1700000000 + ri(10**7), ri(10**6), LEVELS[ri(6)],
          COMPONENTS[ri(8)], ri(100, 40000))).encode() for _ in range(65536)]
BODIES = [("req=%08x user=u%04d %s latency_us=%d bytes=%d\n" % (rng.getrandbits(32), ri(10000),
           MSGS[ri(10)], ri(50, 250000), ri(1 << 20))).encode() for _ in range(65536)]

def text(nbytes):
    """About nbytes of log lines (whole lines, trimmed to nbytes)."""
    out, n = [], 0
    while n < nbytes:
        k = max(16, min(16384, (nbytes - n) // 90 + 1))
        ia = memoryview(os.urandom(2 * k)).cast("H")
        ib = memoryview(os.urandom(2 * k)).cast("H")
        parts = [b""] * (2 * k)
        parts[0::2] = [HEADS[i] for i in ia]
        parts[1::2] = [BODIES[i] for i in ib]
        chunk = b"".join(parts)
        out.append(chunk)
        n += len(chunk)
    return b"".join(out)[:nbytes]

def write_big(path, nbytes, gen, piece=8 << 20):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(piece, left)
            f.write(gen(n))
            left -= n

def fill(budget, dirname, stem, ext, file_size, gen):
    i = 0
    while budget > 0:
        n = min(file_size(), budget)
        write_big(os.path.join(root, dirname, "%s-%03d.%s" % (stem, i, ext(i))), n, gen)
        budget -= n
        i += 1

text_b = total * 40 // 100
rand_b = total * 30 // 100
comp_b = total * 15 // 100
small_b = total - text_b - rand_b - comp_b

fill(text_b, "var/log", "app", lambda i: "log", lambda: 32 << 20, text)
fill(rand_b, "srv/blobs", "blob", lambda i: "bin", lambda: 64 << 20, os.urandom)
fill(comp_b, "srv/media", "item", lambda i: ("jpg", "gz", "zst", "png")[i % 4],
     lambda: ri(1 << 20, 8 << 20), os.urandom)

# Small files: 1-16 KiB, 60% text / 40% random, 64 per leaf dir, 2 levels deep.
i = 0
while small_b > 0:
    n = min(ri(1024, 16 * 1024 + 1), small_b)
    d = os.path.join(root, "etc/appliance", "d%02d" % (i // 4096), "e%02d" % ((i // 64) % 64))
    if i % 64 == 0:
        os.makedirs(d, exist_ok=True)
    is_text = ri(10) < 6
    with open(os.path.join(d, "f%05d.%s" % (i, "conf" if is_text else "dat")), "wb") as f:
        f.write(text(n) if is_text else os.urandom(n))
    small_b -= n
    i += 1
print("generated %d small files" % i, file=sys.stderr)
PYEOF
  mv "$DATA.partial" "$DATA"
  touch "$DATA.done"
fi
# Extended attributes on a quarter of the small files (a user.* tag and, for every
# 16th file, a POSIX ACL), as applications and vault directories set them. Added to a
# cached dataset too, once.
if [ ! -f "$DATA.xattrs" ]; then
  note "adding extended attributes to a quarter of the small files"
  python3 - "$DATA/etc/appliance" <<'PYEOF'
import os, struct, sys
n = 0
for d, _, files in os.walk(sys.argv[1]):
    for i, f in enumerate(sorted(files)):
        if i % 4:
            continue
        p = os.path.join(d, f)
        os.setxattr(p, "user.appliance.tag", b"class=audit;retention=400d;origin=node-07")
        if i % 16 == 0:
            # user::rw-, user:1001:r--, group::r--, mask::r--, other::--- (Linux binary ACL)
            acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p_, q) for t, p_, q in
                  [(1, 6, 0xFFFFFFFF), (2, 4, 1001), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])
            os.setxattr(p, "system.posix_acl_access", acl)
        n += 1
print("set extended attributes on %d files" % n, file=sys.stderr)
PYEOF
  touch "$DATA.xattrs"
fi
DATA_FILES=$(find "$DATA" -type f | wc -l)
DATA_BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')

# --- offbox binary ------------------------------------------------------------
if [ -n "${OFFBOX_BIN:-}" ]; then
  OFFBOX=$OFFBOX_BIN
else
  command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust or set OFFBOX_BIN"
  note "building offbox (cargo build --release)"
  (cd "$REPO_ROOT" && cargo build --release) >&2 || die "cargo build --release failed"
  OFFBOX="$REPO_ROOT/target/release/offbox"
fi
[ -x "$OFFBOX" ] || die "offbox binary not found at $OFFBOX"

# --- run directory, simulator, cleanup ----------------------------------------
WORK=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
OUT="$WORK/out"
SIM="$WORK/sim"
mkdir -p "$OUT"
export RESTIC_CACHE_DIR="$WORK/restic-cache"
export BORG_BASE_DIR="$WORK/borg-base"
export BORG_DISPLAY_PASSPHRASE=no

cleanup() {
  if [ -n "${RESTORE_DEV:-}" ]; then
    umount "$RESTORE_ROOT" 2>/dev/null || true
    losetup -d "$RESTORE_DEV" 2>/dev/null || true
  fi
  if [ -e "$SIM" ]; then "$REPO_ROOT/hsm-sim/down" "$SIM" >/dev/null 2>&1 || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    note "kept run outputs in $WORK"
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The simulator gets a recovery key (offbox refuses archives without a recovery
# slot unless told otherwise), so offbox archives carry both slots, as in production.
sim_args=()
[ "${BENCH_TPM:-0}" = 1 ] && sim_args+=(--tpm)
OFFBOX_BIN="$OFFBOX" "$REPO_ROOT/hsm-sim/up" "$SIM" ${sim_args[@]+"${sim_args[@]}"} >"$WORK/sim-up.log" 2>&1 \
  || { cat "$WORK/sim-up.log" >&2; die "hsm-sim/up failed"; }
# shellcheck source=/dev/null
source "$SIM/env"
CFG="$SIM/offbox.toml"

OFFBOX_OK=1
if ! "$OFFBOX" --config "$CFG" keys status </dev/null >"$WORK/keys-init.log" 2>&1; then
  OFFBOX_OK=0
  note "offbox keys status failed (hsm-sim/up runs keys init); offbox rows will be skipped. Its output:"
  tail -n 20 "$WORK/keys-init.log" >&2
fi

age-keygen -o "$WORK/age.key" 2>/dev/null
AGE_RECIPIENT=$(age-keygen -y "$WORK/age.key")

# Warm the page cache so the first tool is not penalised. (tar to a pipe:
# GNU tar skips reading file data when writing straight to /dev/null.)
tar -C "$DATA" -cf - . | cat >/dev/null

# --- measuring ----------------------------------------------------------------
ROWS=()   # "phase;tool;seconds;peak_rss_kib;output_bytes;status;user_s;sys_s"
REPEAT=${BENCH_REPEAT:-3}

# size_of PATH : bytes of a file, or total bytes of the files under a directory.
size_of() {
  if [ -f "$1" ]; then stat -c %s "$1"
  elif [ -d "$1" ]; then find "$1" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}'
  else echo 0
  fi
}

# timed PHASE TOOL OUTPUT STDOUT_FILE CMD... : run CMD under /usr/bin/time with
# stdout to STDOUT_FILE and stderr to a log, and record a table row.
timed() {
  local phase=$1 tool=$2 output=$3 stdout_file=$4
  shift 4
  local tag="${phase}-${tool//[^a-z]/_}"
  local tf="$WORK/time.$tag" log="$WORK/log.$tag"
  note "$phase: $tool"
  if /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$stdout_file" 2>"$log" </dev/null; then
    local secs rss usr sys
    read -r secs rss usr sys < <(tail -n 1 "$tf")
    ROWS+=("$phase;$tool;$secs;$rss;$(size_of "$output");ok;$usr;$sys")
  else
    ROWS+=("$phase;$tool;;;0;FAILED;;")
    note "$phase with $tool failed; last lines of its output:"
    tail -n 20 "$log" >&2
  fi
}

# check_restore TOOL DIR : compare file count and byte total with the dataset.
CHECKS=()
check_restore() {
  local n b
  n=$(find "$2" -type f 2>/dev/null | wc -l)
  b=$(size_of "$2")
  if [ "$n" -eq "$DATA_FILES" ] && [ "$b" -eq "$DATA_BYTES" ]; then
    CHECKS+=("$1: restored $n files, $b bytes: matches")
  else
    CHECKS+=("$1: restored $n files, $b bytes: MISMATCH (dataset has $DATA_FILES files, $DATA_BYTES bytes)")
  fi
}

# rotated ROUND ITEM... : the items, rotated left by ROUND, one per line.
rotated() {
  local r=$1
  shift
  local n=$#
  local items=("$@") i
  for ((i = 0; i < n; i++)); do printf '%s\n' "${items[$(((i + r) % n))]}"; done
}

# One backup with TOOL; restic and borg get a fresh repository each round.
backup_with() {
  case $1 in
    offbox)
      [ "$OFFBOX_OK" -eq 1 ] || return 0
      timed backup offbox "$OUT/offbox.obx" "$OUT/offbox.obx" \
        "$OFFBOX" --config "$CFG" backup create --kind system --source "$DATA" --output - ;;
    tzage)
      # shellcheck disable=SC2016  # the pipeline expands its own positional args
      timed backup "tar|zstd|age" "$OUT/tzage.age" /dev/null \
        bash -c 'set -o pipefail; tar -C "$1" -cf - . | zstd -1 -T0 -q | age -r "$2" >"$3"' \
        _ "$DATA" "$AGE_RECIPIENT" "$OUT/tzage.age" ;;
    restic)
      rm -rf "$OUT/restic-repo"
      restic --repo "$OUT/restic-repo" init >"$WORK/restic-init.log" 2>&1 \
        || { cat "$WORK/restic-init.log" >&2; die "restic init failed"; }
      timed backup restic "$OUT/restic-repo" /dev/null \
        env -C "$DATA" restic --repo "$OUT/restic-repo" backup --quiet --host bench . ;;
    borg)
      rm -rf "$OUT/borg-repo"
      borg init --encryption=repokey "$OUT/borg-repo" >"$WORK/borg-init.log" 2>&1 \
        || { cat "$WORK/borg-init.log" >&2; die "borg init failed"; }
      timed backup borg "$OUT/borg-repo" /dev/null \
        env -C "$DATA" borg create --compression zstd,1 "$OUT/borg-repo::bench" . ;;
  esac
}

# Where the restores go: a freshly made ext4 file system with the defaults
# (journal on), on a loop device over a file of the run directory, so that every
# tool restores onto the file system an appliance has. The root file system of
# the project's test machines is ext4 without a journal, and there ext4 checks
# every candidate inode against the inode table for one freed in the last 30 s
# (or 330 s while that table block is dirty; recently_deleted() in
# fs/ext4/ialloc.c runs only without a journal): a restore right after the
# previous one was deleted spends most of its time skipping freed inodes, a
# cost of the benchmark's own deletions. BENCH_RESTORE_FS=none restores into
# the run directory instead.
RESTORE_ROOT=$OUT
RESTORE_FS_NOTE="the run directory"
if [ "${BENCH_RESTORE_FS:-ext4}" = ext4 ]; then
  for t in mkfs.ext4 losetup; do command -v "$t" >/dev/null || die "$t is missing (BENCH_RESTORE_FS=none restores into the run directory)"; done
  truncate -s "$(( DATA_BYTES * 3 / 2 + (1 << 30) ))" "$WORK/restore-fs.img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/restore-fs.img"
  RESTORE_DEV=$(losetup --direct-io=on -f --show "$WORK/restore-fs.img")
  RESTORE_ROOT="$WORK/restore-fs"
  mkdir -p "$RESTORE_ROOT"
  mount "$RESTORE_DEV" "$RESTORE_ROOT"
  RESTORE_FS_NOTE="a new ext4 (journal on) on $RESTORE_DEV"
fi

# One restore with TOOL into a fresh directory, after removing the earlier
# restores and flushing everything to disk, so that no tool pays for another's
# writeback.
restore_with() {
  rm -rf "$RESTORE_ROOT"/restore-*
  sync
  case $1 in
    offbox|offbox-nosync)
      [ "$OFFBOX_OK" -eq 1 ] && [ -s "$OUT/offbox.obx" ] || return 0
      local flag=() label=offbox
      [ "$1" = offbox-nosync ] && { flag=(--no-sync); label="offbox --no-sync"; }
      timed restore "$label" "$RESTORE_ROOT/restore-$1" /dev/null \
        "$OFFBOX" --config "$CFG" restore "$OUT/offbox.obx" --to "$RESTORE_ROOT/restore-$1" ${flag[@]+"${flag[@]}"}
      check_restore "$label" "$RESTORE_ROOT/restore-$1" ;;
    tzage)
      mkdir -p "$RESTORE_ROOT/restore-tzage"
      # shellcheck disable=SC2016  # the pipeline expands its own positional args
      timed restore "tar|zstd|age" "$RESTORE_ROOT/restore-tzage" /dev/null \
        bash -c 'set -o pipefail; age -d -i "$1" "$2" | zstd -d -q | tar -C "$3" -xf -' \
        _ "$WORK/age.key" "$OUT/tzage.age" "$RESTORE_ROOT/restore-tzage"
      check_restore "tar|zstd|age" "$RESTORE_ROOT/restore-tzage" ;;
    restic)
      timed restore restic "$RESTORE_ROOT/restore-restic" /dev/null \
        restic --repo "$OUT/restic-repo" restore latest --target "$RESTORE_ROOT/restore-restic"
      check_restore restic "$RESTORE_ROOT/restore-restic" ;;
    borg)
      mkdir -p "$RESTORE_ROOT/restore-borg"
      timed restore borg "$RESTORE_ROOT/restore-borg" /dev/null \
        env -C "$RESTORE_ROOT/restore-borg" borg extract "$OUT/borg-repo::bench"
      check_restore borg "$RESTORE_ROOT/restore-borg" ;;
  esac
}

# Backups, REPEAT rounds in rotated order.
for ((round = 0; round < ${BENCH_BACKUP_REPEAT:-$REPEAT}; round++)); do
  while read -r tool; do backup_with "$tool"; done < <(rotated "$round" offbox tzage restic borg)
done

# The cost of reading extended attributes: the small files with their attributes, and a
# copy without any; and a 1 GiB sparse file with 1 MiB of data at its ends.
EXTRA=()
if [ "$OFFBOX_OK" -eq 1 ]; then
  cp -r --no-preserve=xattr,mode "$DATA/etc/appliance" "$WORK/small-noxattr"
  for variant in "$DATA/etc/appliance" "$WORK/small-noxattr"; do
    secs=()
    for _ in 1 2 3; do
      /usr/bin/time -f '%e' -o "$WORK/time.x" "$OFFBOX" --config "$CFG" backup create --kind system \
        --source "$variant" --output - </dev/null >/dev/null 2>"$WORK/log.x"
      secs+=("$(tail -n 1 "$WORK/time.x")")
    done
    EXTRA+=("small files $( [ "$variant" = "$WORK/small-noxattr" ] && echo 'without xattrs' || echo 'with xattrs on 1/4')"\
"  ($(find "$variant" -type f | wc -l) files): best of 3 $(printf '%s\n' "${secs[@]}" | sort -n | head -1) s")
  done
  mkdir -p "$WORK/sparse"
  python3 -c 'import os,sys
f=open(sys.argv[1],"wb"); f.truncate(1<<30); f.write(os.urandom(512<<10)); f.seek((1<<30)-(512<<10)); f.write(os.urandom(512<<10))' \
    "$WORK/sparse/disk.img"
  /usr/bin/time -f '%e %M' -o "$WORK/time.s" "$OFFBOX" --config "$CFG" backup create --kind system \
    --source "$WORK/sparse" --output - </dev/null >"$WORK/sparse.obx" 2>"$WORK/log.s"
  read -r s_secs s_rss < <(tail -n 1 "$WORK/time.s")
  EXTRA+=("sparse 1 GiB file (1 MiB of data): backup $s_secs s, peak RSS $((s_rss / 1024)) MiB, archive $(stat -c %s "$WORK/sparse.obx") bytes")
  /usr/bin/time -f '%e' -o "$WORK/time.r" "$OFFBOX" --config "$CFG" restore "$WORK/sparse.obx" \
    --to "$WORK/sparse-restore" </dev/null >/dev/null 2>&1
  EXTRA+=("sparse 1 GiB file: restore $(tail -n 1 "$WORK/time.r") s, allocated $(du -sk "$WORK/sparse-restore" | cut -f1) KiB")
fi

# Restores, REPEAT rounds in rotated order.
for ((round = 0; round < REPEAT; round++)); do
  while read -r tool; do restore_with "$tool"; done \
    < <(rotated "$round" offbox tzage restic offbox-nosync borg)
done

# --- report -------------------------------------------------------------------
backend=pkcs11/SoftHSM2
[ "${BENCH_TPM:-0}" = 1 ] && backend=tpm/swtpm
printf '\noffbox backup benchmark\n'
printf '  dataset : %s (%d files, %.1f MiB; ~40%% text, 30%% random, 15%% compressed, 15%% small files)\n' \
  "$DATA" "$DATA_FILES" "$(awk -v b="$DATA_BYTES" 'BEGIN {print b / 1048576}')"
printf '  machine : %s cores, %s\n' "$(nproc)" "$(uname -sr)"
printf '  offbox  : %s (keys: %s)\n' "$OFFBOX" "$backend"
printf '  peers   : %s; %s; age %s; %s\n' "$(restic version | cut -d' ' -f1-2)" "$(borg --version)" \
  "$(age --version)" "$(zstd --version | sed 's/^\*\*\* //; s/,.*//')"
printf '\n'
printf '\n  load    : %s (load average at the end of the run; a nice-19 background job counts)\n' \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  rounds  : %s of backups, %s of restores, tools in rotated order, sync before every restore\n' \
  "${BENCH_BACKUP_REPEAT:-$REPEAT}" "$REPEAT"
printf '  restores: onto %s\n\n' "$RESTORE_FS_NOTE"
printf '%s\n' "${ROWS[@]}" | python3 -c '
import sys
data_bytes = int(sys.argv[1])
gib = data_bytes / (1 << 30)
runs, order = {}, []
for line in sys.stdin:
    phase, tool, secs, rss, out, status, usr, sys_ = line.rstrip("\n").split(";")
    key = (phase, tool)
    if key not in runs:
        runs[key] = []
        order.append(key)
    if status == "ok":
        runs[key].append((float(secs), int(rss), int(out), float(usr) + float(sys_)))
    else:
        runs[key].append(None)
def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
med = {}
for key in order:
    ok = [r for r in runs[key] if r]
    if ok and len(ok) == len(runs[key]):
        med[key] = median([r[0] for r in ok])
fmt = "%-8s %-17s %8s %13s %8s %11s %9s %10s %14s\n"
sys.stdout.write(fmt % ("phase", "tool", "median s", "range s", "MiB/s", "CPU s/GiB", "peak RSS", "output MiB", "offbox/tool x"))
sys.stdout.write(fmt % ("-------", "----------------", "--------", "-------------", "------", "---------", "--------", "----------", "-------------"))
for key in order:
    phase, tool = key
    ok = [r for r in runs[key] if r]
    if key not in med:
        sys.stdout.write(fmt % (phase, tool, "FAILED", "%d/%d ok" % (len(ok), len(runs[key])), "-", "-", "-", "-", "-"))
        continue
    m = med[key]
    lo, hi = min(r[0] for r in ok), max(r[0] for r in ok)
    cpu = median([r[3] for r in ok]) / gib
    rss = max(r[1] for r in ok) / 1024
    out = ok[-1][2] / 1048576
    # Restores compare like with like: the peers do not sync, so neither does the
    # reference; the synced row shows what the durable default costs.
    ref = med.get((phase, "offbox --no-sync" if phase == "restore" else "offbox"))
    ratio = "%.2f" % (m / ref) if ref else "-"
    sys.stdout.write(fmt % (phase, tool, "%.2f" % m, "%.2f-%.2f" % (lo, hi), "%.1f" % (data_bytes / 1048576 / m),
                            "%.2f" % cpu, "%.1f MiB" % rss, "%.1f" % out, ratio))
' "$DATA_BYTES"
cat <<'EOF'

Notes:
  - median s / range s: wall seconds over the rounds; MiB/s is dataset size /
    median wall seconds, for backup and restore alike.
  - CPU s/GiB: median user+system CPU seconds (all threads and, for the
    pipeline, all its processes) per GiB of the dataset.
  - "offbox/tool x" is that tool's median wall time divided by offbox's in the
    same phase (above 1 means offbox is faster). For restores the reference is
    "offbox --no-sync", since the peers do not sync either; the "offbox" row is
    offbox's default, which syncs the tree before publishing it, and its
    ratio is what that durability costs.
  - For the tar|zstd|age pipeline, time runs `bash -c PIPELINE`; GNU time
    reports the largest peak RSS among the pipeline's processes, not their sum.
  - Output MiB: archive file size for offbox and tar|zstd|age, repository
    size for restic and borg, restored bytes for restores.
  - The page cache is warm for every tool; restic/borg repos start empty (a
    fresh one each round), so deduplication only helps within the dataset.
  - Before each restore the earlier restores are deleted and `sync` runs. The
    restores go to a new ext4 file system with its journal (BENCH_RESTORE_FS).
EOF
if [ "${#EXTRA[@]}" -gt 0 ]; then
  printf '\nExtended attributes and sparse files (offbox only):\n'
  printf '  %s\n' "${EXTRA[@]}"
fi
if [ "${#CHECKS[@]}" -gt 0 ]; then
  printf '\nRestore checks (file count and byte total vs the dataset):\n'
  printf '  %s\n' "${CHECKS[@]}"
fi
