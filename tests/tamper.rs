//! Tampering with a real archive: every kind of edit fails verify and restore with a clear
//! error, and a failed restore leaves nothing behind.

mod common;

use std::fs;
use std::path::Path;

use common::{pattern, Backend, Sim};

struct Case {
    name: String,
    bytes: Vec<u8>,
}

fn header_end(a: &[u8]) -> usize {
    12 + u32::from_le_bytes(a[8..12].try_into().unwrap()) as usize
}

fn cases(a: &[u8]) -> Vec<Case> {
    let h = header_end(a);
    let body = h + 32;
    let seg = 4096 + 16;
    let flip = |name: &str, pos: usize| {
        let mut b = a.to_vec();
        b[pos] ^= 0x40;
        Case {
            name: format!("{name} (byte {pos})"),
            bytes: b,
        }
    };
    let mut v = vec![
        flip("magic", 3),
        flip("header length", 9),
        flip("header kind", 13),
        flip("header appliance id", 20),
        flip("key slot", h - 20),
        flip("header MAC", h + 5),
        flip("first segment ciphertext", body + 100),
        flip("middle segment", body + seg * 3 + 7),
        flip("segment tag", body + seg - 3),
        flip("last byte", a.len() - 1),
    ];
    for cut in [
        5,
        11,
        h - 3,
        h + 10,
        body,
        body + 1,
        body + seg,
        body + seg * 2 + 100,
        a.len() - 16,
        a.len() - 1,
    ] {
        v.push(Case {
            name: format!("truncated to {cut}"),
            bytes: a[..cut].to_vec(),
        });
    }
    let mut swapped = a.to_vec();
    swapped[body..body + seg].copy_from_slice(&a[body + seg..body + 2 * seg]);
    swapped[body + seg..body + 2 * seg].copy_from_slice(&a[body..body + seg]);
    v.push(Case {
        name: "segments 0 and 1 swapped".into(),
        bytes: swapped,
    });
    let mut dropped = a[..body + seg].to_vec();
    dropped.extend_from_slice(&a[body + 2 * seg..]);
    v.push(Case {
        name: "segment 1 removed".into(),
        bytes: dropped,
    });
    for extra in [1usize, 16, seg] {
        let mut b = a.to_vec();
        b.extend(pattern(extra, 5));
        v.push(Case {
            name: format!("{extra} bytes appended"),
            bytes: b,
        });
    }
    let mut dup = a.to_vec();
    dup.extend_from_slice(&a[body..body + seg]);
    v.push(Case {
        name: "first segment appended again".into(),
        bytes: dup,
    });
    v
}

const CLEAR_ERRORS: &[&str] = &[
    "not an offbox archive",
    "header is truncated",
    "header failed authentication",
    "cannot be decoded",
    "header is invalid",
    "failed authentication: the archive was modified, reordered, truncated or extended",
    "was truncated",
    "does not open with this token's key-encryption key",
    "header is ",
    "is not supported by this build",
    "the archive signature does not match its content",
    "slot does not belong to this archive's header",
];

fn every_tamper_case_fails_and_restores_nothing(backend: Backend) {
    let sim = Sim::for_backend(backend);
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Incompressible, so the body spans many segments.
    fs::write(src.join("data"), pattern(60_000, 1)).unwrap();
    let good = work.path().join("good.obx");
    sim.backup("system", &src, &good);
    sim.ok(&["verify", good.to_str().unwrap()]);
    let pem = work.path().join("signing.pem");
    sim.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    let keyless = |archive: &std::path::Path| common::keyless_verify(&pem, archive);
    let ok = keyless(&good);
    assert!(ok.status.success(), "{}", common::stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("signature verified (key "));
    let a = fs::read(&good).unwrap();
    assert!(
        a.len() > header_end(&a) + 32 + 10 * 4112,
        "archive too small for the cases"
    );

    for (i, case) in cases(&a).into_iter().enumerate() {
        let path = work.path().join(format!("bad{i}.obx"));
        fs::write(&path, &case.bytes).unwrap();
        let out = sim.run(&["verify", path.to_str().unwrap()]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{}: verify accepted it", case.name);
        assert!(
            matches!(out.status.code(), Some(3) | Some(4)),
            "{}: exit {:?}: {err}",
            case.name,
            out.status.code()
        );
        assert!(
            CLEAR_ERRORS.iter().any(|e| err.contains(e)),
            "{}: unclear error: {err}",
            case.name
        );

        let k = keyless(&path);
        assert!(
            !k.status.success(),
            "{}: keyless verify accepted it",
            case.name
        );
        assert!(
            matches!(k.status.code(), Some(3)),
            "{}: keyless exit {:?}: {}",
            case.name,
            k.status.code(),
            common::stderr(&k)
        );

        let restore_parent = work.path().join(format!("r{i}"));
        fs::create_dir(&restore_parent).unwrap();
        let dest = restore_parent.join("dest");
        let out = sim.run(&[
            "restore",
            path.to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{}: restore accepted it", case.name);
        assert_eq!(
            common::tree(&restore_parent),
            Vec::<String>::new(),
            "{}: restore left files",
            case.name
        );
        assert!(!Path::new(&dest).exists());
    }
}

fn decrypt_of_a_truncated_archive_writes_no_file(backend: Backend) {
    let sim = Sim::for_backend(backend);
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), pattern(50_000, 2)).unwrap();
    let good = work.path().join("good.obx");
    sim.backup("system", &src, &good);
    let pem = work.path().join("signing.pem");
    sim.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    let keyless = |archive: &std::path::Path| common::keyless_verify(&pem, archive);
    let ok = keyless(&good);
    assert!(ok.status.success(), "{}", common::stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("signature verified (key "));
    let a = fs::read(&good).unwrap();
    let bad = work.path().join("bad.obx");
    fs::write(&bad, &a[..a.len() - 100]).unwrap();
    let out_file = work.path().join("out.tar");
    let out = sim.run(&[
        "decrypt",
        bad.to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!out_file.exists());
    assert!(!work.path().join("out.tar.offbox-partial").exists());
}

on_both_backends!(
    every_tamper_case_fails_and_restores_nothing,
    decrypt_of_a_truncated_archive_writes_no_file,
);
