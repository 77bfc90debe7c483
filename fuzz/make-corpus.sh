#!/usr/bin/env bash
# Regenerates the committed seed corpora of the fuzz targets (fuzz/corpus/<target>/) from the
# project's own material: the format vectors and test keys (through examples/seeds.rs), the
# example configs of docs/ and of the simulator, the URLs of docs/targets.md, and small tar
# files made with GNU tar (symlinks, hard links, `..` names, absolute names, long names).
# Usage: bash fuzz/make-corpus.sh   (needs cargo and GNU tar; no nightly)
set -euo pipefail
cd "$(dirname "$0")"
FUZZ=$PWD
REPO=$(cd .. && pwd)
C=$FUZZ/corpus
rm -rf "$C"
mkdir -p "$C"/{header,segments,trailer,share,config,target_url,unpack}

# --- binary seeds: header, segments, trailer, share --------------------------------------
cargo run --quiet --manifest-path "$FUZZ/Cargo.toml" --example seeds -- "$C"

# --- config: every ```toml block of the docs, and the simulator's configs ---------------
n=0
for doc in "$REPO"/docs/*.md; do
  awk -v out="$C/config/doc-$(basename "$doc" .md)" '
    /^```toml$/ { n++; f = out "-" n ".toml"; on = 1; next }
    /^```$/ { on = 0; next }
    on { print > f }' "$doc"
done
# The doc blocks hold only parts; a whole config needs [keys].
cat "$C"/config/doc-operator-guide-1.toml "$C"/config/doc-targets-1.toml >"$C/config/doc-operator-guide-with-targets.toml"
cat >"$C/config/hsm-sim-pkcs11.toml" <<'TOML'
appliance_id = "hsm-sim"
[backup]
sources = []
exclude = []
[keys]
backend = "pkcs11"
[keys.pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "offbox-sim"
pin_file = "sim/pin"
key_label = "offbox-kek"
[recovery]
public_key = "offbox-recovery-v1:132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472"
TOML
cat >"$C/config/hsm-sim-tpm.toml" <<'TOML'
appliance_id = "hsm-sim"
[backup]
sources = ["/etc", "/var/lib/vault"]
exclude = ["*.tmp", "/var/lib/vault/cache", "/var/*/c?che/"]
segment_size = 4096
[keys]
backend = "tpm"
[keys.tpm]
tcti = "swtpm:host=127.0.0.1,port=2321"
pcrs = [7, 11]
[recovery]
allow_without_recovery = true
[secrets]
export_command = ["/usr/sbin/vault-export", "--format", "json"]
[targets]
default = "nfs"
[targets.nfs]
url = "nfs://[2001:db8::5]:2049/srv/offbox?mountport=20048"
[targets.local]
url = "file:///mnt/offbox"
TOML

# --- target_url: URLs of docs/targets.md, archive names, address literals ---------------
grep -ohE '(ssh|sftp|smb|cifs|nfs|file)://[^ `"|)<>]+' "$REPO/docs/targets.md" "$REPO/docs/operator-guide.md" \
  | sort -u | head -40 | while read -r url; do
  n=$((n + 1)); printf '%s' "$url" >"$C/target_url/doc-$n"
done
printf '%s' 'ssh://offbox@[2001:db8::5]:2222/~/backups' >"$C/target_url/ssh-v6-home"
printf '%s' 'smb://CORP;svc%2Dbackup@nas.example.net:445/backup/pam01/' >"$C/target_url/smb-domain"
printf '%s' 'offbox-pam-prod-1-system-20261101T020000Z-a0a1a2a3.obx' >"$C/target_url/archive-name"
printf '%s' '0x7f.1' >"$C/target_url/inet-aton"
printf '%s' '[::ffff:127.0.0.1%eth0]' >"$C/target_url/v6-mapped"

# --- unpack: small tar files made with GNU tar -------------------------------------------
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/src/dir/sub" "$T/abs"
printf 'hello\n' >"$T/src/dir/file"
printf 'secret\n' >"$T/src/dir/sub/data"
chmod 4755 "$T/src/dir/file"
ln -s file "$T/src/dir/link"
ln -s ../../sentinel/secret "$T/src/dir/escape"
ln -s /etc/passwd "$T/src/dir/abs-link"
ln "$T/src/dir/file" "$T/src/dir/hard"
mkfifo "$T/src/dir/fifo"
long=$(printf 'x%.0s' $(seq 1 120))
printf 'long\n' >"$T/src/dir/$long"
printf 'abs\n' >"$T/abs/file"
tar_=(tar --format=gnu --owner=0 --group=0 --mtime=2026-11-01)
"${tar_[@]}" -C "$T/src" -cf "$C/unpack/tree.tar" dir
"${tar_[@]}" --format=posix -C "$T/src" -cf "$C/unpack/tree-pax.tar" dir
# `..` names and absolute names, which tar writes only when told (-P).
"${tar_[@]}" -C "$T/src/dir/sub" -P -cf "$C/unpack/dotdot.tar" ../file ../../dir/sub/data
"${tar_[@]}" -P -cf "$C/unpack/absolute.tar" --transform 's,^.*/abs/file$,/etc/offbox-fuzz-absolute,' "$T/abs/file"
# A symlink to outside, then a file written through it; a hard link to outside.
mkdir -p "$T/evil"
ln -s ../../sentinel "$T/evil/up"
"${tar_[@]}" -C "$T/evil" -cf "$C/unpack/through-symlink.tar" up
"${tar_[@]}" -C "$T/src/dir" -rf "$C/unpack/through-symlink.tar" --transform 's,^file$,up/secret,' file
"${tar_[@]}" -C "$T/src" -P -cf "$C/unpack/hardlink-out.tar" --transform 's,^dir/file$,../../sentinel/secret,RS' dir/file dir/hard
# Strip the zero padding at the end of each tar (it makes up most of their size).
for f in "$C"/unpack/*.tar; do
  python3 - "$f" <<'PY'
import sys
p = sys.argv[1]
b = open(p, "rb").read()
end = len(b)
while end >= 512 and b[end - 512:end] == bytes(512):
    end -= 512
open(p, "wb").write(b[:end] + bytes(1024))
PY
done
du -sh "$C"
