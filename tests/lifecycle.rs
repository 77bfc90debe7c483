//! Key lifecycle on both backends: rotation keeps old archives readable, retirement warns
//! first and then really removes the device path, and signatures verify without keys while
//! refusing another appliance's archives.

mod common;

use std::fs;

use common::{stderr, Backend, Sim};

fn archive(sim: &Sim, work: &std::path::Path, name: &str) -> std::path::PathBuf {
    let src = work.join(format!("src-{name}"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), name.as_bytes()).unwrap();
    let a = work.join(format!("{name}.obx"));
    sim.backup("system", &src, &a);
    a
}

fn rotation_keeps_old_archives_and_retire_warns_first(backend: Backend) {
    let sim = Sim::for_backend(backend);
    let work = tempfile::tempdir().unwrap();
    let old = archive(&sim, work.path(), "old");
    let out = String::from_utf8(sim.ok(&["keys", "rotate"])).unwrap();
    assert!(
        out.starts_with("offbox: key-encryption key version 2 created"),
        "{out}"
    );
    let new = archive(&sim, work.path(), "new");
    // Both open; the old one through version 1.
    sim.ok(&["verify", old.to_str().unwrap()]);
    sim.ok(&["verify", new.to_str().unwrap()]);
    let status = String::from_utf8(sim.ok(&["keys", "status"])).unwrap();
    assert!(status.contains("KEK:      version 1 at "), "{status}");
    assert!(
        status.contains("KEK:      version 2 (current) at "),
        "{status}"
    );

    // Retiring the current version is refused.
    let out = sim.run(&["keys", "retire", "2", "--yes"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("rotate first")
            || stderr(&out).contains("run `offbox keys rotate` first"),
        "{}",
        stderr(&out)
    );
    // Without --yes, retire only says what it would make unreadable (print-only: exit 0).
    // No target is configured here, so it says that it checked none (tests/targets_ssh.rs
    // lists the archives of a target).
    let out = sim.run(&["keys", "retire", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "offbox: keys retire 1 (dry run, nothing was destroyed): 0 archive(s) of this appliance on 0 checked target(s) use key-encryption key version 1; no [targets.NAME] is configured, so archives kept elsewhere were not checked (`offbox verify ARCHIVE` names the slots of one). Run again with --yes to destroy it"
    );
    assert!(out.stdout.is_empty());
    sim.ok(&["verify", old.to_str().unwrap()]);
    // A version the device does not hold, or the current one, is refused as --yes would.
    let out = sim.run(&["keys", "retire", "7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no version 7 (versions: 1, 2)"),
        "{}",
        stderr(&out)
    );
    let out = sim.run(&["keys", "retire", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("version 2 is the current one"),
        "{}",
        stderr(&out)
    );

    sim.ok(&["keys", "retire", "1", "--yes"]);
    let out = sim.run(&["verify", old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("version 1"), "{}", stderr(&out));
    assert!(stderr(&out).contains("recovery"), "{}", stderr(&out));
    sim.ok(&["verify", new.to_str().unwrap()]);
    // The old archive still opens with the custodians' shares.
    let dest = work.path().join("restored");
    sim.ok(&[
        "restore",
        old.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--share",
        sim.share(1).to_str().unwrap(),
        "--share",
        sim.share(2).to_str().unwrap(),
        "--share",
        sim.share(4).to_str().unwrap(),
    ]);
}

fn keyless_verify_refuses_another_appliance(backend: Backend) {
    let a = Sim::for_backend(backend);
    let b = Sim::for_backend(backend);
    let work = tempfile::tempdir().unwrap();
    let from_a = archive(&a, work.path(), "a");
    let from_b = archive(&b, work.path(), "b");
    let pem = work.path().join("a.pem");
    a.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    let text = fs::read_to_string(&pem).unwrap();
    assert!(
        text.starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"),
        "{text}"
    );
    let run = |archive: &std::path::Path| common::keyless_verify(&pem, archive);
    let ok = run(&from_a);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let bad = run(&from_b);
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        stderr(&bad).contains("which is not a trusted signing key here (trusted: "),
        "{}",
        stderr(&bad)
    );
    // B does not trust A's key; and trusting it, B's device cannot open A's archive either:
    // clear error, recovery named.
    let out = b.run(&["verify", from_a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = b.run(&[
        "verify",
        from_a.to_str().unwrap(),
        "--public-key",
        pem.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("recovery"), "{}", stderr(&out));
}

on_both_backends!(
    rotation_keeps_old_archives_and_retire_warns_first,
    keyless_verify_refuses_another_appliance,
);
