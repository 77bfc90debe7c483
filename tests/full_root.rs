//! The proof that a system backup restores a whole appliance: a minimal Debian 12 root made
//! by `debootstrap`, given a file capability, ACLs, user attributes, a 1 GiB sparse file, a
//! hard-link group, a FIFO and device nodes, is backed up through the test bed's SSH
//! target, restored onto a fresh directory and compared entry by entry (content hashes,
//! types, modes, owners, mtimes, link counts, device numbers, `getfattr`, `getfacl`,
//! `getcap`, sparse allocation). A program then runs inside the restored root, and GNU tar
//! lists the attributes from `offbox decrypt`.
//!
//! Opt-in, because it needs root, network to a Debian mirror and a few minutes the first
//! time: `OFFBOX_DEBOOTSTRAP=1 cargo test --test full_root -- --nocapture`. It installs
//! `debootstrap` itself when missing, and caches the downloaded packages as a tarball under
//! `target/debootstrap/`, so reruns take seconds. `OFFBOX_DEBOOTSTRAP_MIRROR` picks the
//! mirror (default http://deb.debian.org/debian). Without `OFFBOX_DEBOOTSTRAP=1` the test
//! says it was skipped and passes.

#[path = "common/attrs.rs"]
mod attrs;
mod common;
#[path = "common/targets.rs"]
mod tb;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use attrs::{du, getcap, getfacl, getfattr, sh, sparse_file};

const PACKAGES: &str = "iputils-ping,libcap2-bin";
const GIB: u64 = 1 << 30;

/// The packages of a minimal bookworm root, downloaded once into a tarball under target/.
fn cached_tarball(mirror: &str) -> PathBuf {
    let dir = common::repo().join("target/debootstrap");
    fs::create_dir_all(&dir).unwrap();
    let tarball = dir.join(format!(
        "bookworm-minbase-{}.tgz",
        PACKAGES.replace(',', "-")
    ));
    if !tarball.exists() {
        let scratch = tempfile::tempdir_in(&dir).unwrap();
        let t = Instant::now();
        let target = scratch.path().join("root");
        let args = [
            "--variant=minbase",
            &format!("--include={PACKAGES}"),
            &format!("--make-tarball={}", tarball.display()),
            "bookworm",
            target.to_str().unwrap(),
            mirror,
        ];
        sh(&dir, "debootstrap", &args);
        eprintln!("debootstrap: package tarball made in {:?}", t.elapsed());
    }
    tarball
}

/// `debootstrap` from the machine's package source, when missing.
fn ensure_debootstrap() {
    if Command::new("debootstrap")
        .arg("--version")
        .output()
        .is_ok()
    {
        return;
    }
    sh(Path::new("/"), "apt-get", &["update", "-qq"]);
    sh(
        Path::new("/"),
        "apt-get",
        &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "debootstrap",
        ],
    );
}

