//! Extended attributes through a real backup and restore: `user.*` attributes with binary
//! values, an access and a default ACL, a file capability (`setcap`) and a symlink's
//! `trusted.*` attribute come back exactly (`getfattr`, `getfacl`, `getcap` agree), GNU tar
//! lists and restores them from `offbox decrypt`, `--skip-xattrs` leaves a namespace out,
//! and an unprivileged restore says in one warning what it could not set.

#[path = "common/attrs.rs"]
mod attrs;
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use attrs::{getcap, getfacl, getfattr, sh};

/// A tree with every kind of attribute; needs root (trusted.*, setcap).
fn make_tree(src: &Path) {
    fs::create_dir_all(src.join("var/vault")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(src.join("var/vault/record"), b"audit record\n").unwrap();
    fs::write(src.join("app.conf"), b"k=v\n").unwrap();
    fs::copy("/usr/bin/true", src.join("usr/bin/ping")).unwrap();
    std::os::unix::fs::symlink("app.conf", src.join("conf-link")).unwrap();
    let here = |p: &str| src.join(p).to_str().unwrap().to_string();
    sh(
        src,
        "setfattr",
        &[
            "-n",
            "user.app.id",
            "-v",
            "0x000a0d3d25ff",
            &here("app.conf"),
        ],
    );
    sh(
        src,
        "setfattr",
        &["-n", "user.note", "-v", "plain text", &here("var/vault")],
    );
    sh(
        src,
        "setfattr",
        &[
            "-h",
            "-n",
            "trusted.origin",
            "-v",
            "image-7",
            &here("conf-link"),
        ],
    );
    sh(
        src,
        "setfacl",
        &["-m", "u:1234:rwx,g:55:r-x,m::rwx", &here("var/vault")],
    );
    sh(
        src,
        "setfacl",
        &["-d", "-m", "u:1234:rw-,g::r--,o::---", &here("var/vault")],
    );
    sh(
        src,
        "setfacl",
        &["-m", "u:10:r--", &here("var/vault/record")],
    );
    sh(src, "setcap", &["cap_net_raw+ep", &here("usr/bin/ping")]);
}

fn restore(sim: &common::Sim, archive: &Path, dest: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "restore",
        archive.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = sim.run(&args);
    let err = common::stderr(&out);
    assert!(out.status.success(), "restore failed: {err}");
    err
}

fn assert_same_attributes(a: &Path, b: &Path) {
    assert_eq!(getfattr(a), getfattr(b), "getfattr differs");
    assert_eq!(getfacl(a), getfacl(b), "getfacl differs");
    assert_eq!(getcap(a), getcap(b), "getcap differs");
}

fn root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root (trusted.* attributes, setcap)");
    }
    root
}

