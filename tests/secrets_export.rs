//! An empty secrets export is an error, found before any archive byte is written: an
//! export command that prints nothing, or an empty export file, fails the backup with a
//! message that names the source and what to check, and standard output stays empty.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::{stderr, Sim};

fn backup_secrets(sim: &Sim, extra: &[&str], archive: &Path) -> Output {
    let mut args = vec!["backup", "create", "--kind", "secrets", "--output", "-"];
    args.extend_from_slice(extra);
    sim.cmd(&args)
        .stdout(fs::File::create(archive).unwrap())
        .output()
        .unwrap()
}

fn assert_refused(o: &Output, archive: &Path, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("offbox: error: the secrets export failed: "),
        "{err}"
    );
    assert!(err.contains(want), "{err}");
    assert!(err.contains("no archive was written"), "{err}");
    assert!(!err.contains("backup complete"), "{err}");
    // Nothing at all on standard output: no header, nothing that could pass for an archive.
    assert_eq!(fs::metadata(archive).unwrap().len(), 0, "{err}");
}

#[test]
fn an_empty_export_fails_the_backup_before_any_output() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let base = fs::read_to_string(sim.config()).unwrap();

    // An export command that succeeds and prints nothing.
    sim.edit_config(|t| format!("{t}\n[secrets]\nexport_command = [\"true\"]\n"));
    let arch = w.join("true.obx");
    let o = backup_secrets(&sim, &[], &arch);
    assert_refused(
        &o,
        &arch,
        "the export command true succeeded but wrote nothing (0 bytes), and an empty export is not a backup; no archive was written. Run secrets.export_command by hand as the service user",
    );

    // One that fails before printing anything: its exit status is named.
    fs::write(sim.config(), &base).unwrap();
    sim.edit_config(|t| format!("{t}\n[secrets]\nexport_command = [\"sh\", \"-c\", \"exit 5\"]\n"));
    let arch = w.join("fails.obx");
    let o = backup_secrets(&sim, &[], &arch);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the export command sh failed (exit status: 5)"),
        "{err}"
    );
    assert!(
        err.contains("check secrets.export_command in the config"),
        "{err}"
    );
    assert_eq!(fs::metadata(&arch).unwrap().len(), 0);

    // An empty file, as --source and as secrets.file.
    let empty = w.join("export.json");
    fs::write(&empty, b"").unwrap();
    fs::write(sim.config(), &base).unwrap();
    let arch = w.join("source.obx");
    let o = backup_secrets(&sim, &["--source", empty.to_str().unwrap()], &arch);
    assert_refused(
        &o,
        &arch,
        &format!(
            "{} (secrets.file in the config, or --source) is empty (0 bytes), and an empty export is not a backup",
            empty.display()
        ),
    );
    sim.edit_config(|t| format!("{t}\n[secrets]\nfile = \"{}\"\n", empty.display()));
    let arch = w.join("file.obx");
    let o = backup_secrets(&sim, &[], &arch);
    assert_refused(&o, &arch, "is empty (0 bytes)");

    // One byte is a backup.
    fs::write(&empty, b"x").unwrap();
    let arch = w.join("one-byte.obx");
    let o = backup_secrets(&sim, &[], &arch);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("backup complete"), "{err}");
    assert!(fs::metadata(&arch).unwrap().len() > 0);
}
