//! Notifications against real servers in the test bed (tests/testbed/notify.sh): rsyslogd
//! on UDP, TCP and TLS, and an SMTP server with STARTTLS, implicit TLS and AUTH that
//! delivers to a Maildir. `offbox notify test` through the binary; the queue and the
//! condition transitions through the library's `Notifier`.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bin, stderr};
use offbox::config::Config;
use offbox::notify::{ChannelStatus, Event, EventKind, Notifier};
use tb::{wait_for, Testbed};

const APPLIANCE: &str = "appl-nt";

/// A config for this appliance with the bed's `[notify]` section, after `edit`.
fn write_config(tb: &Testbed, dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let notify = std::fs::read_to_string(tb.get("NOTIFY_TOML")).unwrap();
    let text = format!(
        "appliance_id = \"{APPLIANCE}\"\n[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"/nonexistent.so\"\ntoken_label = \"t\"\n\n{}",
        edit(notify)
    );
    let path = dir.join("offbox.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn notify_test(config: &Path, state: &Path, json: bool) -> Output {
    let mut c = Command::new(bin());
    c.arg("--config").arg(config).env("OFFBOX_STATE_DIR", state);
    if json {
        c.arg("--json");
    }
    c.args(["notify", "test"]).output().unwrap()
}

/// The messages in the Maildir, oldest first.
fn mails(tb: &Testbed) -> Vec<String> {
    let dir = Path::new(tb.get("SMTP_MAILDIR")).join("new");
    let mut v: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let t = e.metadata().unwrap().modified().unwrap();
            (t, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, m)| m).collect()
}