#[test]
fn attributes_acls_and_capabilities_restore_and_gnu_tar_reads_them() {
    if !root() {
        return;
    }
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    assert!(getcap(&src).contains("cap_net_raw=ep"));
    let archive = work.path().join("a.obx");
    sim.backup("system", &src, &archive);

    let dest = work.path().join("out");
    let err = restore(&sim, &archive, &dest, &[]);
    assert!(!err.contains("warning"), "{err}");
    let rel = src.strip_prefix("/").unwrap();
    assert_same_attributes(&src, &dest.join(rel));

    // Standard tar: the listing shows the attributes, and GNU tar restores them all.
    let out = sim
        .cmd(&["decrypt", archive.to_str().unwrap(), "--output", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let payload = work.path().join("payload.tar");
    fs::write(&payload, &out.stdout).unwrap();
    let p = payload.to_str().unwrap();
    // GNU tar shows (and restores) only user.* unless told --xattrs-include.
    let listing = sh(work.path(), "tar", &["--xattrs", "--acls", "-tvvf", p]);
    assert!(listing.contains("  x: 6 user.app.id"), "{listing}");
    assert!(listing.contains("user.note"), "{listing}");
    assert!(
        listing.contains("drwxrwxr-x+"),
        "the ACL is not flagged:\n{listing}"
    );
    let all = ["--xattrs", "--xattrs-include=*", "--acls", "-tvvf", p];
    let listing = sh(work.path(), "tar", &all);
    for name in [
        "security.capability",
        "trusted.origin",
        "system.posix_acl_default",
    ] {
        assert!(
            listing.contains(name),
            "tar -tvv does not list {name}:\n{listing}"
        );
    }
    let by_tar = work.path().join("by-tar");
    fs::create_dir(&by_tar).unwrap();
    sh(
        work.path(),
        "tar",
        &[
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--numeric-owner",
            "-xpf",
            p,
            "-C",
            by_tar.to_str().unwrap(),
        ],
    );
    assert_same_attributes(&src, &by_tar.join(rel));
    // With --acls alone (no --xattrs-include), GNU tar still restores the ACLs from the
    // SCHILY.acl.* records.
    let acls_only = work.path().join("acls-only");
    fs::create_dir(&acls_only).unwrap();
    sh(
        work.path(),
        "tar",
        &["--acls", "-xpf", p, "-C", acls_only.to_str().unwrap()],
    );
    assert_eq!(getfacl(&src), getfacl(&acls_only.join(rel)));
}

#[test]
fn skip_xattrs_leaves_namespaces_out_without_a_warning() {
    if !root() {
        return;
    }
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let archive = work.path().join("a.obx");
    sim.backup("system", &src, &archive);
    let dest = work.path().join("out");
    let args = [
        "--skip-xattrs",
        "security",
        "--skip-xattrs",
        "trusted.origin",
    ];
    let err = restore(&sim, &archive, &dest, &args);
    assert!(!err.contains("warning"), "{err}");
    let back = dest.join(src.strip_prefix("/").unwrap());
    assert_eq!(getcap(&back), "");
    let dump = getfattr(&back);
    assert!(!dump.contains("trusted.origin"), "{dump}");
    assert!(dump.contains("user.app.id=0x000a0d3d25ff"), "{dump}");
    assert_eq!(getfacl(&src), getfacl(&back));
}

/// A break-the-glass restore by an unprivileged user (`recover` needs no token, only
/// shares): `trusted.*` and the capability cannot be set, and the restore says so in one
/// warning line, restoring everything else.
#[test]
fn unprivileged_restore_warns_once_and_restores_the_rest() {
    if !root() {
        return;
    }
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let pub_dir = work.path().join("public");
    fs::create_dir(&pub_dir).unwrap();
    fs::set_permissions(&pub_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let archive = pub_dir.join("a.obx");
    sim.backup("system", &src, &archive);
    let mut shares: Vec<PathBuf> = Vec::new();
    for i in 1..=3 {
        let s = pub_dir.join(format!("share-{i}.txt"));
        fs::copy(sim.share(i), &s).unwrap();
        std::os::unix::fs::chown(&s, Some(65534), Some(65534)).unwrap();
        fs::set_permissions(&s, fs::Permissions::from_mode(0o600)).unwrap();
        shares.push(s);
    }
    std::os::unix::fs::chown(&archive, Some(65534), Some(65534)).unwrap();
    let dest = pub_dir.join("out");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::bin())
        .arg("recover")
        .arg(&archive)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&pub_dir);
    for s in &shares {
        cmd.arg("--share").arg(s);
    }
    cmd.arg("--to").arg(&dest);
    let out = cmd.output().unwrap();
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("extended attribute"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    let w = warnings[0];
    assert!(
        w.starts_with("offbox: warning: 2 extended attribute(s) not restored: "),
        "{w}"
    );
    assert!(
        w.contains("security.capability: not permitted for this user"),
        "{w}"
    );
    assert!(
        w.contains("trusted.origin: not permitted for this user"),
        "{w}"
    );
    assert!(w.contains("restore as root"), "{w}");
    let back = dest.join(src.strip_prefix("/").unwrap());
    let dump = getfattr(&back);
    assert!(dump.contains("user.app.id=0x000a0d3d25ff"), "{dump}");
    assert!(dump.contains("system.posix_acl_default"), "{dump}");
    assert_eq!(getcap(&back), "");
}
