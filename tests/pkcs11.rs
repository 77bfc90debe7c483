//! PKCS#11 custody against a real SoftHSM token: the documented errors for a wrong PIN, a
//! missing token, module or KEK, another HSM's archive, and `keys status`.

mod common;

use std::fs;

use common::{stderr, Sim};

fn small_archive(sim: &Sim, work: &std::path::Path) -> std::path::PathBuf {
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let a = work.join("a.obx");
    sim.backup("system", &src, &a);
    a
}

#[test]
fn wrong_pin_is_named_with_c_login() {
    let sim = Sim::new();
    let pin = sim.path().join("pin");
    fs::write(&pin, "0000wrong").unwrap();
    let out = sim.run(&["keys", "status"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "offbox: error: C_Login failed: CKR_PIN_INCORRECT: the PIN from file {} is wrong for token \"offbox\"; fix the PIN there (repeated failures lock the token)",
            pin.display()
        )
    );
}

#[test]
fn missing_pin_source_is_named() {
    let sim = Sim::new();
    sim.edit_config(|t| {
        let start = t.find("pin_file").unwrap();
        let end = start + t[start..].find('\n').unwrap() + 1;
        format!(
            "{}pin_env = \"OFFBOX_TEST_NO_SUCH_PIN\"\n{}",
            &t[..start],
            &t[end..]
        )
    });
    let out = sim.run(&["keys", "status"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("the PKCS#11 user PIN is expected in environment variable OFFBOX_TEST_NO_SUCH_PIN, which is not set"));
    // The same PIN from the environment works.
    let pin = fs::read_to_string(sim.path().join("pin")).unwrap();
    let out = sim
        .cmd(&["keys", "status"])
        .env("OFFBOX_TEST_NO_SUCH_PIN", pin.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_token_lists_the_tokens_present() {
    let sim = Sim::new();
    sim.edit_config(|t| t.replace("token_label = \"offbox\"", "token_label = \"nope\""));
    let out = sim.run(&["keys", "status"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.starts_with("offbox: error: no PKCS#11 token labelled \"nope\" in module "),
        "{err}"
    );
    assert!(
        err.contains(" (tokens present: \"offbox\", (an uninitialized token)); check keys.pkcs11.token_label, that the HSM is connected, and for SoftHSM that SOFTHSM2_CONF points at its config"),
        "{err}"
    );
}

#[test]
fn missing_module_is_named() {
    let sim = Sim::new();
    sim.edit_config(|t| {
        let start = t.find("module = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!(
            "{}module = \"/nonexistent/libpkcs11.so\"{}",
            &t[..start],
            &t[end..]
        )
    });
    let out = sim.run(&["keys", "status"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        stderr(&out).trim(),
        "offbox: error: cannot load the PKCS#11 module /nonexistent/libpkcs11.so: no such file; check keys.pkcs11.module in the config and that the HSM vendor's package is installed"
    );
}

#[test]
fn missing_kek_says_run_keys_init() {
    let sim = Sim::with_args(&[], false);
    // No keys means no recovery ceremony either (it records the signing key).
    sim.edit_config(|t| format!("{t}\n[recovery]\nallow_without_recovery = true\n"));
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("f"), b"x").unwrap();
    let out = sim
        .cmd(&[
            "backup",
            "create",
            "--kind",
            "system",
            "--source",
            work.path().to_str().unwrap(),
            "--output",
            "-",
        ])
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        stderr(&out).trim(),
        "offbox: error: no key-encryption key labelled \"offbox-kek\" in token \"offbox\"; run `offbox keys init` to create one"
    );
    let status = String::from_utf8(sim.ok(&["keys", "status"])).unwrap();
    assert!(
        status.contains("KEK:      missing (run `offbox keys init`)"),
        "{status}"
    );
}

#[test]
fn init_refuses_to_replace_and_status_lists_the_version() {
    let sim = Sim::new();
    let out = sim.run(&["keys", "init"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("already holds key-encryption key \"offbox-kek\" version 1"));
    let status = String::from_utf8(sim.ok(&["keys", "status"])).unwrap();
    assert!(status.contains("backend:  pkcs11"), "{status}");
    assert!(status.contains("KEK:      version 1 (current) at token \"offbox\", label \"offbox-kek\", id \"offbox-kek-v1\""), "{status}");
    let json: serde_json::Value =
        serde_json::from_slice(&sim.ok(&["--json", "keys", "status"])).unwrap();
    assert_eq!(json["status"]["versions"][0]["version"], 1);
}

#[test]
fn another_hsms_archive_does_not_open_through_the_device_slot() {
    let a = Sim::new();
    let b = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let archive = small_archive(&a, work.path());
    // B does not trust A's signing key: refused before any key is used.
    let out = b.run(&["verify", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("which is not a trusted signing key here"));
    // Trusting it (A's exported key), B's token still cannot open A's device slot.
    let pem = work.path().join("a.pem");
    a.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    let out = b.run(&[
        "verify",
        archive.to_str().unwrap(),
        "--public-key",
        pem.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("the device slot does not open with this token's key-encryption key (the archive comes from another HSM, or its slot was altered); open it with the recovery shares"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn backup_refuses_a_local_output_file_and_a_terminal() {
    let sim = Sim::new();
    let out = sim.run(&[
        "backup",
        "create",
        "--kind",
        "system",
        "--source",
        "/etc/hostname",
        "--output",
        "/tmp/x.obx",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("never to a local file"));
    assert!(!std::path::Path::new("/tmp/x.obx").exists());
}

/// `keys init --replace` destroys keys only with `--yes`, says what becomes unreadable, never
/// reuses a version number, and keeps the public halves of replaced signing keys, so that old
/// archives still verify (through their recovery slot) and new ones use the new key.
#[test]
fn init_replace_needs_yes_never_reuses_a_version_and_keeps_old_signing_keys() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let old = small_archive(&sim, w);
    let pem_old = w.join("old.pem");
    sim.ok(&[
        "keys",
        "export-public",
        "--output",
        pem_old.to_str().unwrap(),
    ]);

    let out = sim.run(&["keys", "init", "--replace"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("offbox: error: `keys init --replace` was not done: it destroys every key-encryption key version (1) and the private signing key."),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Run again with --replace --yes"));
    let status = String::from_utf8(sim.ok(&["keys", "status"])).unwrap();
    assert!(status.contains("version 1 (current)"), "{status}");
    // --yes alone is refused by the parser (it needs --replace).
    assert_eq!(sim.run(&["keys", "init", "--yes"]).status.code(), Some(2));

    let out = sim.run(&["keys", "init", "--replace", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `offbox recovery rotate` now"),
        "{}",
        stderr(&out)
    );
    let status = String::from_utf8(sim.ok(&["keys", "status"])).unwrap();
    assert!(
        status.contains("KEK:      version 2 (current) at token \"offbox\", label \"offbox-kek\", id \"offbox-kek-v2\""),
        "{status}"
    );
    assert!(!status.contains("version 1"), "{status}");

    // The old archive's device slot is gone with version 1; the recovery slot still opens it,
    // and its signature still verifies.
    let out = sim.run(&["verify", old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let dest = w.join("restored");
    let out = sim.run(&[
        "restore",
        old.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--share",
        sim.share(1).to_str().unwrap(),
        "--share",
        sim.share(2).to_str().unwrap(),
        "--share",
        sim.share(3).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(" signature verified (key "));

    // The device keeps the old public key beside the new one: both are trusted as its own.
    std::env::set_var("SOFTHSM2_CONF", &sim.softhsm_conf);
    let cfg = offbox::config::Config::load(&sim.config()).unwrap();
    let mut device = offbox::keys::open_device(&cfg.keys).unwrap();
    let keys = device.signing_keys().unwrap();
    let old_key =
        offbox::format::signature::PublicKey::from_pem_or_der(&fs::read(&pem_old).unwrap())
            .unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], old_key);
    assert_ne!(keys[0], old_key);
    assert_eq!(device.signing_key().unwrap(), keys[0]);
    drop(device);

    // A new archive is signed by the new key; another replace makes version 3, not 1.
    let again = w.join("again");
    fs::create_dir(&again).unwrap();
    let new = small_archive(&sim, &again);
    sim.ok(&["verify", new.to_str().unwrap()]);
    let out = sim.run(&["keys", "init", "--replace", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = String::from_utf8(sim.ok(&["keys", "status"])).unwrap();
    assert!(status.contains("id \"offbox-kek-v3\""), "{status}");
}