/// Unpacks the root and adds what an appliance has and a plain root lacks.
fn make_root(work: &Path, mirror: &str) -> PathBuf {
    let tarball = cached_tarball(mirror);
    let root = work.join("root");
    let t = Instant::now();
    let args = [
        "--variant=minbase",
        &format!("--include={PACKAGES}"),
        &format!("--unpack-tarball={}", tarball.display()),
        "bookworm",
        root.to_str().unwrap(),
        mirror,
    ];
    sh(work, "debootstrap", &args);
    eprintln!("debootstrap: root made in {:?}", t.elapsed());
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "debootstrap left a mount in the root"
    );
    let r = |p: &str| root.join(p).to_str().unwrap().to_string();
    // A file capability on a copy of ping.
    fs::copy(
        root.join("usr/bin/ping"),
        root.join("usr/local/bin/ping-copy"),
    )
    .unwrap();
    sh(
        &root,
        "setcap",
        &["cap_net_raw+ep", &r("usr/local/bin/ping-copy")],
    );
    // A vault directory with an access and a default ACL, and user attributes.
    fs::create_dir_all(root.join("var/lib/vault/records")).unwrap();
    fs::write(root.join("var/lib/vault/records/r1"), b"session record\n").unwrap();
    sh(
        &root,
        "setfacl",
        &["-m", "u:1001:rwx,g:adm:r-x", &r("var/lib/vault")],
    );
    sh(
        &root,
        "setfacl",
        &[
            "-d",
            "-m",
            "u:1001:rw-,g:adm:r--,o::---",
            &r("var/lib/vault"),
        ],
    );
    sh(
        &root,
        "setfattr",
        &[
            "-n",
            "user.appliance.role",
            "-v",
            "primary",
            &r("etc/hostname"),
        ],
    );
    sh(
        &root,
        "setfattr",
        &[
            "-n",
            "user.checksum",
            "-v",
            "0x00ff0a0d",
            &r("var/lib/vault"),
        ],
    );
    // A 1 GiB sparse file with data at both ends.
    sparse_file(
        &root.join("var/lib/disk.img"),
        GIB,
        &common::pattern(512 << 10, 11),
        &common::pattern(512 << 10, 12),
    );
    // A hard-link group of three names, a FIFO and device nodes.
    fs::create_dir_all(root.join("srv/links")).unwrap();
    fs::write(root.join("srv/links/a"), common::pattern(100_000, 13)).unwrap();
    fs::hard_link(root.join("srv/links/a"), root.join("srv/links/b")).unwrap();
    fs::hard_link(root.join("srv/links/a"), root.join("srv/c")).unwrap();
    sh(&root, "mkfifo", &["-m", "0620", &r("run/app.fifo")]);
    sh(
        &root,
        "mknod",
        &["-m", "0660", &r("srv/loop-dev"), "b", "7", "0"],
    );
    sh(
        &root,
        "mknod",
        &["-m", "0666", &r("srv/null-dev"), "c", "1", "3"],
    );
    root
}

/// One entry, as compared: type, mode, owner, mtime, size, link count, device number,
/// link target or content hash.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    mtime: i64,
    size: u64,
    nlink: u64,
    rdev: u64,
    content: String,
}

fn hash(path: &Path) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    data_encoding::HEXLOWER.encode(ctx.finish().as_ref())
}

/// Every entry under `root`, by relative path.
fn entries(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let t = m.file_type();
        let (kind, content) = if t.is_symlink() {
            ("symlink", fs::read_link(&p).unwrap().display().to_string())
        } else if t.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ("dir", String::new())
        } else if t.is_file() {
            ("file", hash(&p))
        } else if t.is_fifo() {
            ("fifo", String::new())
        } else if t.is_char_device() {
            ("char", String::new())
        } else if t.is_block_device() {
            ("block", String::new())
        } else {
            ("socket", String::new())
        };
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let e = Entry {
            kind,
            mode: m.mode(),
            owner: (m.uid(), m.gid()),
            mtime: m.mtime(),
            size: if t.is_dir() { 0 } else { m.len() },
            nlink: if t.is_dir() { 0 } else { m.nlink() },
            rdev: m.rdev(),
            content,
        };
        out.insert(rel, e);
    }
    out
}

/// Every difference between two trees, as lines.
fn differences(a: &Path, b: &Path) -> Vec<String> {
    let (ea, eb) = (entries(a), entries(b));
    let mut diff = Vec::new();
    for (path, x) in &ea {
        match eb.get(path) {
            None => diff.push(format!("{path}: missing from the restore")),
            Some(y) if x != y => diff.push(format!("{path}: {x:?} != {y:?}")),
            _ => {}
        }
    }
    for path in eb.keys().filter(|p| !ea.contains_key(*p)) {
        diff.push(format!("{path}: only in the restore"));
    }
    for (what, f) in [
        ("getfattr", getfattr as fn(&Path) -> String),
        ("getfacl", getfacl),
        ("getcap", getcap),
    ] {
        if f(a) != f(b) {
            diff.push(format!("{what} output differs"));
        }
    }
    let disk = "var/lib/disk.img";
    if du(&a.join(disk)) != du(&b.join(disk)) {
        diff.push(format!(
            "{disk}: allocation {:?} != {:?}",
            du(&a.join(disk)),
            du(&b.join(disk))
        ));
    }
    diff
}

