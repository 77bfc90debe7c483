//! The key ceremony (`recovery init`): its parameters, the share files and the public key it
//! records, and the refusal to back up without a recovery key unless the config accepts it.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use common::{stderr, tree, Sim};
use rc::*;

/// Without a recovery key, backups are refused (with the exact reason) unless
/// `allow_without_recovery = true`; `recovery init` refuses M < 2 and M > N and more than 255
/// shares, writing nothing; a valid ceremony writes private share files, records the public
/// key, and then backups carry a recovery slot. A second `init`, a `rotate` without a key and
/// a ceremony into a non-empty directory are refused.
#[test]
fn ceremony_parameters_and_backups_without_a_recovery_key() {
    let sim = Sim::with_args(&["--no-recovery"], true);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let cfg = sim.config();
    // The config is not world-readable; ceremonies keep it so.
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o640)).unwrap();
    let backup = |name: &str| -> Output {
        sim.cmd(&[
            "backup",
            "create",
            "--kind",
            "system",
            "--source",
            s(&src),
            "--output",
            "-",
        ])
        .stdout(fs::File::create(w.join(name)).unwrap())
        .output()
        .unwrap()
    };

    // No recovery key: refused, and no archive bytes at all.
    let o = backup("refused.obx");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "offbox: error: refusing to back up without a recovery slot: no recovery public key is configured, and an archive whose key is wrapped only by this appliance's HSM or TPM dies with the appliance. Run `offbox recovery init` (a key ceremony, see docs/ceremonies.md), or set recovery.allow_without_recovery = true to accept that risk explicitly\n"
    );
    assert_eq!(fs::metadata(w.join("refused.obx")).unwrap().len(), 0);

    // Rotation needs a key to rotate.
    let out_dir = w.join("shares");
    let before = fs::read(&cfg).unwrap();
    let o = ceremony(&sim, "rotate", 5, 3, &out_dir);
    assert_fails(&o, 4, "no recovery public key is configured; run `offbox recovery init` (a key ceremony) or set recovery.public_key");
    assert!(!out_dir.exists());

    // Bad parameters: clear errors, nothing written, config unchanged.
    for (n, m, message) in [
        ("5", "1", "--threshold 1 is too low: with fewer than 2 shares needed, any single custodian could open every archive; use 2 or more"),
        ("5", "0", "--threshold 0 is too low: with fewer than 2 shares needed, any single custodian could open every archive; use 2 or more"),
        ("3", "4", "--threshold 4 is more than --shares 3: the key could never be rebuilt; use a threshold of at most 3"),
        ("1", "2", "--threshold 2 is more than --shares 1: the key could never be rebuilt; use a threshold of at most 1"),
        ("256", "3", "--shares 256 is more than the 255 allowed"),
    ] {
        let o = sim.run(&[
            "recovery",
            "init",
            "--shares",
            n,
            "--threshold",
            m,
            "--out",
            s(&out_dir),
        ]);
        assert_fails(&o, 4, message);
        assert!(!out_dir.exists(), "--shares {n} --threshold {m}");
        assert_eq!(fs::read(&cfg).unwrap(), before);
    }

    // allow_without_recovery = true: the risk accepted explicitly, the archive has only the
    // device slot, and the shares cannot open it.
    sim.edit_config(|t| format!("{t}\n[recovery]\nallow_without_recovery = true\n"));
    let o = backup("device-only.obx");
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o);
    let line = line
        .lines()
        .find(|l| l.starts_with("offbox: backup complete: "))
        .unwrap();
    assert!(line.ends_with(" slots=pkcs11"), "{line}");

    // A valid 2-of-3 ceremony.
    let o = ceremony(&sim, "init", 3, 2, &out_dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| out_dir.join(format!("share-{i}-of-3.txt")))
        .collect();
    assert_eq!(
        tree(&out_dir),
        vec![
            "share-1-of-3.txt",
            "share-2-of-3.txt",
            "share-3-of-3.txt",
            "signing-keys.pem"
        ]
    );
    let key_id = key_id_of(&files[0]);
    let public = public_key_of(&cfg);
    assert!(
        text.starts_with(&format!(
            "offbox: recovery key {key_id} created; 2 of 3 shares open it.\n"
        )),
        "{text}"
    );
    for expected in [
        format!("public key recorded in {}: {public}\n", cfg.display()),
        format!("  - take {} (print it, or copy it to your own offline medium),\n", files[2].display()),
        "  - check it at a drill: offbox recovery verify-shares --share FILE ...,\n".to_string(),
        "Security officer: once every custodian holds a copy, securely delete the share files here (shred -u).\n".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("ROTATED"), "{text}");
    assert!(
        text.contains(" different 2-share subsets rebuild the key."),
        "{text}"
    );
    assert_eq!(
        fs::metadata(&out_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in &files {
        let meta = fs::metadata(f).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", f.display());
        let t = fs::read_to_string(f).unwrap();
        assert!(t.contains(&format!("key-id: {key_id}\n")));
        assert!(t.contains("threshold: 2\n"));
    }
    let cfg_text = fs::read_to_string(&cfg).unwrap();
    assert!(
        cfg_text.contains(&format!(
            "[recovery]\npublic_key = \"{public}\"\nallow_without_recovery = true\n"
        )),
        "{cfg_text}"
    );
    assert_eq!(
        fs::metadata(&cfg).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert!(!w.join("offbox.toml.offbox-tmp").exists());
    assert!(!sim.path().join("offbox.toml.offbox-tmp").exists());
    // Any two shares rebuild it.
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let picked: Vec<PathBuf> = pair.iter().map(|&i| files[i].clone()).collect();
        assert_eq!(rebuild(&picked).public().encode(), public);
    }

    // Now backups carry the recovery slot, and the shares open them.
    let o = backup("with-recovery.obx");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(" slots=pkcs11,recovery"),
        "{}",
        stderr(&o)
    );
    let cwd = fresh(w, "cwd");
    let tar = w.join("with-recovery.tar");
    let o = recover(
        &cwd,
        &w.join("with-recovery.obx"),
        &files[1..],
        &["--output", s(&tar)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The archive made without a recovery slot cannot be opened by shares.
    let dir = fresh(w, "out-device-only");
    let tar = dir.join("device-only.tar");
    let o = recover(
        &cwd,
        &w.join("device-only.obx"),
        &files[1..],
        &["--output", s(&tar)],
    );
    assert_fails(
        &o,
        4,
        "no key slot of this archive can be opened here (slots: pkcs11)",
    );
    assert_nothing_written(&dir, &tar);

    // A second init is refused: that is what rotate is for.
    let again = w.join("again");
    let before = fs::read(&cfg).unwrap();
    let o = ceremony(&sim, "init", 3, 2, &again);
    assert_fails(&o, 1, "recovery init failed: the config already has a recovery public key; use `offbox recovery rotate` to replace it");
    assert!(!again.exists());
    assert_eq!(fs::read(&cfg).unwrap(), before);

    // A ceremony never writes into a directory that holds files (shares would be mixed up).
    let o = ceremony(&sim, "rotate", 3, 2, &out_dir);
    assert_fails(
        &o,
        1,
        &format!(
            "writing shares to {} failed: the directory is not empty; give a new directory so that no share is overwritten",
            out_dir.display()
        ),
    );
    assert_eq!(fs::read(&cfg).unwrap(), before);
    assert_eq!(tree(&out_dir).len(), 4);
}
