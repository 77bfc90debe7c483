//! Break the glass with custodian shares, on a real SoftHSM token: 3-of-5 end to end with
//! the token destroyed, a disaster restore onto a new token, the audit line of every opening
//! with shares, and the size limit on share files. Every `recover` runs with nothing in its
//! environment but PATH: no SOFTHSM2_CONF, no OFFBOX_CONFIG, no config file, no token.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{pattern, stderr, tree, Sim};
use rc::*;

/// System and secrets archives are backed up, the token is destroyed, and `recover` with
/// shares {1,3,5} alone (no HSM, no config, no SoftHSM environment) brings back every byte,
/// with the audit line on stderr. Two shares, a corrupted share and shares of another ceremony
/// are refused with errors that say which and why, and nothing is written.
#[test]
fn three_of_five_end_to_end_with_the_token_destroyed() {
    let sim = Sim::new();
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let secrets = pattern(300_000, 5);
    let secrets_file = w.join("vault-export.bin");
    fs::write(&secrets_file, &secrets).unwrap();
    let sys = w.join("system.obx");
    let sec = w.join("secrets.obx");
    let sys_id = archive_id(&sim.backup("system", &src, &sys));
    let sec_id = archive_id(&sim.backup("secrets", &secrets_file, &sec));
    // The tar stream as the appliance itself decrypts it, for a byte-exact comparison.
    let tar_ref = w.join("system-by-device.tar");
    sim.ok(&["decrypt", s(&sys), "--output", s(&tar_ref)]);
    let pem = w.join("appliance.pem");
    sim.ok(&["keys", "export-public", "--output", s(&pem)]);
    let key_id = key_id_of(&sim.share(1));

    destroy_token(&sim);
    let gone = w.join("via-device");
    let o = sim.run(&["decrypt", s(&sec), "--output", s(&gone)]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "the device still opens the archive"
    );
    assert!(stderr(&o).starts_with("offbox: error: "), "{}", stderr(&o));
    assert!(!gone.exists());

    // Break the glass: shares 5, 1, 3 (any order), an empty working directory.
    let cwd = fresh(w, "cwd");
    let q = vec![sim.share(5), sim.share(1), sim.share(3)];
    let out = w.join("secrets.out");
    let o = recover(&cwd, &sec, &q, &["--output", s(&out)]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(fs::read(&out).unwrap(), secrets, "secrets differ");
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_audit(&err, &sec_id, "secrets", "1,3,5");
    assert!(
        err.contains(&format!(
            "offbox: decrypted: kind=secrets archive={sec_id} payload_bytes=300000 signature verified (key "
        )) && err.contains(&format!(", trusted as the custodians' shares) to {}\n", out.display())),
        "{err}"
    );

    // The system archive as a tar stream: identical to what the device decrypted.
    let tar = w.join("system.tar");
    let o = recover(&cwd, &sys, &q, &["--output", s(&tar)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&tar).unwrap(), fs::read(&tar_ref).unwrap());
    assert_audit(&stderr(&o), &sys_id, "system", "1,3,5");

    // The system archive into a new directory: the same tree.
    let dest = w.join("restored");
    let o = recover(&cwd, &sys, &q, &["--to", s(&dest)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!(
            "offbox: restore complete: kind=system archive={sys_id} "
        )),
        "{}",
        stdout(&o)
    );
    assert_audit(&stderr(&o), &sys_id, "system", "1,3,5");
    assert_same_tree(&src, &restored(&dest, &src));

    // With the appliance's public key (kept with the shares), the signature is checked too.
    let out2 = w.join("secrets-signed.out");
    let o = recover(
        &cwd,
        &sec,
        &q,
        &["--output", s(&out2), "--public-key", s(&pem), "--json"],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(fs::read(&out2).unwrap(), secrets);
    let json = err.lines().find(|l| l.starts_with('{')).expect(&err);
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["archive_id"], sec_id);
    assert_eq!(v["payload_bytes"], 300_000);
    assert_eq!(
        v["signature"]["verified"]["trusted_as"],
        format!("--public-key {}", pem.display()),
        "{json}"
    );
    assert_audit(&err, &sec_id, "secrets", "1,3,5");

    // recover wrote nothing but its outputs.
    assert_eq!(tree(&cwd), Vec::<String>::new());

    // Two shares (also: three files, two distinct shares): refused, nothing written.
    let too_few = format!(
        "2 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"
    );
    for (name, shares) in [
        ("two", vec![sim.share(2), sim.share(4)]),
        ("duplicate", vec![sim.share(2), sim.share(4), sim.share(2)]),
    ] {
        let dir = fresh(w, name);
        let out = dir.join("payload");
        assert_fails(
            &recover(&cwd, &sec, &shares, &["--output", s(&out)]),
            4,
            &too_few,
        );
        assert_nothing_written(&dir, &out);
        let to = dir.join("tree");
        assert_fails(
            &recover(&cwd, &sys, &shares, &["--to", s(&to)]),
            4,
            &too_few,
        );
        assert_nothing_written(&dir, &to);
    }

    // A corrupted share (one character changed; a group missing): refused, naming the file.
    // A share that passes its checksum but is wrong: refused, the key id does not match.
    let bad = fresh(w, "corrupt");
    let typo3 = bad.join("share-3-of-5.txt");
    fs::write(&typo3, edit_share(&sim.share(3), |c| typo(c, 40))).unwrap();
    let forged1 = bad.join("share-1-of-5.txt");
    fs::write(&forged1, edit_share(&sim.share(1), forged)).unwrap();
    let short5 = bad.join("share-5-of-5.txt");
    fs::write(
        &short5,
        edit_share(&sim.share(5), |c| {
            let mut groups: Vec<&str> = c.split('-').collect();
            groups.remove(7);
            groups.join("-")
        }),
    )
    .unwrap();
    for (shares, message) in [
        (
            vec![sim.share(1), typo3.clone(), sim.share(5)],
            format!("share {} is damaged or mistyped (checksum mismatch); check it character by character against the custodian's copy", typo3.display()),
        ),
        (
            vec![sim.share(1), sim.share(3), short5.clone()],
            format!("share {} is damaged or mistyped (45 bytes instead of 48: a group is missing or extra)", short5.display()),
        ),
        (
            vec![forged1.clone(), sim.share(3), sim.share(5)],
            format!("the shares do not reconstruct recovery key {key_id}: at least one share is wrong although its checksum passed; run `offbox recovery verify-shares` with each subset to find it"),
        ),
    ] {
        let dir = fresh(w, "out-corrupt");
        let out = dir.join("payload");
        assert_fails(
            &recover(&cwd, &sec, &shares, &["--output", s(&out)]),
            4,
            &message,
        );
        assert_nothing_written(&dir, &out);
        fs::remove_dir(&dir).unwrap();
    }

    // Shares of another ceremony: mixed in, or all of them.
    let (other, other_id) = other_ceremony(&sim, w);
    assert_ne!(other_id, key_id);
    let other5 = other.join("share-5-of-5.txt");
    for (shares, message) in [
        (
            vec![sim.share(1), sim.share(3), other5.clone()],
            format!("share {} belongs to recovery key {other_id}, the others to {key_id}; use shares of one ceremony only", other5.display()),
        ),
        (
            (1..=3).map(|i| other.join(format!("share-{i}-of-5.txt"))).collect(),
            format!("the archive's recovery slot was made for recovery key {key_id}, but the shares reconstruct another recovery key ({other_id}); bring the shares of the ceremony that made key {key_id}"),
        ),
    ] {
        let dir = fresh(w, "out-other");
        let out = dir.join("payload");
        assert_fails(
            &recover(&cwd, &sec, &shares, &["--output", s(&out)]),
            4,
            &message,
        );
        assert_nothing_written(&dir, &out);
        let to = dir.join("tree");
        assert_fails(&recover(&cwd, &sys, &shares, &["--to", s(&to)]), 4, &message);
        assert_nothing_written(&dir, &to);
        fs::remove_dir(&dir).unwrap();
    }

    // An existing output file is never overwritten, even by a successful recovery.
    let o = recover(&cwd, &sec, &q, &["--output", s(&out)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the file exists; give a new name"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&out).unwrap(), secrets);
}

/// The appliance and its token are lost; a replacement with a new token (its own KEK and
/// recovery key) restores the old archive with the old custodians' shares, byte for byte, and
/// logs the audit line. Without shares, or with too few, nothing is restored.
#[test]
fn disaster_restore_drill_on_a_new_token() {
    let old = Sim::new();
    old.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    let id = archive_id(&old.backup("system", &src, &arch));
    let old_pem = w.join("old-appliance.pem");
    old.ok(&["keys", "export-public", "--output", s(&old_pem)]);
    let key_id = key_id_of(&old.share(1));
    let shares = vec![old.share(4), old.share(2), old.share(1)];
    destroy_token(&old);

    // The replacement appliance.
    let new = Sim::new();
    assert_ne!(key_id_of(&new.share(1)), key_id);

    // The new appliance does not trust the old one's signing key, and its token could not
    // open the archive anyway: nothing is restored, the shares are named.
    let dest0 = w.join("without-shares");
    let o = new.run(&["restore", s(&arch), "--to", s(&dest0)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("which is not a trusted signing key here (trusted: ")
            && stderr(&o).contains(
                "An archive of another appliance opens with the custodians' shares (--share FILE"
            ),
        "{}",
        stderr(&o)
    );
    assert!(!dest0.exists());

    // Too few shares: refused before anything is extracted.
    let dest1 = w.join("two-shares");
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        dest1.display().to_string(),
    ];
    args.extend(share_args(&shares[..2]));
    let args1: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_fails(
        &new.run(&args1),
        4,
        &format!(
            "2 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"
        ),
    );
    assert!(!dest1.exists());
    assert!(!fs::read_dir(w).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("offbox-partial")));

    // With three shares: restored, with an audit line naming archive, destination and shares.
    let dest = w.join("restored");
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        dest.display().to_string(),
    ];
    args.extend(share_args(&shares));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = new.run(&argv);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "offbox: AUDIT: restore of archive {id} (system of appliance hsm-sim) to {} with recovery shares 1,2,4\n",
            dest.display()
        )),
        "{err}"
    );
    assert!(
        out.starts_with(&format!(
            "offbox: restore complete: kind=system archive={id} payload_bytes="
        )),
        "{out}"
    );
    // The old appliance's signing key is trusted because the shares vouch for it.
    assert!(
        out.contains(" signature verified (key ")
            && out.contains(", trusted as the custodians' shares) to "),
        "{out}"
    );
    assert!(out.ends_with(&format!(" to {}\n", dest.display())), "{out}");
    assert_same_tree(&src, &restored(&dest, &src));

    // With the old appliance's public key, the signature is verified as well.
    let dest2 = w.join("restored-signed");
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        dest2.display().to_string(),
        "--public-key".into(),
        old_pem.display().to_string(),
    ];
    args.extend(share_args(&shares));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = new.run(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(" signature verified (key "),
        "{}",
        stdout(&o)
    );
    assert_same_tree(&src, &restored(&dest2, &src));

    // The replacement backs the restored data up under its own keys and restores it alone.
    let arch2 = w.join("system-new.obx");
    let back = restored(&dest, &src);
    new.backup("system", &back, &arch2);
    let dest3 = w.join("restored-again");
    new.ok(&["restore", s(&arch2), "--to", s(&dest3)]);
    assert_same_tree(&src, &restored(&dest3, &back));
}

