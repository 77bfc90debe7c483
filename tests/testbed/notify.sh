#!/usr/bin/env bash
# tests/testbed/notify.sh — the notification sinks of the test bed, inside its network
# namespace on the remote address:
#   rsyslogd   UDP 514, TCP 514 (RFC 6587 octet counting or LF framing), TLS 6514 (RFC 5425,
#              gtls driver); each input writes the raw messages it receives, one a line
#              (template %rawmsg%), to DIR/notify/syslog/{udp,tcp,tls}.log
#   smtpd.py   aiosmtpd: STARTTLS 587, implicit TLS 465, and STARTTLS 2587 with a
#              certificate from the wrong CA; AUTH PLAIN/LOGIN required (user offbox-mail,
#              the password in DIR/notify/smtp/password, mode 600); mail lands in the
#              Maildir DIR/notify/smtp/Maildir (read new/)
# A test CA and a second, "wrong" CA are made here with openssl: DIR/notify/pki/ca.pem
# signs the servers' certificate (IP SAN = the remote address); wrong-ca.pem signs only
# the certificate of port 2587.
#
# Two ways to use it:
#   source tests/testbed/notify.sh     from tests/testbed/up (uses up's variables)
#   tests/testbed/notify.sh stop-smtp DIR | start-smtp DIR
#                                      stop the SMTP server (by PID, waiting until it is
#                                      gone) or start it again and record its new PID
# Writes SYSLOG_*, SMTP_* and NOTIFY_* lines into DIR/targets.env and an example [notify]
# section (email over STARTTLS and the three syslog transports) into DIR/notify.toml,
# which tests append to their config. Needs rsyslog, rsyslog-gnutls, python3-aiosmtpd,
# openssl (tests/deps.sh).

# shellcheck disable=SC2154  # dir, ns, remote, fail: set by tests/testbed/up
notify_smtp_user=offbox-mail
notify_smtp_starttls=587
notify_smtp_tls=465
notify_smtp_wrong=2587
notify_syslog_port=514
notify_syslog_tls_port=6514

# Starts smtpd.py in the bed's namespace and records its PID in DIR/state.
notify_start_smtp() {
  local dir=$1 ns=$2 remote=$3 n="$1/notify"
  ip netns exec "$ns" setsid /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/smtpd.py" \
    --host "$remote" --maildir "$n/smtp/Maildir" \
    --cert "$n/pki/server.pem" --key "$n/pki/server.key" \
    --wrong-cert "$n/pki/wrong-server.pem" --wrong-key "$n/pki/wrong-server.key" \
    --user "$notify_smtp_user" --password-file "$n/smtp/password" \
    --starttls "$notify_smtp_starttls" --tls "$notify_smtp_tls" \
    --wrong-starttls "$notify_smtp_wrong" >> "$n/smtp/smtpd.log" 2>&1 &
  echo "smtpd_pid=$!" >> "$dir/state"
  local port
  for port in "$notify_smtp_starttls" "$notify_smtp_tls" "$notify_smtp_wrong"; do
    notify_wait_port "$ns" "$remote" "$port" || return 1
  done
}

# Waits up to 20 s until something listens on REMOTE:PORT (TCP) in the namespace.
notify_wait_port() {
  local _
  for _ in $(seq 1 400); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# Stops PID and waits until it is gone (so that its ports are free again).
notify_stop_pid() {
  local pid=$1 _
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # Run directly.
  set -euo pipefail
  cmd=${1:-}; dir=$(cd "${2:?usage: $0 stop-smtp|start-smtp DIR}" && pwd)
  # shellcheck disable=SC1091
  source "$dir/state"
  remote=$(grep '^TESTBED_REMOTE=' "$dir/targets.env" | cut -d= -f2)
  case "$cmd" in
    stop-smtp)
      notify_stop_pid "${smtpd_pid:-}"
      echo "testbed: smtpd stopped" ;;
    start-smtp)
      if [[ -n "${smtpd_pid:-}" ]] && kill -0 "$smtpd_pid" 2>/dev/null; then
        echo "testbed: smtpd already runs ($smtpd_pid)" >&2; exit 1
      fi
      notify_start_smtp "$dir" "$ns" "$remote" || {
        echo "testbed: smtpd did not start: $(tail -5 "$dir/notify/smtp/smtpd.log")" >&2; exit 1; }
      new=$(grep '^smtpd_pid=' "$dir/state" | tail -1 | cut -d= -f2)
      sed -i "s/^SMTPD_PID=.*/SMTPD_PID=$new/" "$dir/targets.env"
      echo "testbed: smtpd started ($new)" ;;
    *) echo "usage: $0 stop-smtp|start-smtp DIR" >&2; exit 2 ;;
  esac
  exit 0
fi

notify_dir="$dir/notify"
pki="$notify_dir/pki"
mkdir -p "$pki" "$notify_dir/syslog/work" "$notify_dir/smtp/Maildir"/{tmp,new,cur}
chmod 700 "$pki"