/// The raw messages rsyslogd received on a transport (`UDP`, `TCP`, `TLS`).
fn syslog(tb: &Testbed, transport: &str) -> Vec<String> {
    std::fs::read_to_string(tb.get(&format!("SYSLOG_{transport}_LOG")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count_event(lines: &[String], event: &str) -> usize {
    let needle = format!("[offbox@32473 event=\"{event}\"");
    lines.iter().filter(|l| l.contains(&needle)).count()
}

/// Waits until each transport's log holds `n` messages of `event`.
fn wait_syslog(tb: &Testbed, event: &str, n: usize) {
    for t in ["UDP", "TCP", "TLS"] {
        assert!(
            wait_for(10, || count_event(&syslog(tb, t), event) >= n),
            "{t}: expected {n} {event} message(s), got {:?}\n{}",
            syslog(tb, t),
            tb.server_logs()
        );
    }
}

fn notifier(tb: &Testbed, dir: &Path, edit: impl FnOnce(String) -> String) -> Notifier {
    let path = write_config(tb, dir, edit);
    let cfg = Config::load(&path).unwrap();
    Notifier::new(&cfg.notify, APPLIANCE, &dir.join("state"))
}

fn lost_event(message: &str) -> Event {
    Event {
        kind: EventKind::TargetLost,
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        backup_kind: Some("system".into()),
        target: Some("dr-site".into()),
        archive: None,
        error_kind: Some("target.unreachable".into()),
        retry: Some("temporary".into()),
        message: message.into(),
    }
}

fn recovered_event() -> Event {
    Event {
        kind: EventKind::TargetRecovered,
        error_kind: None,
        retry: None,
        ..lost_event("the target dr-site is reachable again")
    }
}

#[test]
fn notify_test_delivers_to_every_channel() {
    let tb = Testbed::up();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&tb, dir.path(), |n| n);
    let out = notify_test(&config, dir.path(), false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for ch in ["email", "syslog+udp://", "syslog+tcp://", "syslog+tls://"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(ch) && l.ends_with(": delivered")),
            "{ch}: {text}"
        );
    }

    // One email, authenticated over STARTTLS, with the subject and the fields.
    assert!(wait_for(10, || mails(&tb).len() == 1), "{:?}", mails(&tb));
    let mail = &mails(&tb)[0];
    assert!(
        mail.contains(&format!("Subject: offbox {APPLIANCE}: test")),
        "{mail}"
    );
    assert!(mail.contains("To: pam-ops@example.test"), "{mail}");
    assert!(mail.contains("\nevent: test\n"), "{mail}");
    assert!(mail.contains(&format!("appliance: {APPLIANCE}")), "{mail}");
    let log = std::fs::read_to_string(tb.path().join("notify/smtp/smtpd.log")).unwrap();
    assert!(log.contains("auth PLAIN b'offbox-mail': ok"), "{log}");
    // The password is never printed.
    let pw = std::fs::read_to_string(tb.get("SMTP_PASSWORD_FILE")).unwrap();
    assert!(!text.contains(pw.trim()) && !stderr(&out).contains(pw.trim()));

    // One RFC 5424 message per transport: header, structured data, message.
    wait_syslog(&tb, "test", 1);
    for (t, pri) in [("UDP", 29), ("TCP", 29), ("TLS", 85)] {
        let lines = syslog(&tb, t);
        assert_eq!(lines.len(), 1, "{t}: {lines:?}");
        let l = &lines[0];
        // daemon.notice = 29; the TLS channel of notify.toml uses authpriv (10*8+5 = 85).
        assert!(l.starts_with(&format!("<{pri}>1 ")), "{t}: {l}");
        let fields: Vec<&str> = l.splitn(7, ' ').collect();
        assert_eq!(fields[2], APPLIANCE, "{t}: HOSTNAME in {l}");
        assert_eq!(fields[3], "offbox", "{t}: APP-NAME in {l}");
        assert_eq!(fields[5], "test", "{t}: MSGID in {l}");
        assert!(
            fields[6].starts_with("[offbox@32473 event=\"test\"] \u{feff}test notification"),
            "{t}: {l}"
        );
    }

    // Implicit TLS (port 465) and --json.
    let config = write_config(&tb, dir.path(), |n| {
        n.replace(
            &format!(
                "port = {}\ntls = \"starttls\"",
                tb.get("SMTP_STARTTLS_PORT")
            ),
            &format!("port = {}\ntls = \"tls\"", tb.get("SMTP_TLS_PORT")),
        )
    });
    let out = notify_test(&config, dir.path(), true);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["notify_test"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{v}");
    assert!(results.iter().all(|r| r["status"] == "delivered"), "{v}");
    assert!(wait_for(10, || mails(&tb).len() == 2));
}

#[test]
fn wrong_password_and_unverified_certificates_are_clear_errors() {
    let tb = Testbed::up();
    let dir = tempfile::tempdir().unwrap();

    // Wrong SMTP password.
    let config = write_config(&tb, dir.path(), |n| {
        n.replace(
            tb.get("SMTP_PASSWORD_FILE"),
            tb.get("SMTP_WRONG_PASSWORD_FILE"),
        )
    });
    let out = notify_test(&config, dir.path(), false);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("email: the SMTP server")
            && err.contains("refused the login of user \"offbox-mail\"")
            && err.contains("535"),
        "{err}"
    );
    assert!(
        err.contains("check notify.email.username and the password"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("email: FAILED: "));

    // An SMTP server whose certificate comes from another CA.
    let config = write_config(&tb, dir.path(), |n| {
        n.replace(
            &format!("port = {}\n", tb.get("SMTP_STARTTLS_PORT")),
            &format!("port = {}\n", tb.get("SMTP_WRONG_CERT_PORT")),
        )
    });
    let out = notify_test(&config, dir.path(), true);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the server's certificate was not verified"),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["notify_test"][1]["channel"], "email");
    assert_eq!(v["notify_test"][1]["status"], "failed");
    let last = err.lines().last().unwrap();
    let e: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(e["error"]["kind"], "notify", "{last}");

    // Syslog over TLS, checked against the wrong CA: refused, nothing arrives over TLS.
    let config = write_config(&tb, dir.path(), |n| {
        let i = n.rfind(tb.get("NOTIFY_CA")).unwrap();
        format!(
            "{}{}{}",
            &n[..i],
            tb.get("NOTIFY_WRONG_CA"),
            &n[i + tb.get("NOTIFY_CA").len()..]
        )
    });
    let before = syslog(&tb, "TLS").len();
    let out = notify_test(&config, dir.path(), false);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("syslog+tls://")
            && err
                .contains("the TLS handshake failed, the collector's certificate was not verified"),
        "{err}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(syslog(&tb, "TLS").len(), before);
    // Only the email from this last run (the first two failed) arrived.
    assert!(wait_for(10, || mails(&tb).len() == 1));
}

#[test]
fn smtp_down_queues_and_flush_delivers_once() {
    let tb = Testbed::up();
    let dir = tempfile::tempdir().unwrap();
    let mut n = notifier(&tb, dir.path(), |n| n);
    let script = common::repo().join("tests/testbed/notify.sh");
    let sh = |cmd: &str| {
        let o = Command::new(&script)
            .arg(cmd)
            .arg(tb.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
    };

    sh("stop-smtp");
    let d = n.emit(lost_event("the target dr-site is unreachable"));
    let email = d.channels.iter().find(|c| c.channel == "email").unwrap();
    assert_eq!(email.status, ChannelStatus::Queued, "{d:?}");
    assert!(
        email
            .error
            .as_deref()
            .unwrap()
            .contains("cannot connect to the SMTP server"),
        "{d:?}"
    );
    assert_eq!(d.queued(), 1, "only the email is queued: {d:?}");
    wait_syslog(&tb, "target_lost", 1);
    let p = n.pending();
    assert_eq!(p.queued.len(), 1, "{p:?}");
    assert_eq!(
        (p.queued[0].channel.as_str(), p.queued[0].event),
        ("email", "target_lost")
    );

    // Still down: nothing delivered, still queued, one more attempt recorded.
    assert_eq!(n.flush_queue(), 0);
    assert_eq!(n.pending().queued[0].attempts, 2);

    sh("start-smtp");
    assert_eq!(n.flush_queue(), 1);
    assert!(n.pending().queued.is_empty());
    assert_eq!(n.flush_queue(), 0);
    assert!(wait_for(10, || !mails(&tb).is_empty()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let m = mails(&tb);
    assert_eq!(m.len(), 1, "delivered exactly once: {m:?}");
    assert!(
        m[0].contains(&format!("Subject: offbox {APPLIANCE}: target lost")),
        "{}",
        m[0]
    );
    assert!(
        m[0].contains("target: dr-site\n") && m[0].contains("error_kind: target.unreachable\n"),
        "{}",
        m[0]
    );
    // The syslog channels were not queued, so they sent one message each.
    assert_eq!(count_event(&syslog(&tb, "TCP"), "target_lost"), 1);
    let files = std::fs::read_dir(dir.path().join("state").join(offbox::notify::QUEUE_DIR))
        .unwrap()
        .count();
    assert_eq!(files, 0);
}

#[test]
fn condition_raises_once_reminds_after_the_interval_and_clears_once() {
    let tb = Testbed::up();
    let dir = tempfile::tempdir().unwrap();
    // 6 seconds (the condition's times are whole seconds: room for a slow delivery).
    let mut n = notifier(&tb, dir.path(), |n| {
        n.replace(
            "remind_after_hours = 24",
            "remind_after_hours = 0.001666667",
        )
    });
    let key = "target:dr-site:lost";
    let lost = || lost_event("the target dr-site is unreachable: connection refused");
    let started = std::time::Instant::now();
    let mut sent = 0;
    for _ in 0..3 {
        if n.condition(key, true, lost(), recovered_event()).is_some() {
            sent += 1;
        }
    }
    assert!(
        started.elapsed().as_secs() < 5,
        "the bed is too slow for this interval"
    );
    assert_eq!(sent, 1, "one raise for three active calls");
    wait_syslog(&tb, "target_lost", 1);
    assert!(wait_for(10, || mails(&tb).len() == 1));
    let p = n.pending();
    assert_eq!(p.conditions.len(), 1);
    assert_eq!(
        (p.conditions[0].key.as_str(), p.conditions[0].event),
        (key, "target_lost")
    );

    // The structured data of the raise.
    let l = syslog(&tb, "TCP")
        .into_iter()
        .find(|l| l.contains("target_lost"))
        .unwrap();
    assert!(
        l.contains("[offbox@32473 event=\"target_lost\" kind=\"system\" target=\"dr-site\" error_kind=\"target.unreachable\" retry=\"temporary\"]"),
        "{l}"
    );

    // After the interval: one reminder that says "still".
    std::thread::sleep(std::time::Duration::from_millis(6100));
    let reminded = std::time::Instant::now();
    let d = n
        .condition(key, true, lost(), recovered_event())
        .expect("a reminder");
    assert!(d.reminder && d.all_delivered(), "{d:?}");
    let again = n.condition(key, true, lost(), recovered_event());
    assert!(
        reminded.elapsed().as_secs() < 5,
        "the bed is too slow for this interval"
    );
    assert!(again.is_none(), "no second reminder within the interval");
    wait_syslog(&tb, "target_lost", 2);
    let reminder = syslog(&tb, "UDP")
        .into_iter()
        .filter(|l| l.contains("target_lost"))
        .nth(1)
        .unwrap();
    assert!(reminder.contains("still (since "), "{reminder}");
    assert!(wait_for(10, || mails(&tb).len() == 2));
    assert!(mails(&tb)[1].contains("target lost (reminder)"));

    // Cleared: exactly one recovered, then nothing.
    assert!(n.condition(key, false, lost(), recovered_event()).is_some());
    assert!(n.condition(key, false, lost(), recovered_event()).is_none());
    assert!(n.condition(key, false, lost(), recovered_event()).is_none());
    wait_syslog(&tb, "target_recovered", 1);
    assert!(wait_for(10, || mails(&tb).len() == 3));
    std::thread::sleep(std::time::Duration::from_millis(300));
    for t in ["UDP", "TCP", "TLS"] {
        let lines = syslog(&tb, t);
        assert_eq!(count_event(&lines, "target_lost"), 2, "{t}: {lines:?}");
        assert_eq!(count_event(&lines, "target_recovered"), 1, "{t}: {lines:?}");
    }
    assert_eq!(mails(&tb).len(), 3);
    assert!(n.pending().conditions.is_empty());
}