/// Every command that opens an archive with custodian shares leaves an audit line naming the
/// archive and the share indexes: `recover`, `restore --share` and `decrypt --share`.
#[test]
fn every_opening_with_shares_is_audited() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    let id = archive_id(&sim.backup("system", &src, &arch));
    destroy_token(&sim);
    let cwd = fresh(w, "cwd");
    let q = vec![sim.share(3), sim.share(1), sim.share(5)];
    let audit_lines = |o: &Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter(|l| l.contains("AUDIT"))
            .map(str::to_string)
            .collect()
    };

    let o = recover(&cwd, &arch, &q, &["--output", s(&w.join("recovered.tar"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_audit(&stderr(&o), &id, "system", "1,3,5");

    let dest = w.join("restored");
    let mut args = vec![
        "restore".to_string(),
        s(&arch).into(),
        "--to".into(),
        s(&dest).into(),
    ];
    args.extend(share_args(&q));
    let o = bare(&cwd, &args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        audit_lines(&o),
        vec![format!(
            "offbox: AUDIT: restore of archive {id} (system of appliance hsm-sim) to {} with recovery shares 1,3,5",
            dest.display()
        )]
    );

    let out = w.join("decrypted.tar");
    let mut args = vec![
        "decrypt".to_string(),
        s(&arch).into(),
        "--output".into(),
        s(&out).into(),
    ];
    args.extend(share_args(&q));
    let o = bare(&cwd, &args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(w.join("recovered.tar")).unwrap()
    );
    let lines = audit_lines(&o);
    assert!(
        lines.len() == 1
            && lines[0].starts_with("offbox: AUDIT: ")
            && lines[0].contains(&id)
            && lines[0].ends_with(" with recovery shares 1,3,5"),
        "`decrypt --share` opened the archive through its recovery slot without an audit line: {lines:?}"
    );
}

/// Share files are read with a size limit: `--share /dev/zero` is refused at once, naming the
/// file, and nothing is opened.
#[test]
fn an_endless_share_file_is_refused_not_read() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    sim.backup("system", &src, &arch);
    let cwd = fresh(w, "cwd");
    let out = cwd.join("payload");
    let shares = vec![sim.share(1), PathBuf::from("/dev/zero"), sim.share(3)];
    let t0 = Instant::now();
    let o = recover(&cwd, &arch, &shares, &["--output", s(&out)]);
    assert_fails(
        &o,
        4,
        "share /dev/zero is damaged or mistyped (it is larger than 65536 bytes, so it is not a share file); check it character by character against the custodian's copy",
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_nothing_written(&cwd, &out);
}
