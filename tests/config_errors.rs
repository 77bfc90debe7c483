//! Config values are checked when the config is parsed, before any HSM or TPM is used: a
//! wrong value is exit 1 with the key named, never a later archive or device error.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{bin, stderr};

/// A config whose PKCS#11 module does not exist: any command that got as far as the HSM
/// would fail on the module (exit 4).
fn config(backup: &str, top: &str, targets: &str) -> String {
    format!(
        "appliance_id = \"cfg-test\"\n{top}\n[backup]\nsources = [\"/etc/hostname\"]\n{backup}\n[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"/nonexistent/libpkcs11-offbox-test.so\"\ntoken_label = \"offbox\"\npin_file = \"/nonexistent/pin\"\n[recovery]\nallow_without_recovery = true\n{targets}\n"
    )
}

fn run(dir: &Path, cfg: &str, args: &[&str]) -> Output {
    let path = dir.join("offbox.toml");
    std::fs::write(&path, cfg).unwrap();
    Command::new(bin())
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("OFFBOX_CONFIG")
        .env("OFFBOX_STATE_DIR", dir.join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const BACKUP: &[&str] = &["backup", "create", "--kind", "system", "--output", "-"];

#[test]
fn segment_size_is_refused_before_the_hsm_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // With a valid value the same config reaches the HSM and fails on its module: that is
    // the error the config check must come before.
    let o = run(
        d,
        &config("segment_size = 4096", "", ""),
        &["keys", "status"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("libpkcs11-offbox-test.so"),
        "{}",
        stderr(&o)
    );

    for (value, args) in [
        ("1", &["keys", "status"][..]),
        ("1", BACKUP),
        ("4294967295", BACKUP),
        ("4095", &["keys", "status"][..]),
        ("16777217", BACKUP),
    ] {
        let o = run(d, &config(&format!("segment_size = {value}"), "", ""), args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{value} {args:?}: {err}");
        assert!(
            err.contains(&format!(
                "is invalid: backup.segment_size = {value} is out of range; it must be 4096 to 16777216 bytes"
            )),
            "{value} {args:?}: {err}"
        );
        assert!(!err.contains("libpkcs11-offbox-test.so"), "{err}");
        assert!(!err.contains("archive header"), "{err}");
        assert!(o.stdout.is_empty(), "{value} {args:?}: wrote to stdout");
    }
}

#[test]
fn other_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let long = format!("appliance_id = \"{}\"", "a".repeat(64));
    let cases = [
        (config("zstd_level = 99", "", ""), "backup.zstd_level = 99 is out of range; zstd accepts "),
        (config("threads = 1000", "", ""), "backup.threads = 1000 is out of range; it must be 0 (one zstd worker per core) to 256"),
        (
            config("", "", "").replace("appliance_id = \"cfg-test\"", &long),
            "is out of range; it is 64 bytes long and must be 1 to 63",
        ),
        (
            config("", "", "[targets.nas]\nurl = \"smb://u@nas.example/share/dir\"\npasword = \"x\""),
            "unknown field `pasword`, expected one of `url`, `password_file`, `password_env`, `timeout_secs`, `endpoint`, `region`, `path_style`, `allow_http`, `ca_file`, `access_key_id`, `secret_key_file`, `secret_key_env`, `lock_mode`, `retention_days`, `retention_secs`, `quota_bytes`\n(in table [targets.nas])",
        ),
    ];
    for (cfg, want) in cases {
        for args in [&["keys", "status"][..], BACKUP] {
            let o = run(d, &cfg, args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{want}: {err}");
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains("libpkcs11-offbox-test.so"), "{err}");
            assert!(!err.contains("expected struct TargetConfig"), "{err}");
        }
    }
}
