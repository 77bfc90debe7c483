//! The secrets backup from `[secrets] export_command`: streamed into the archive and brought
//! back byte-exact with the shares after the token is gone; a failing command leaves no valid
//! archive.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use std::fs;
use std::process::Output;

use common::{pattern, stderr, Sim};
use rc::*;

/// `[secrets] export_command` is run and its output streamed into the archive; after the
/// token is gone, the shares bring back exactly what the command wrote.
#[test]
fn secrets_export_command_is_streamed_and_recovers_byte_exact() {
    let sim = Sim::new();
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let blob = pattern(150_000, 11);
    let blob_file = w.join("blob.bin");
    fs::write(&blob_file, &blob).unwrap();
    let mut expected = blob.clone();
    for i in 0..5000 {
        expected.extend_from_slice(format!("record {i}\n").as_bytes());
    }
    set_export_command(
        &sim,
        &[
            "sh",
            "-c",
            r#"cat "$0" && i=0 && while [ $i -lt 5000 ]; do printf 'record %d\n' $i; i=$((i+1)); done"#,
            s(&blob_file),
        ],
    );
    let arch = w.join("secrets.obx");
    let o = backup_secrets_from_export(&sim, &arch);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "offbox: backup complete: kind=secrets archive={} in=",
            archive_id(&err)
        )),
        "{err}"
    );
    let id = archive_id(&err);
    let v = stdout(&sim.run(&["verify", s(&arch)]));
    assert!(v.starts_with("offbox: verify OK: kind=secrets"), "{v}");
    assert!(
        v.contains(&format!(" payload_bytes={} ", expected.len())),
        "{v}"
    );

    destroy_token(&sim);
    let cwd = fresh(w, "cwd");
    let out = w.join("export.out");
    let o = recover(
        &cwd,
        &arch,
        &[sim.share(2), sim.share(3), sim.share(5)],
        &["--output", s(&out)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), expected);
    assert_audit(&stderr(&o), &id, "secrets", "2,3,5");
}

/// An export command that fails (after writing part of its output, or none) fails the backup
/// with a non-zero exit; the bytes written so far are not a valid archive: `verify`, `decrypt`
/// and `recover` all refuse them, and nothing is decrypted to disk.
#[test]
fn a_failing_export_command_fails_the_backup_and_leaves_no_valid_archive() {
    let sim = Sim::new();
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let blob_file = w.join("blob.bin");
    // More than the output buffers hold: part of the archive is out when the export fails.
    fs::write(&blob_file, pattern(8 << 20, 13)).unwrap();
    let cwd = fresh(w, "cwd");
    let q = vec![sim.share(1), sim.share(3), sim.share(5)];
    let base = fs::read_to_string(sim.config()).unwrap();

    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "half-written",
            vec![
                "sh",
                "-c",
                r#"cat "$0"; echo 'vault export: database locked' >&2; exit 7"#,
                s(&blob_file),
            ],
            "exit status: 7",
        ),
        (
            "nothing-written",
            vec!["sh", "-c", "exit 3"],
            "exit status: 3",
        ),
        (
            "killed",
            vec!["sh", "-c", r#"cat "$0"; kill -9 $$"#, s(&blob_file)],
            "signal: 9 (SIGKILL)",
        ),
    ];
    for (name, argv, status) in cases {
        fs::write(sim.config(), &base).unwrap();
        set_export_command(&sim, &argv);
        let arch = w.join(format!("{name}.obx"));
        let o = backup_secrets_from_export(&sim, &arch);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "the export command sh failed ({status}); the archive was not finished"
            )),
            "{name}: {err}"
        );
        assert!(err.contains("offbox: error: "), "{name}: {err}");
        assert!(!err.contains("backup complete"), "{name}: {err}");
        let len = fs::metadata(&arch).unwrap().len();
        if name == "nothing-written" {
            assert_eq!(len, 0, "{name}: {len} bytes");
        } else {
            // Many segments did go out before the failure: they must not pass for an archive.
            assert!(len > 1 << 20, "{name}: {len} bytes");
        }
        if name == "half-written" {
            assert!(err.contains("vault export: database locked"), "{err}");
        }

        // Rejected as an integrity failure (exit 3) by every reader.
        let rejected = |o: &Output, what: &str| {
            let e = stderr(o);
            assert_eq!(o.status.code(), Some(3), "{name}: {what}: {e}");
            assert!(
                e.contains(" failed authentication: the archive was modified, reordered, truncated or extended")
                    || e.contains(": it was truncated; copy it again from the target")
                    // An export that fails before its first byte fails the backup before
                    // the archive header is written: the file is empty.
                    || e.contains("the archive header is truncated"),
                "{name}: {what}: {e}"
            );
        };
        let o = sim.run(&["verify", s(&arch)]);
        rejected(&o, "verify");
        assert!(o.stdout.is_empty(), "{name}: {}", stdout(&o));

        let dir = fresh(w, &format!("out-{name}"));
        let out = dir.join("payload");
        rejected(
            &sim.run(&["decrypt", s(&arch), "--output", s(&out)]),
            "decrypt",
        );
        assert_nothing_written(&dir, &out);
        let o = recover(&cwd, &arch, &q, &["--output", s(&out)]);
        rejected(&o, "recover");
        assert!(!stderr(&o).contains("offbox: decrypted"), "{name}");
        assert_nothing_written(&dir, &out);
    }

    // A command that cannot start: refused before any archive byte.
    fs::write(sim.config(), &base).unwrap();
    set_export_command(&sim, &["/nonexistent/vault-export"]);
    let arch = w.join("no-command.obx");
    let o = backup_secrets_from_export(&sim, &arch);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("offbox: error: the secrets export failed: cannot start /nonexistent/vault-export: No such file or directory (os error 2); check secrets.export_command in the config"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::metadata(&arch).unwrap().len(), 0);
}
