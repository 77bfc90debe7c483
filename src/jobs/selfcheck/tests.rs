//! Unit tests of the self-check's verdicts (the devices and targets are tested in
//! tests/selfcheck.rs against the simulators and the test bed).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::config::ConfigError;
use crate::format::header::hex;
use crate::format::signature::PublicKey;

/// Records events and conditions.
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
    conditions: Vec<(String, bool)>,
}

impl Notices for Recorder {
    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
    fn condition(&mut self, key: &str, active: bool, raised: Event, _cleared: Event) -> bool {
        self.conditions.push((key.to_string(), active));
        if active {
            self.events.push(raised);
        }
        active
    }
    fn flush(&mut self) -> usize {
        0
    }
}

fn codes(checks: &[(CheckStatus, i32)]) -> (Overall, i32) {
    let checks = checks
        .iter()
        .enumerate()
        .map(|(i, (s, code))| match s {
            CheckStatus::Ok => Check::ok(format!("c{i}"), "fine"),
            CheckStatus::Warn => Check::warn(format!("c{i}"), "stale", "old", "run it"),
            CheckStatus::Fail => Check::fail(format!("c{i}"), "key", *code, "broken", "fix it"),
        })
        .collect();
    let r = Report::new(0, None, checks);
    (r.status, r.exit_code)
}

#[test]
fn exit_codes_separate_failed_from_degraded() {
    use CheckStatus::*;
    assert_eq!(codes(&[(Ok, 0), (Ok, 0)]), (Overall::Ok, 0));
    assert_eq!(codes(&[(Ok, 0), (Warn, 0)]), (Overall::Degraded, 75));
    assert_eq!(codes(&[(Warn, 0), (Fail, 69)]), (Overall::Failed, 69));
    assert_eq!(
        codes(&[(Fail, 69), (Fail, 1), (Warn, 0)]),
        (Overall::Failed, 1)
    );
    assert_eq!(codes(&[(Fail, 1), (Fail, 4)]), (Overall::Failed, 4));
}

fn config(dir: &Path, extra: &str) -> (Config, std::path::PathBuf) {
    let path = dir.join("offbox.toml");
    let text = format!(
        "appliance_id = \"unit\"\n[backup]\nsources = [\"/etc/hostname\"]\n[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"{m}\"\ntoken_label = \"none\"\npin_file = \"{p}\"\n[service]\nstate_dir = \"{s}\"\n{extra}",
        m = dir.join("no-module.so").display(),
        p = dir.join("pin").display(),
        s = dir.join("state").display(),
    );
    std::fs::write(&path, &text).unwrap();
    (Config::parse(&text, &path).unwrap(), path)
}

fn find<'a>(r: &'a Report, name: &str) -> &'a Check {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {r:?}"))
}

#[test]
fn without_a_device_or_targets_the_key_and_config_checks_fail_and_an_event_is_sent() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, path) = config(d.path(), "");
    std::fs::write(d.path().join("pin"), "1234").unwrap();
    std::fs::set_permissions(d.path().join("pin"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut rec = Recorder::default();
    let r = selfcheck(&cfg, &path, &mut rec);
    let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "state_dir",
            "keys.device_access",
            "keys.pin_file",
            "keys.device",
            "keys.kek",
            "keys.signing_key",
            "recovery.public_key",
            "recovery.signers"
        ]
    );
    let status = |n| find(&r, n).status;
    assert_eq!(status("config"), CheckStatus::Fail, "no target");
    assert_eq!(status("state_dir"), CheckStatus::Warn, "missing, creatable");
    assert_eq!(status("keys.device_access"), CheckStatus::Fail, "no module");
    assert_eq!(status("keys.pin_file"), CheckStatus::Warn, "world-readable");
    assert!(find(&r, "keys.pin_file")
        .hint
        .as_deref()
        .unwrap()
        .starts_with("chmod 600 "));
    assert_eq!(status("keys.device"), CheckStatus::Fail);
    assert_eq!(status("recovery.public_key"), CheckStatus::Fail);
    assert_eq!(status("recovery.signers"), CheckStatus::Ok);
    assert_eq!((r.status, r.exit_code), (Overall::Failed, 4));
    let ids: Vec<&str> = rec.events.iter().map(|e| e.kind.id()).collect();
    assert_eq!(ids, ["key_device_failure", "selfcheck_failed"]);
    assert_eq!(rec.events[1].error_kind.as_deref(), Some("key"));
    assert!(
        !d.path().join("state").exists(),
        "the check creates nothing"
    );
}

