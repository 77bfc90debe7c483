//! Round trips of extended attributes through `pack` and a restore: user attributes with
//! binary values, POSIX ACLs (access and default), a file capability, a symlink's trusted
//! attribute; the skip option; and the one summarised warning when attributes cannot be
//! set.

use super::*;
use crate::payload::unpack::{ExtractReport, Staging, UnpackOptions};
use std::path::PathBuf;
use std::process::Command;

fn pack_and_restore(src: &Path, dest: &Path, opts: UnpackOptions) -> (PathBuf, ExtractReport) {
    let meter = crate::progress::Meter::default();
    let excludes = crate::payload::exclude::Excludes::new(&[]);
    let (tar, stats) =
        crate::payload::pack::pack(&[src.to_path_buf()], &excludes, Vec::new(), &meter).unwrap();
    assert!(stats.notices.is_empty(), "{:?}", stats.notices);
    let st = Staging::create_with(dest, opts).unwrap();
    let (_, report) = st.extract(&tar[..]).unwrap();
    let out = st.commit().unwrap();
    (out.join(src.strip_prefix("/").unwrap()), report)
}

fn get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX];
    rustix::fs::lgetxattr(p, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

fn run(cmd: &str, args: &[&str]) -> bool {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("note: {cmd} not runnable ({e}); run tests/deps.sh");
            false
        }
    }
}

/// A tree with attributes of every kind this user may set; returns whether root-only ones
/// (trusted.*, the capability) were set.
fn make_tree(src: &Path) -> bool {
    std::fs::create_dir_all(src.join("vault")).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    std::fs::write(src.join("ping"), b"\x7fELF not really").unwrap();
    rustix::fs::setxattr(
        src.join("f"),
        "user.bin",
        &[0, 1, b'=', 255],
        XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(src.join("vault"), "user.app", b"v", XattrFlags::empty()).unwrap();
    let v = src.join("vault");
    let v = v.to_str().unwrap();
    assert!(run("setfacl", &["-m", "u:1234:rwx,g:55:r-x", v]));
    assert!(run("setfacl", &["-d", "-m", "u:1234:rwx,o::---", v]));
    let root = nix::unistd::geteuid().is_root();
    if root {
        std::os::unix::fs::symlink("f", src.join("link")).unwrap();
        rustix::fs::lsetxattr(src.join("link"), "trusted.t", b"sym", XattrFlags::empty()).unwrap();
        assert!(run(
            "setcap",
            &["cap_net_raw+ep", src.join("ping").to_str().unwrap()]
        ));
    }
    root
}

#[test]
fn every_namespace_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let root = make_tree(&src);
    let (back, report) = pack_and_restore(&src, &dir.path().join("out"), UnpackOptions::default());
    assert!(report.warnings().is_empty(), "{:?}", report.warnings());
    let mut names = vec![
        ("f", "user.bin"),
        ("vault", "user.app"),
        ("vault", "system.posix_acl_access"),
        ("vault", "system.posix_acl_default"),
    ];
    if root {
        names.push(("link", "trusted.t"));
        names.push(("ping", "security.capability"));
    }
    for (file, name) in names {
        let want = get(&src.join(file), name);
        assert!(want.is_some(), "{file} {name} not set on the source");
        assert_eq!(get(&back.join(file), name), want, "{file} {name}");
    }
    // The ACL's mask shows in the group bits, as on the source.
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode();
    assert_eq!(mode(&back.join("vault")), mode(&src.join("vault")));
    assert_eq!(std::fs::read(back.join("f")).unwrap(), b"data");
}

#[test]
fn skipped_namespaces_are_left_out_silently() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let root = make_tree(&src);
    let opts = UnpackOptions {
        skip_xattrs: vec!["security".into(), "user.*".into()],
        ..UnpackOptions::default()
    };
    let (back, report) = pack_and_restore(&src, &dir.path().join("out"), opts);
    assert!(report.warnings().is_empty(), "{:?}", report.warnings());
    assert_eq!(get(&back.join("f"), "user.bin"), None);
    assert!(get(&back.join("vault"), "system.posix_acl_access").is_some());
    assert_eq!(report.xattrs.skipped, if root { 3 } else { 2 });
    if root {
        assert_eq!(get(&back.join("ping"), "security.capability"), None);
        assert!(get(&back.join("link"), "trusted.t").is_some());
    }
}

#[test]
fn skip_matches_namespaces_and_names() {
    let skip = vec!["security".to_string(), "user.a".to_string()];
    assert!(skipped(b"security.selinux", &skip));
    assert!(skipped(b"security", &skip));
    assert!(!skipped(b"securityx.y", &skip));
    assert!(skipped(b"user.a", &skip));
    assert!(skipped(b"user.a.b", &skip));
    assert!(!skipped(b"user.ab", &skip));
    assert!(!skipped(b"trusted.x", &[String::new(), "*".into()]));
}

/// Attributes that cannot be set (here `user.*` on a symlink, which Linux never allows)
/// give one warning naming the first few, never an error.
#[test]
fn unrestorable_attributes_give_one_summarised_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..8 {
        let mut pax = crate::payload::pax::Records::default();
        pax.add_xattr(b"user.a", b"1");
        pax.add_xattr(b"user.b", b"2");
        let name = format!("l{i}");
        pax.write(&mut b, Path::new(&name)).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        b.append_link(&mut h, &name, "target").unwrap();
    }
    let tar = b.into_inner().unwrap();
    let st = Staging::create(&dir.path().join("out")).unwrap();
    let (_, report) = st.extract(&tar[..]).unwrap();
    assert_eq!(report.entries, 8);
    let w = report.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("16 extended attribute(s) not restored: l0 (user.a: "),
        "{w:?}"
    );
    assert!(w[0].contains(" and 11 more; "), "{w:?}");
    assert!(w[0].contains("--skip-xattrs"), "{w:?}");
}
