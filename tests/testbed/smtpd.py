#!/usr/bin/python3
"""tests/testbed/smtpd.py: the test bed's SMTP server (aiosmtpd, Debian python3-aiosmtpd).

Run with Debian's /usr/bin/python3. Listens on HOST with three servers in one process,
all delivering to the Maildir MAILDIR and all requiring AUTH (PLAIN or LOGIN, user USER,
the password in PASSWORD_FILE) over TLS:

  --starttls PORT        STARTTLS required, certificate CERT/KEY
  --tls PORT             implicit TLS (TLS from the first byte), CERT/KEY
  --wrong-starttls PORT  STARTTLS required, certificate WRONG_CERT/WRONG_KEY (signed by a
                         CA that clients are not told about)

Stops on SIGTERM or SIGINT. Every accepted and refused login is printed.
"""

import argparse
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--wrong-cert", required=True)
    p.add_argument("--wrong-key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--starttls", type=int, required=True)
    p.add_argument("--tls", type=int, required=True)
    p.add_argument("--wrong-starttls", type=int, required=True)
    a = p.parse_args()

    with open(a.password_file, "rb") as f:
        password = f.read().rstrip(b"\n")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == a.user.encode()
            and auth_data.password == password
        )
        login = auth_data.login if isinstance(auth_data, LoginPassword) else b"?"
        print(f"auth {mechanism} {login!r}: {'ok' if ok else 'refused'}", flush=True)
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False)

    good = tls_context(a.cert, a.key)
    wrong = tls_context(a.wrong_cert, a.wrong_key)
    common = dict(
        hostname=a.host,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controllers = [
        Controller(Mailbox(a.maildir), port=a.starttls, tls_context=good,
                   require_starttls=True, **common),
        # Implicit TLS: the whole session is TLS, which aiosmtpd's auth_require_tls
        # does not see (it tracks STARTTLS only), so AUTH is offered without it.
        Controller(Mailbox(a.maildir), port=a.tls, ssl_context=good,
                   **dict(common, auth_require_tls=False)),
        Controller(Mailbox(a.maildir), port=a.wrong_starttls, tls_context=wrong,
                   require_starttls=True, **common),
    ]
    for c in controllers:
        c.start()
    print(f"smtpd: listening on {a.host} ports {a.starttls} {a.tls} {a.wrong_starttls}",
          flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for c in controllers:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