#[test]
fn a_debian_root_restores_whole_through_a_real_target() {
    if std::env::var("OFFBOX_DEBOOTSTRAP").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set OFFBOX_DEBOOTSTRAP=1 to build a Debian root with debootstrap, back it \
             up through the test bed and compare the restore (root, network to a mirror)"
        );
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "OFFBOX_DEBOOTSTRAP=1 needs root"
    );
    ensure_debootstrap();
    let mirror = std::env::var("OFFBOX_DEBOOTSTRAP_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let work = tempfile::tempdir().unwrap();
    let root = make_root(work.path(), &mirror);

    let (sim, bed) = tb::setup();
    let t = Instant::now();
    let out = tb::backup_to(&sim, &root, "testbed-ssh");
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    eprintln!("backup through ssh in {:?}: {err}", t.elapsed());
    assert!(!err.contains("warning"), "the backup warned: {err}");
    let names = tb::list(&sim, "testbed-ssh");
    assert_eq!(names.len(), 1, "{names:?}");

    let dest = work.path().join("restored");
    let t = Instant::now();
    let out = sim.run(&[
        "restore",
        "--from",
        "testbed-ssh",
        &names[0],
        "--to",
        dest.to_str().unwrap(),
        "--keep-setid",
    ]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    eprintln!("restore from ssh in {:?}: {err}", t.elapsed());
    assert!(!err.contains("warning"), "the restore warned: {err}");
    let back = dest.join(root.strip_prefix("/").unwrap());

    let t = Instant::now();
    let diff = differences(&root, &back);
    eprintln!(
        "compared {} entries in {:?}",
        entries(&root).len(),
        t.elapsed()
    );
    assert!(
        diff.is_empty(),
        "{} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
    let (alloc, apparent) = du(&back.join("var/lib/disk.img"));
    assert!(
        alloc < 4096 && apparent == GIB >> 10,
        "{alloc} KiB allocated"
    );
    assert_eq!(fs::metadata(back.join("srv/c")).unwrap().nlink(), 3);

    // Programs run inside the restored root, and see the capability.
    sh(
        &back,
        "chroot",
        &[back.to_str().unwrap(), "/usr/bin/env", "true"],
    );
    let caps = sh(
        &back,
        "chroot",
        &[
            back.to_str().unwrap(),
            "/usr/sbin/getcap",
            "/usr/local/bin/ping-copy",
        ],
    );
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");

    tar_lists_the_attributes(&sim, &bed, &names[0]);
}

/// GNU tar lists the attributes of `offbox decrypt`'s payload of the archive `name`.
fn tar_lists_the_attributes(sim: &common::Sim, bed: &tb::Testbed, name: &str) {
    let archive = Path::new(bed.get("SSH_DATA_DIR")).join(name);
    let mut decrypt = sim
        .cmd(&["decrypt", archive.to_str().unwrap(), "--output", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let listing = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "-tvv",
            "-f",
            "-",
        ])
        .stdin(Stdio::from(decrypt.stdout.take().unwrap()))
        .output()
        .unwrap();
    assert!(decrypt.wait().unwrap().success());
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let text = String::from_utf8_lossy(&listing.stdout);
    for want in [
        "security.capability",
        "user.appliance.role",
        "system.posix_acl_default",
        "disk.img",
    ] {
        assert!(text.contains(want), "tar -tvv does not show {want}");
    }
    eprintln!("tar -tvv listed {} lines", text.lines().count());
}