#[test]
fn a_writable_pin_file_fails_and_an_uncreatable_state_dir_fails() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("file"), "x").unwrap();
    let (cfg, _) = config(d.path(), "");
    std::fs::write(d.path().join("pin"), "1234").unwrap();
    std::fs::set_permissions(d.path().join("pin"), std::fs::Permissions::from_mode(0o622)).unwrap();
    let c = keys::check(&cfg.keys).checks;
    let pin = c.iter().find(|c| c.name == "keys.pin_file").unwrap();
    assert_eq!(
        (pin.status, pin.exit_code),
        (CheckStatus::Fail, Some(4)),
        "{pin:?}"
    );
    assert!(pin.message.contains("writable by others"), "{pin:?}");
    let mut cfg = cfg;
    cfg.service.state_dir = Some(d.path().join("file/state"));
    let s = setup::state_dir(&cfg);
    assert_eq!(
        (s.status, s.exit_code),
        (CheckStatus::Fail, Some(1)),
        "{s:?}"
    );
    assert!(s.message.contains("is not a directory"), "{s:?}");
}

#[test]
fn the_report_of_an_unusable_config_has_the_config_check_only() {
    let e = JobError::Config(ConfigError::Parse {
        path: "/x.toml".into(),
        detail: "bad".into(),
    });
    let r = config_unusable(&e);
    assert_eq!(
        (r.status, r.exit_code, r.checks.len()),
        (Overall::Failed, 1, 1)
    );
    let mut rec = Recorder::default();
    summary_event(&r, &mut rec);
    assert_eq!(rec.events[0].kind, EventKind::SelfcheckFailed);
    assert!(rec.events[0]
        .message
        .contains("FAIL config: the config /x.toml is invalid"));
}

fn public_key() -> PublicKey {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    PublicKey::from_point(pair.public_key().as_ref()).unwrap()
}

#[test]
fn the_shares_must_vouch_for_the_current_signing_key() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, path) = config(d.path(), "");
    let (old, current) = (public_key(), public_key());
    let signers = |keys: &[PublicKey]| {
        let c = recovery::check(&cfg, &path, Some(keys));
        c.into_iter()
            .find(|c| c.name == "recovery.signers")
            .unwrap()
    };
    let c = signers(std::slice::from_ref(&current));
    assert_eq!(c.status, CheckStatus::Ok, "no signing-keys.pem: {c:?}");
    assert!(c.message.contains("nothing to compare"), "{c:?}");
    std::fs::write(d.path().join("signing-keys.pem"), old.to_pem()).unwrap();
    let c = signers(&[current.clone(), old.clone()]);
    assert_eq!(
        (c.status, c.exit_code),
        (CheckStatus::Warn, Some(75)),
        "{c:?}"
    );
    assert!(c.message.contains(&format!(
        "but this appliance signs with {}",
        hex(&current.key_id())
    )));
    assert!(c.hint.unwrap().starts_with("run `offbox recovery rotate`"));
    let both = format!("{}{}", old.to_pem(), current.to_pem());
    std::fs::write(d.path().join("signing-keys.pem"), both).unwrap();
    assert_eq!(signers(&[current]).status, CheckStatus::Ok);
}

#[test]
fn a_kind_is_stale_after_its_maximum_age() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, _) = config(
        d.path(),
        "[targets.nas]\nurl = \"ssh://u@nas.example.net/srv\"\n[schedule.system]\nkeep_last = 2\n",
    );
    let state = crate::jobs::state::StateFile::new(&cfg.state_dir());
    let now = now_unix();
    let mut rec = Recorder::default();
    let c = schedule::check(&cfg, &mut rec, now);
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].name.as_str(), c[0].status),
        ("last_backup.system.nas", CheckStatus::Warn)
    );
    assert!(c[0]
        .message
        .starts_with("no system backup to nas has been made yet"));
    let success = |age_h: i64| crate::jobs::state::Success {
        at: now - age_h * 3600,
        archive: "a.obx".into(),
        bytes: 1,
        duration_secs: 1.0,
    };
    state
        .update(|s| {
            s.kind_mut("system", "nas", now - 100 * 3600)
                .succeeded(now, success(47))
        })
        .unwrap();
    let c = schedule::check(&cfg, &mut rec, now);
    assert_eq!(c[0].status, CheckStatus::Ok, "{c:?}");
    assert!(
        c[0].message
            .contains("(47 h 0 min ago, a.obx); every 24 h, max_age_hours 48; due now"),
        "{c:?}"
    );
    assert!(rec.events.is_empty(), "{:?}", rec.events);
    state
        .update(|s| s.kind_mut("system", "nas", 0).succeeded(now, success(49)))
        .unwrap();
    let c = schedule::check(&cfg, &mut rec, now);
    assert_eq!(
        (c[0].status, c[0].error_kind.as_deref()),
        (CheckStatus::Warn, Some("stale"))
    );
    assert_eq!(
        rec.conditions,
        [
            ("kind:system:nas:stale".to_string(), false),
            ("kind:system:nas:stale".to_string(), true)
        ]
    );
}
