//! `offbox selfcheck` against a real SoftHSM2 token or swtpm (hsm-sim/up) and the test bed's
//! servers (tests/testbed/up, in a network namespace): a healthy appliance exits 0 with every
//! check ok; PIN file problems and a removed token fail with exit 4; an unreachable target
//! is a warning (exit 75) while a self-target fails (exit 69); a missing state directory;
//! an overdue kind; an unreadable config. The events go through the bed's real SMTP and
//! syslog servers.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{stderr, Backend, Sim};
use serde_json::Value;
use tb::{keep_targets, wait_for, Testbed};

const SCHEDULE: &str = "[schedule.secrets]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n[schedule.system]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n";

/// A simulator on `backend` with the bed's ssh target, both kinds scheduled there, the
/// ceremony's signing-keys.pem beside the config, optionally the bed's `[notify]`, and one
/// successful `offbox run`.
fn healthy(backend: Backend, notify: bool) -> (Sim, Testbed) {
    let tb = Testbed::up();
    let sim = Sim::for_backend(backend);
    tb.attach(&sim, |t| keep_targets(t, "targets.testbed-ssh]"));
    let src = tb::source(&sim, 1);
    let secrets = sim.dir.path().join("export.json");
    std::fs::write(&secrets, br#"{"vault":"export"}"#).unwrap();
    let notify = if notify {
        std::fs::read_to_string(tb.get("NOTIFY_TOML")).unwrap()
    } else {
        String::new()
    };
    sim.edit_config(|c| {
        format!(
            "{}\n[secrets]\nfile = {secrets:?}\n[capacity]\nmeasured_path = {src:?}\n{SCHEDULE}\n{notify}",
            c.replace("sources = []", &format!("sources = [{src:?}]")),
        )
    });
    std::fs::copy(
        sim.path().join("shares/signing-keys.pem"),
        sim.path().join("signing-keys.pem"),
    )
    .unwrap();
    let out = sim.run(&["run"]);
    assert!(out.status.success(), "offbox run: {}", stderr(&out));
    (sim, tb)
}

/// `offbox --json selfcheck`: the exit code and the `selfcheck` object.
fn selfcheck(sim: &Sim) -> (i32, Value, Output) {
    let out = sim.run(&["--json", "selfcheck"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON on stdout: {text}\nstderr: {}", stderr(&out)));
    let v: Value = serde_json::from_str(line).unwrap();
    (out.status.code().unwrap(), v["selfcheck"].clone(), out)
}

/// `(name, status)` of every check, in order.
fn statuses(r: &Value) -> Vec<(String, String)> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const NAMES: [&str; 12] = [
    "config",
    "state_dir",
    "keys.device_access",
    "keys.pin_file",
    "keys.device",
    "keys.kek",
    "keys.signing_key",
    "recovery.public_key",
    "recovery.signers",
    "target.testbed-ssh",
    "last_backup.secrets.testbed-ssh",
    "last_backup.system.testbed-ssh",
];

/// The checks of the healthy set-up, with these ones changed.
fn expect(changed: &[(&str, &str)]) -> Vec<(String, String)> {
    NAMES
        .iter()
        .map(|n| {
            let s = changed
                .iter()
                .find(|(c, _)| c == n)
                .map_or("ok", |(_, s)| s);
            (n.to_string(), s.to_string())
        })
        .collect()
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {r}"))
}

/// The events the journal channel wrote on stderr (there is no /dev/log on the CI machine).
fn journal_events(out: &Output) -> Vec<String> {
    if Path::new("/dev/log").exists() {
        return Vec::new();
    }
    stderr(out)
        .lines()
        .filter_map(|l| l.split("EVENT ").nth(1))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

fn healthy_setup_exits_0_with_every_check_ok(backend: Backend) {
    let (sim, _tb) = healthy(backend, false);
    let (code, r, out) = selfcheck(&sim);
    assert_eq!(code, 0, "{r}\n{}", stderr(&out));
    assert_eq!(statuses(&r), expect(&[]), "{r}");
    assert_eq!(r["status"], "ok");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["appliance"], "hsm-sim");
    for c in r["checks"].as_array().unwrap() {
        assert!(c["hint"].is_null() && c["exit_code"].is_null(), "{c}");
        assert!(!c["message"].as_str().unwrap().is_empty(), "{c}");
    }
    assert!(
        check(&r, "recovery.signers")["message"]
            .as_str()
            .unwrap()
            .starts_with("the recovery shares vouch for the current signing key"),
        "{r}"
    );
    assert!(
        check(&r, "target.testbed-ssh")["message"]
            .as_str()
            .unwrap()
            .contains("passed the guard"),
        "{r}"
    );
    let access = check(&r, "keys.device_access")["message"].as_str().unwrap();
    match backend {
        Backend::Pkcs11 => {
            assert!(access.contains("the PKCS#11 module"), "{access}");
            assert!(access.contains("the SoftHSM token directory"), "{access}");
        }
        Backend::Tpm => assert!(access.contains("the TCTI \"swtpm\""), "{access}"),
    }
    assert_eq!(journal_events(&out), Vec::<String>::new(), "no event");

    // The human form: one line per check, then the verdict.
    let out = sim.run(&["selfcheck"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), NAMES.len() + 1, "{text}");
    for (l, n) in lines.iter().zip(NAMES) {
        assert!(l.starts_with(&format!("ok   {n}: ")), "{l}");
    }
    assert!(lines[NAMES.len()].starts_with("selfcheck: ok (12 checks, 0 failed, 0 warned) as "));
}

on_both_backends!(healthy_setup_exits_0_with_every_check_ok);

#[test]
fn pin_file_problems_and_a_removed_token_fail_with_exit_4() {
    let (sim, _tb) = healthy(Backend::Pkcs11, false);
    let pin = sim.path().join("pin");
    let good = std::fs::read(&pin).unwrap();
    let chmod = |mode| std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(mode));

    // World-readable: flagged, degraded, still backs up.
    chmod(0o644).unwrap();
    let (code, r, out) = selfcheck(&sim);
    assert_eq!(code, 75, "{r}\n{}", stderr(&out));
    assert_eq!(statuses(&r), expect(&[("keys.pin_file", "warn")]), "{r}");
    let c = check(&r, "keys.pin_file");
    let p = pin.display();
    assert!(
        c["message"].as_str().unwrap().starts_with(&format!(
            "the PKCS#11 PIN file {p} is readable by its group and by everyone (mode 0644)"
        )),
        "{c}"
    );
    assert_eq!(
        c["hint"],
        format!("chmod 600 {p}: only the service user (or root) should read the PIN")
    );
    assert_eq!(r["status"], "degraded");
    assert_eq!(
        journal_events(&out),
        ["selfcheck_degraded"],
        "{}",
        stderr(&out)
    );

    // Writable by others: anyone may replace the PIN; fails.
    chmod(0o666).unwrap();
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 4, "{r}");
    assert_eq!(statuses(&r), expect(&[("keys.pin_file", "fail")]), "{r}");
    assert!(check(&r, "keys.pin_file")["hint"]
        .as_str()
        .unwrap()
        .starts_with(&format!("chmod 600 {p} now")));
    chmod(0o600).unwrap();

    // A wrong PIN: C_Login refuses it.
    std::fs::write(&pin, "0000000000000000").unwrap();
    let (code, r, out) = selfcheck(&sim);
    assert_eq!(code, 4, "{r}");
    let failed = [
        ("keys.device", "fail"),
        ("keys.kek", "fail"),
        ("keys.signing_key", "fail"),
    ];
    assert_eq!(statuses(&r), expect(&failed), "{r}");
    let dev = check(&r, "keys.device");
    assert!(
        dev["message"]
            .as_str()
            .unwrap()
            .starts_with("C_Login failed: CKR_PIN_INCORRECT: the PIN from file"),
        "{dev}"
    );
    assert_eq!(
        (dev["error_kind"].as_str(), dev["exit_code"].as_i64()),
        (Some("key"), Some(4))
    );
    assert_eq!(
        check(&r, "keys.kek")["message"],
        "not checked: the HSM or TPM could not be used (see keys.device)"
    );
    assert_eq!(
        journal_events(&out),
        ["key_device_failure", "selfcheck_failed"],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("\"kind\":\"key\""),
        "the error object: {}",
        stderr(&out)
    );

    // No PIN file at all.
    std::fs::remove_file(&pin).unwrap();
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 4, "{r}");
    let mut failed_too = failed.to_vec();
    failed_too.push(("keys.pin_file", "fail"));
    assert_eq!(statuses(&r), expect(&failed_too), "{r}");
    assert!(
        check(&r, "keys.pin_file")["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "cannot read the PKCS#11 PIN from {p}: No such file"
            )),
        "{r}"
    );

    // The right PIN, but the token is gone.
    std::fs::write(&pin, &good).unwrap();
    chmod(0o600).unwrap();
    assert_eq!(selfcheck(&sim).0, 0);
    for e in std::fs::read_dir(sim.path().join("tokens")).unwrap() {
        std::fs::remove_dir_all(e.unwrap().path()).unwrap();
    }
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 4, "{r}");
    assert_eq!(statuses(&r), expect(&failed), "{r}");
    assert!(
        check(&r, "keys.device")["message"]
            .as_str()
            .unwrap()
            .starts_with("no PKCS#11 token labelled \"offbox\""),
        "{r}"
    );
}