# A CA, and a server certificate it signs; the same for the wrong CA.
notify_ca() {  # NAME CN
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
    -subj "/CN=$2" -keyout "$pki/$1.key" -out "$pki/$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>>"$pki/openssl.log"
}
notify_server_cert() {  # NAME CA
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$remote" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>>"$pki/openssl.log"
  printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$remote" > "$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.pem" -CAkey "$pki/$2.key" \
    -CAcreateserial -days 3 -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>>"$pki/openssl.log"
}
notify_ca ca "offbox test bed CA" || fail "openssl: $(cat "$pki/openssl.log")"
notify_ca wrong-ca "offbox test bed WRONG CA" || fail "openssl: $(cat "$pki/openssl.log")"
notify_server_cert server ca || fail "openssl: $(cat "$pki/openssl.log")"
notify_server_cert wrong-server wrong-ca || fail "openssl: $(cat "$pki/openssl.log")"
chmod 644 "$pki"/*.pem

# rsyslogd: one ruleset and file per input.
sl="$notify_dir/syslog"
cat > "$sl/rsyslog.conf" <<CONF
global(workDirectory="$sl/work"
       defaultNetstreamDriverCAFile="$pki/ca.pem"
       defaultNetstreamDriverCertFile="$pki/server.pem"
       defaultNetstreamDriverKeyFile="$pki/server.key"
       maxMessageSize="64k")
module(load="imudp")
module(load="imtcp" maxSessions="100")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="udp") { action(type="omfile" file="$sl/udp.log" template="raw" flushOnTXEnd="on") }
ruleset(name="tcp") { action(type="omfile" file="$sl/tcp.log" template="raw" flushOnTXEnd="on") }
ruleset(name="tls") { action(type="omfile" file="$sl/tls.log" template="raw" flushOnTXEnd="on") }
input(type="imudp" address="$remote" port="$notify_syslog_port" ruleset="udp")
input(type="imtcp" address="$remote" port="$notify_syslog_port" ruleset="tcp")
input(type="imtcp" address="$remote" port="$notify_syslog_tls_port" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
CONF
touch "$sl/udp.log" "$sl/tcp.log" "$sl/tls.log"
ip netns exec "$ns" setsid /usr/sbin/rsyslogd -n -iNONE -f "$sl/rsyslog.conf" \
  > "$sl/rsyslogd.log" 2>&1 &
echo "rsyslogd_pid=$!" >> "$dir/state"
for p in "$notify_syslog_port" "$notify_syslog_tls_port"; do
  notify_wait_port "$ns" "$remote" "$p" || fail "rsyslogd did not start: $(cat "$sl/rsyslogd.log")"
done

# SMTP: the password has characters that quoting and SASL encodings like to break.
printf '%s\n' 'S3cret pass:"w0rd" \ & ; é' > "$notify_dir/smtp/password"
chmod 600 "$notify_dir/smtp/password"
printf '%s\n' 'not-the-password' > "$notify_dir/smtp/wrong-password"
chmod 600 "$notify_dir/smtp/wrong-password"
notify_start_smtp "$dir" "$ns" "$remote" || fail "smtpd did not start: $(cat "$notify_dir/smtp/smtpd.log")"

cat >> "$dir/targets.env" <<ENV
NOTIFY_CA=$pki/ca.pem
NOTIFY_WRONG_CA=$pki/wrong-ca.pem
NOTIFY_TOML=$dir/notify.toml
SYSLOG_HOST=$remote
SYSLOG_UDP_PORT=$notify_syslog_port
SYSLOG_TCP_PORT=$notify_syslog_port
SYSLOG_TLS_PORT=$notify_syslog_tls_port
SYSLOG_UDP_LOG=$sl/udp.log
SYSLOG_TCP_LOG=$sl/tcp.log
SYSLOG_TLS_LOG=$sl/tls.log
RSYSLOGD_PID=$(grep '^rsyslogd_pid=' "$dir/state" | tail -1 | cut -d= -f2)
SMTP_HOST=$remote
SMTP_STARTTLS_PORT=$notify_smtp_starttls
SMTP_TLS_PORT=$notify_smtp_tls
SMTP_WRONG_CERT_PORT=$notify_smtp_wrong
SMTP_USER=$notify_smtp_user
SMTP_PASSWORD_FILE=$notify_dir/smtp/password
SMTP_WRONG_PASSWORD_FILE=$notify_dir/smtp/wrong-password
SMTP_MAILDIR=$notify_dir/smtp/Maildir
SMTPD_PID=$(grep '^smtpd_pid=' "$dir/state" | tail -1 | cut -d= -f2)
ENV
cat > "$dir/notify.toml" <<TOML
[notify]
remind_after_hours = 24

[notify.email]
server = "$remote"
port = $notify_smtp_starttls
tls = "starttls"
ca_file = "$pki/ca.pem"
username = "$notify_smtp_user"
password_file = "$notify_dir/smtp/password"
from = "offbox@appliance.test"
to = ["pam-ops@example.test"]
timeout_secs = 10

[[notify.syslog]]
transport = "udp"
address = "$remote"
port = $notify_syslog_port

[[notify.syslog]]
transport = "tcp"
address = "$remote"
port = $notify_syslog_port
timeout_secs = 10

[[notify.syslog]]
transport = "tls"
address = "$remote"
port = $notify_syslog_tls_port
ca_file = "$pki/ca.pem"
facility = "authpriv"
timeout_secs = 10
TOML
