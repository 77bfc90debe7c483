//! The Debian packages install, work, remove and purge on a clean Debian 12: `bash
//! packaging/build-deb.sh` builds them; lintian finds no error; `dpkg -i` into a minimal
//! bookworm root made by `debootstrap`, then `apt-get -f install` in it pulls the
//! dependencies through the root's Debian mirror. There: `offbox --version`, `man -w`, the
//! user and group, the modes of the config and state directories, the units (which
//! `systemd-analyze verify` accepts where they are installed), the udev rules, sysusers.d
//! and tmpfiles.d, the completions, the boot self-check enabled and the timers not, and
//! the conffile that does nothing until filled in. `dpkg -r` removes the files and keeps
//! the conffile; `dpkg -P` removes the conffile and the state. The rescue kit package
//! installs beside it and links libc only.
//!
//! Opt-in, like tests/full_root.rs, because it needs root, a release build and network to a
//! Debian mirror: `OFFBOX_DEBOOTSTRAP=1 cargo test --test package -- --nocapture`. It
//! installs `debootstrap` itself when missing and caches the root's packages as a tarball
//! under `target/debootstrap/`. `OFFBOX_DEBOOTSTRAP_MIRROR` picks the mirror (default
//! http://deb.debian.org/debian). Without `OFFBOX_DEBOOTSTRAP=1` the test says it was
//! skipped and passes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// What the root has beyond minbase: man-db, for `man -w`.
const PACKAGES: &str = "man-db";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd args`; its output, whatever the exit status.
fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Runs `cmd args`, which must succeed; its standard output.
fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Debian root with /proc mounted for dpkg and apt; unmounted when dropped.
struct Root {
    path: PathBuf,
}

impl Root {
    fn new(path: PathBuf) -> Root {
        let proc_dir = path.join("proc");
        ok("mount", &["-t", "proc", "proc", proc_dir.to_str().unwrap()]);
        Root { path }
    }

    fn s(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Runs a command inside the root.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![self.s()];
        all.extend_from_slice(args);
        run("chroot", &all)
    }

    /// Runs a command inside the root, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "in the root: {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn p(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }

    fn exists(&self, path: &str) -> bool {
        fs::symlink_metadata(self.p(path)).is_ok()
    }

    /// Mode bits, user name and group name of a path in the root.
    fn owner_mode(&self, path: &str) -> (u32, String, String) {
        let m = fs::metadata(self.p(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let name = |db: &str, id: u32| {
            self.ok(&["getent", db, &id.to_string()])
                .split(':')
                .next()
                .unwrap()
                .to_string()
        };
        (
            m.permissions().mode() & 0o7777,
            name("passwd", m.uid()),
            name("group", m.gid()),
        )
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", self.path.join("proc").to_str().unwrap()]);
    }
}

/// Whether `cmd --version` runs: on a fresh machine a tool is simply absent, which is a
/// failed spawn rather than a failed status.
fn present(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `debootstrap` from the machine's package source, when missing.
fn ensure_tools() {
    if present("debootstrap") {
        return;
    }
    ok("apt-get", &["update", "-qq"]);
    ok(
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

/// A clean minbase bookworm root; its packages are downloaded once into a tarball.
fn make_root(work: &Path, mirror: &str) -> Root {
    let dir = repo().join("target/debootstrap");
    fs::create_dir_all(&dir).unwrap();
    let tarball = dir.join(format!("bookworm-minbase-{PACKAGES}.tgz"));
    let include = format!("--include={PACKAGES}");
    if !tarball.exists() {
        let scratch = tempfile::tempdir_in(&dir).unwrap();
        let t = Instant::now();
        let make = format!("--make-tarball={}", tarball.display());
        let target = scratch.path().join("root");
        ok(
            "debootstrap",
            &[
                "--variant=minbase",
                &include,
                &make,
                "bookworm",
                target.to_str().unwrap(),
                mirror,
            ],
        );
        eprintln!("debootstrap: package tarball made in {:?}", t.elapsed());
    }
    let root = work.join("root");
    let t = Instant::now();
    let unpack = format!("--unpack-tarball={}", tarball.display());
    ok(
        "debootstrap",
        &[
            "--variant=minbase",
            &include,
            &unpack,
            "bookworm",
            root.to_str().unwrap(),
            mirror,
        ],
    );
    eprintln!("debootstrap: root made in {:?}", t.elapsed());
    // apt inside the root resolves the mirror's name as the host does.
    fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    Root::new(root)
}

/// Builds both packages; their paths (full, rescue).
fn build() -> (PathBuf, PathBuf) {
    let t = Instant::now();
    let script = repo().join("packaging/build-deb.sh");
    ok("bash", &[script.to_str().unwrap(), "--no-lintian"]);
    eprintln!("packages built in {:?}", t.elapsed());
    let version = env!("CARGO_PKG_VERSION");
    // The target directory: the one this test binary's offbox was built in.
    let target = Path::new(env!("CARGO_BIN_EXE_offbox"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let find = |prefix: &str| {
        fs::read_dir(target.join("debian"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&format!("{prefix}_{version}-")) && n.ends_with(".deb")
            })
            .unwrap_or_else(|| panic!("no {prefix} package in target/debian"))
    };
    (find("offbox"), find("offbox-rescue"))
}

/// The paths a package holds, from `dpkg-deb -c`.
fn contents(deb: &Path) -> Vec<String> {
    ok("dpkg-deb", &["-c", deb.to_str().unwrap()])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

/// lintian's errors on a package (none expected); its whole report is printed.
fn lintian(deb: &Path) {
    if !present("lintian") {
        ok(
            "apt-get",
            &["install", "-y", "-qq", "--no-install-recommends", "lintian"],
        );
    }
    let out = run("lintian", &[deb.to_str().unwrap()]);
    let report = text(&out);
    eprintln!("lintian {}:\n{report}", deb.display());
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
}

#[test]
fn the_package_installs_removes_and_purges_on_a_clean_debian() {
    if std::env::var("OFFBOX_DEBOOTSTRAP").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set OFFBOX_DEBOOTSTRAP=1 to build the .deb packages and install them into \
             a Debian root made with debootstrap (root, network to a Debian mirror)"
        );
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "OFFBOX_DEBOOTSTRAP=1 needs root"
    );
    ensure_tools();
    let (deb, rescue) = build();

    let files = contents(&deb);
    for want in [
        "/usr/bin/offbox",
        "/lib/systemd/system/offbox-run.service",
        "/lib/systemd/system/offbox-run.timer",
        "/lib/systemd/system/offbox-watch.service",
        "/lib/systemd/system/offbox-watch.timer",
        "/lib/systemd/system/offbox-selfcheck.service",
        "/lib/udev/rules.d/60-offbox.rules",
        "/usr/lib/sysusers.d/offbox.conf",
        "/usr/lib/tmpfiles.d/offbox.conf",
        "/etc/offbox/offbox.toml",
        "/usr/share/man/man1/offbox.1.gz",
        "/usr/share/man/man1/offbox-run.1.gz",
        "/usr/share/man/man1/offbox-keys-init.1.gz",
        "/usr/share/bash-completion/completions/offbox",
        "/usr/share/zsh/vendor-completions/_offbox",
        "/usr/share/fish/vendor_completions.d/offbox.fish",
        "/usr/share/doc/offbox/copyright",
        "/usr/share/doc/offbox/changelog.Debian.gz",
        "/usr/share/doc/offbox/operator-guide.md",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not in {files:?}");
    }
    let rescue_files = contents(&rescue);
    for want in [
        "/usr/bin/offbox-rescue",
        "/usr/share/man/man1/offbox-rescue.1.gz",
        "/usr/share/doc/offbox-rescue/copyright",
    ] {
        assert!(
            rescue_files.iter().any(|f| f == want),
            "{want} not in {rescue_files:?}"
        );
    }
    lintian(&deb);
    lintian(&rescue);

    let mirror = std::env::var("OFFBOX_DEBOOTSTRAP_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let work = tempfile::tempdir().unwrap();
    let root = make_root(work.path(), &mirror);
    fs::copy(&deb, root.p("/tmp/offbox.deb")).unwrap();
    fs::copy(&rescue, root.p("/tmp/offbox-rescue.deb")).unwrap();

    // dpkg -i stops at the missing dependencies; apt-get -f install fetches them and
    // finishes the configuration.
    let t = Instant::now();
    let first = root.run(&["dpkg", "-i", "/tmp/offbox.deb"]);
    eprintln!("dpkg -i: {}", text(&first).trim_end());
    root.ok(&["apt-get", "update", "-qq"]);
    let fixed = root.ok(&["apt-get", "-f", "install", "-y", "--no-install-recommends"]);
    let summary = fixed.lines().find(|l| l.contains("newly installed"));
    eprintln!(
        "apt-get -f install: {} ({:?})",
        summary.unwrap_or("?"),
        t.elapsed()
    );
    let status = root.ok(&["dpkg-query", "-W", "-f=${Status}", "offbox"]);
    assert_eq!(status, "install ok installed");

    let version = root.ok(&["offbox", "--version"]);
    assert_eq!(
        version.trim(),
        format!("offbox {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        root.ok(&["man", "-w", "offbox"]).trim(),
        "/usr/share/man/man1/offbox.1.gz"
    );
    assert!(root
        .ok(&["man", "-w", "offbox-selfcheck"])
        .contains("offbox-selfcheck.1"));
    let user = root.ok(&["getent", "passwd", "offbox"]);
    eprintln!(
        "in the root: {} {}{}",
        version.trim(),
        user,
        root.ok(&[
            "ls",
            "-ld",
            "/etc/offbox",
            "/etc/offbox/offbox.toml",
            "/var/lib/offbox"
        ])
    );
    assert!(
        user.contains(":/var/lib/offbox:/usr/sbin/nologin"),
        "{user}"
    );
    root.ok(&["getent", "group", "offbox"]);
    assert_eq!(
        root.owner_mode("/etc/offbox"),
        (0o750, "root".into(), "offbox".into())
    );
    assert_eq!(
        root.owner_mode("/etc/offbox/offbox.toml"),
        (0o640, "root".into(), "offbox".into())
    );
    assert_eq!(
        root.owner_mode("/var/lib/offbox"),
        (0o700, "offbox".into(), "offbox".into())
    );
    for unit in [
        "offbox-run.service",
        "offbox-run.timer",
        "offbox-watch.service",
        "offbox-watch.timer",
        "offbox-selfcheck.service",
    ] {
        assert!(
            root.exists(&format!("/lib/systemd/system/{unit}")),
            "{unit}"
        );
    }
    assert!(root.exists("/lib/udev/rules.d/60-offbox.rules"));
    assert!(root.exists("/usr/share/bash-completion/completions/offbox"));
    // The boot self-check is enabled; the timers wait for a filled-in config.
    assert!(root.exists("/etc/systemd/system/multi-user.target.wants/offbox-selfcheck.service"));
    assert!(!root.exists("/etc/systemd/system/timers.target.wants/offbox-run.timer"));
    assert!(!root.exists("/etc/systemd/system/timers.target.wants/offbox-watch.timer"));
    // Where they are installed, the units verify clean (binary and man pages present).
    let verify = root.run(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/offbox-run.service",
        "/lib/systemd/system/offbox-run.timer",
        "/lib/systemd/system/offbox-watch.service",
        "/lib/systemd/system/offbox-watch.timer",
        "/lib/systemd/system/offbox-selfcheck.service",
    ]);
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "{}",
        text(&verify)
    );
    eprintln!("systemd-analyze verify in the root: clean");
    // The shipped config does nothing: every command stops at the first missing key.
    let unfilled = root.run(&["offbox", "status"]);
    assert_eq!(unfilled.status.code(), Some(1), "{}", text(&unfilled));
    assert!(
        text(&unfilled).contains("missing field"),
        "{}",
        text(&unfilled)
    );

    // The rescue kit: libc only, beside the full package.
    root.ok(&["dpkg", "-i", "/tmp/offbox-rescue.deb"]);
    let rescue_version = root.ok(&["offbox-rescue", "--version"]);
    assert!(rescue_version.starts_with("offbox "), "{rescue_version}");
    let libs = root.ok(&["ldd", "/usr/bin/offbox-rescue"]);
    for line in libs.lines().filter(|l| l.contains("=>")) {
        assert!(
            line.contains("libc.so") || line.contains("libm.so") || line.contains("libgcc_s"),
            "the rescue kit links {line}"
        );
    }
    assert!(root
        .ok(&["man", "-w", "offbox-rescue"])
        .contains("offbox-rescue.1"));
    root.ok(&["dpkg", "-P", "offbox-rescue"]);
    assert!(!root.exists("/usr/bin/offbox-rescue"));

    // Remove: the files go, the conffile stays.
    fs::write(root.p("/var/lib/offbox/state.json"), "{}").unwrap();
    root.ok(&["dpkg", "-r", "offbox"]);
    let status = root.ok(&["dpkg-query", "-W", "-f=${Status}", "offbox"]);
    assert_eq!(status, "deinstall ok config-files");
    for gone in [
        "/usr/bin/offbox",
        "/lib/systemd/system/offbox-run.service",
        "/lib/systemd/system/offbox-selfcheck.service",
        "/lib/udev/rules.d/60-offbox.rules",
        "/usr/lib/sysusers.d/offbox.conf",
        "/usr/share/man/man1/offbox.1.gz",
    ] {
        assert!(!root.exists(gone), "{gone} is left after dpkg -r");
    }
    assert!(root.exists("/etc/offbox/offbox.toml"));
    assert!(root.exists("/var/lib/offbox/state.json"));

    // Purge: the conffile, its directory and the state go.
    root.ok(&["dpkg", "-P", "offbox"]);
    eprintln!("dpkg -r kept the conffile and the state; dpkg -P removed both");
    let status = root.run(&["dpkg-query", "-W", "-f=${Status}", "offbox"]);
    assert!(!text(&status).contains("config-files"), "{}", text(&status));
    assert!(
        !root.exists("/etc/offbox"),
        "/etc/offbox is left after dpkg -P"
    );
    assert!(
        !root.exists("/var/lib/offbox"),
        "/var/lib/offbox is left after dpkg -P"
    );
    assert!(!root.exists("/etc/systemd/system/multi-user.target.wants/offbox-selfcheck.service"));
}