#[test]
fn an_unreachable_target_is_a_warning_and_a_self_target_a_failure() {
    let (sim, tb) = healthy(Backend::Pkcs11, true);
    // The bed's own address, on a port where nothing listens: connection refused, in the
    // namespace (no traffic leaves this machine).
    let remote = tb
        .get("SSH_URL")
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let host = remote.split(':').next().unwrap().to_string();
    sim.edit_config(|c| {
        format!("{c}\n[targets.gone]\nurl = \"ssh://offbox-tb@{host}:1/data\"\ntimeout_secs = 5\n")
    });
    let (code, r, out) = selfcheck(&sim);
    assert_eq!(code, 75, "{r}\n{}", stderr(&out));
    let mut want = expect(&[]);
    want.insert(9, ("target.gone".into(), "warn".into()));
    assert_eq!(statuses(&r), want, "{r}");
    let c = check(&r, "target.gone");
    assert_eq!(
        (
            c["error_kind"].as_str(),
            c["retry"].as_str(),
            c["exit_code"].as_i64()
        ),
        (Some("target.unreachable"), Some("temporary"), Some(75)),
        "{c}"
    );
    assert_eq!(r["status"], "degraded");
    assert_eq!(
        journal_events(&out),
        ["target_lost", "selfcheck_degraded"],
        "{}",
        stderr(&out)
    );
    // The [notify] channels got the summary: the SIEM over TLS, and an email.
    let siem = |event: &str| {
        std::fs::read_to_string(tb.get("SYSLOG_TLS_LOG"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("event=\"{event}\"")))
            .count()
    };
    assert!(
        wait_for(10, || siem("selfcheck_degraded") == 1),
        "syslog TLS"
    );
    let mails = || {
        std::fs::read_dir(Path::new(tb.get("SMTP_MAILDIR")).join("new"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("Subject:") && l.contains("selfcheck degraded"))
            })
            .count()
    };
    assert!(wait_for(10, || mails() == 1), "email");

    // Again: target_lost is a condition already raised, so only the summary is sent.
    let (code, _, out) = selfcheck(&sim);
    assert_eq!(code, 75);
    assert_eq!(
        journal_events(&out),
        ["selfcheck_degraded"],
        "{}",
        stderr(&out)
    );

    // The appliance itself as a target: the guard refuses it, and no retry helps.
    sim.edit_config(|c| c.replace(&format!("{host}:1/data"), "127.0.0.1:1/data"));
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 69, "{r}");
    let c = check(&r, "target.gone");
    assert_eq!(
        (
            c["status"].as_str(),
            c["error_kind"].as_str(),
            c["retry"].as_str()
        ),
        (Some("fail"), Some("target.self_target"), Some("permanent")),
        "{c}"
    );
    assert_eq!(r["status"], "failed");
}

