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
    let out = b.run(&["verify", archive.to_str().unwrap()]);
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