#[test]
fn a_missing_state_dir_and_an_overdue_kind() {
    let (sim, _tb) = healthy(Backend::Pkcs11, false);

    // Missing, but it can be created: degraded, and no backup is on record there.
    let fresh = sim.dir.path().join("new-state");
    let out = sim
        .cmd(&["--json", "selfcheck"])
        .env("OFFBOX_STATE_DIR", &fresh)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()["selfcheck"].clone();
    assert_eq!(out.status.code(), Some(75), "{r}");
    assert_eq!(
        statuses(&r),
        expect(&[
            ("state_dir", "warn"),
            ("last_backup.secrets.testbed-ssh", "warn"),
            ("last_backup.system.testbed-ssh", "warn"),
        ]),
        "{r}"
    );
    assert!(check(&r, "state_dir")["message"]
        .as_str()
        .unwrap()
        .contains("does not exist; the first `offbox run` creates it"));
    assert!(!fresh.exists(), "the check creates nothing");

    // It cannot be created (its parent is a file): run could not take its lock; fails.
    let file = sim.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = sim
        .cmd(&["--json", "selfcheck"])
        .env("OFFBOX_STATE_DIR", file.join("state"))
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()["selfcheck"].clone();
    assert_eq!(out.status.code(), Some(1), "{r}");
    assert_eq!(
        statuses(&r),
        expect(&[
            ("state_dir", "fail"),
            ("last_backup.secrets.testbed-ssh", "warn"),
            ("last_backup.system.testbed-ssh", "warn"),
        ]),
        "{r}"
    );
    let c = check(&r, "state_dir");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{} is not a directory", file.display())),
        "{c}"
    );
    assert_eq!(
        (c["error_kind"].as_str(), c["exit_code"].as_i64()),
        (Some("io"), Some(1))
    );

    // The system backup's last success 100 hours ago (max_age_hours defaults to 48).
    let state = sim.path().join("state/service-state.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let at = &mut v["kinds"]["system"]["testbed-ssh"]["last_success"]["at"];
    *at = (at.as_i64().unwrap() - 100 * 3600).into();
    std::fs::write(&state, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, r, out) = selfcheck(&sim);
    assert_eq!(code, 75, "{r}");
    assert_eq!(
        statuses(&r),
        expect(&[("last_backup.system.testbed-ssh", "warn")]),
        "{r}"
    );
    let c = check(&r, "last_backup.system.testbed-ssh");
    assert_eq!(c["error_kind"], "stale");
    // 100 h and the seconds since that success (a minute more on a slow bed).
    let m = c["message"].as_str().unwrap();
    assert!(
        m.contains("(100 h 0 min ago, offbox-hsm-sim-system-")
            || m.contains("(100 h 1 min ago, offbox-hsm-sim-system-"),
        "{c}"
    );
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains(": older than its maximum age (every 24 h, max_age_hours 48)"),
        "{c}"
    );
    assert_eq!(
        journal_events(&out),
        ["stale", "selfcheck_degraded"],
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreadable_config_fails_with_exit_1() {
    let sim = Sim::new();
    sim.edit_config(|c| format!("{c}\nnot toml ["));
    let (code, r, out) = selfcheck(&sim);
    assert_eq!(code, 1, "{r}");
    assert_eq!(statuses(&r), [("config".to_string(), "fail".to_string())]);
    assert_eq!(r["status"], "failed");
    assert!(r["appliance"].is_null());
    let c = check(&r, "config");
    assert_eq!(c["error_kind"], "config");
    assert!(c["message"].as_str().unwrap().contains("is invalid"), "{c}");
    assert_eq!(
        journal_events(&out),
        ["selfcheck_failed"],
        "{}",
        stderr(&out)
    );

    // A config without a target: nothing can be backed up off-box.
    let sim = Sim::new();
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 1, "{r}");
    let c = check(&r, "config");
    assert_eq!(c["status"], "fail");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .ends_with("names no off-box target, so offbox cannot back up anywhere"),
        "{c}"
    );
}

/// With the video backup switched on, an unreadable recording directory fails the boot
/// check (every video run would fail), and a readable one passes.
#[test]
fn video_sources_are_checked_when_the_video_backup_is_on() {
    let (sim, _tb) = healthy(Backend::Pkcs11, false);
    let rec = sim.dir.path().join("recordings");
    sim.edit_config(|c| format!("{c}\n[videos]\nenabled = true\nsources = [{rec:?}]\n"));
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 1, "{r}");
    let c = check(&r, "videos.sources");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["message"].as_str().unwrap().contains(&format!(
            "the recording directory {} cannot be listed",
            rec.display()
        )),
        "{c}"
    );
    std::fs::create_dir_all(&rec).unwrap();
    let (code, r, _) = selfcheck(&sim);
    assert_eq!(code, 0, "{r}");
    assert_eq!(check(&r, "videos.sources")["status"], "ok", "{r}");
}
