//! Unit tests of the staging directory and of extraction: special files, setuid/setgid
//! bits, refused paths, error texts, leftovers.

use super::*;
use std::os::unix::fs::FileTypeExt;

/// A tar stream of `(path, type, mode, data)` entries; the path goes into the header
/// as raw bytes, so that `..` and absolute paths (which tar::Builder refuses) can be
/// written too.
fn tar_of(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data) in entries {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
        h.set_gid(u64::from(nix::unistd::getegid().as_raw()));
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if *kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn extract(
    dest: &Path,
    opts: UnpackOptions,
    tar: &[u8],
) -> Result<(PathBuf, ExtractReport), UnpackError> {
    let st = Staging::create_with(dest, opts)?;
    let (_, report) = st.extract(tar)?;
    Ok((st.commit()?, report))
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn refuses_non_empty_destination_and_cleans_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("f"), b"x").unwrap();
    assert!(matches!(
        Staging::create(&dest),
        Err(UnpackError::DestNotEmpty(_))
    ));
    let dest2 = dir.path().join("new");
    let st = Staging::create(&dest2).unwrap();
    let p = st.path().to_path_buf();
    assert!(p.exists());
    assert_eq!(mode(&p), 0o700);
    drop(st);
    assert!(!p.exists());
    assert!(!dest2.exists());
}

#[test]
fn staging_is_never_made_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    fs::create_dir(&target).unwrap();
    let before = mode(&target);
    let planted = dir.path().join(".out.offbox-partial-planted");
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    let err = make_private_dir(&planted).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(mode(&target), before, "the symlink's target was changed");
    assert!(fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::read_dir(&target).unwrap().next().is_none());
}

#[test]
fn fifo_restores_as_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[("run/app/pipe", tar::EntryType::Fifo, 0o640, b"")]);
    let (out, report) = extract(&dir.path().join("out"), UnpackOptions::default(), &tar).unwrap();
    let meta = fs::symlink_metadata(out.join("run/app/pipe")).unwrap();
    assert!(meta.file_type().is_fifo(), "{:?}", meta.file_type());
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.mtime(), 1_600_000_000);
    assert_eq!(report.entries, 1);
    assert!(report.warnings().is_empty(), "{:?}", report.warnings());
}

#[test]
fn packed_fifo_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    nix::unistd::mkfifo(
        &src.join("p"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let meter = crate::progress::Meter::default();
    let excludes = crate::payload::exclude::Excludes::new(&[]);
    let (tar, _) =
        crate::payload::pack::pack(std::slice::from_ref(&src), &excludes, Vec::new(), &meter)
            .unwrap();
    let (out, _) = extract(&dir.path().join("out"), UnpackOptions::default(), &tar).unwrap();
    let back = out.join(src.strip_prefix("/").unwrap()).join("p");
    assert!(fs::symlink_metadata(back).unwrap().file_type().is_fifo());
}

#[test]
fn char_device_is_a_device_node_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[("dev/null", tar::EntryType::Char, 0o666, b"")]);
    let (out, report) = extract(&dir.path().join("out"), UnpackOptions::default(), &tar).unwrap();
    let node = out.join("dev/null");
    match fs::symlink_metadata(&node) {
        Ok(meta) => {
            // Root with CAP_MKNOD: the real thing.
            assert!(meta.file_type().is_char_device(), "{:?}", meta.file_type());
            assert_eq!(meta.rdev(), nix::sys::stat::makedev(1, 3));
            assert_eq!(meta.mode() & 0o7777, 0o666);
            assert!(report.devices_not_created.is_empty());
        }
        Err(_) => {
            // Not allowed to make devices: reported, and no file pretends to be one.
            assert_eq!(report.devices_not_created, vec!["dev/null".to_string()]);
            assert!(report.warnings()[0].contains("dev/null"));
        }
    }
    if nix::unistd::geteuid().is_root() && !report.devices_not_created.is_empty() {
        eprintln!("note: running as root without CAP_MKNOD; device creation not exercised");
    }
}

#[test]
fn setid_bits_are_stripped_by_default_and_kept_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        ("usr/bin/su", tar::EntryType::Regular, 0o4755, b"su"),
        ("usr/bin/wall", tar::EntryType::Regular, 0o2755, b"wall"),
        ("usr/bin/ls", tar::EntryType::Regular, 0o755, b"ls"),
        ("var/mail", tar::EntryType::Directory, 0o2775, b""),
    ]);
    let (out, report) = extract(&dir.path().join("a"), UnpackOptions::default(), &tar).unwrap();
    assert_eq!(mode(&out.join("usr/bin/su")), 0o755);
    assert_eq!(mode(&out.join("usr/bin/wall")), 0o755);
    assert_eq!(mode(&out.join("var/mail")), 0o2775);
    assert_eq!(report.stripped_setid, vec!["usr/bin/su", "usr/bin/wall"]);
    let w = report.warnings();
    assert!(
        w[0].contains("stripped from 2 file(s): usr/bin/su, usr/bin/wall"),
        "{w:?}"
    );
    let keep = UnpackOptions {
        keep_setuid: true,
        ..UnpackOptions::default()
    };
    let (out, report) = extract(&dir.path().join("b"), keep, &tar).unwrap();
    assert_eq!(mode(&out.join("usr/bin/su")), 0o4755);
    assert_eq!(mode(&out.join("usr/bin/wall")), 0o2755);
    assert!(report.stripped_setid.is_empty());
}

#[test]
fn dotdot_entry_fails_naming_it_and_writes_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    for evil in ["../evil", "a/../../evil"] {
        let tar = tar_of(&[
            ("a/ok", tar::EntryType::Regular, 0o644, b"fine"),
            (evil, tar::EntryType::Regular, 0o644, b"pwned"),
        ]);
        let err = extract(&dest, UnpackOptions::default(), &tar).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("`{evil}`")), "{text}");
        assert!(text.contains("`..`"), "{text}");
        assert!(!dir.path().join("evil").exists());
        // Nothing is published and no staging directory stays behind.
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}

#[test]
fn absolute_entry_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("abs-evil");
    let abs = target.to_str().unwrap().to_string();
    let tar = tar_of(&[(&abs, tar::EntryType::Regular, 0o644, b"pwned")]);
    let err = extract(&dir.path().join("out"), UnpackOptions::default(), &tar).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("`{abs}`")), "{text}");
    assert!(text.contains("absolute"), "{text}");
    assert!(!target.exists());
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn unpack_errors_name_the_entry_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // `etc` is a file, so `etc/h` cannot be made beneath it.
    let tar = tar_of(&[
        ("etc", tar::EntryType::Regular, 0o644, b"file"),
        ("etc/h", tar::EntryType::Regular, 0o644, b"h"),
    ]);
    let err = extract(&dir.path().join("out"), UnpackOptions::default(), &tar).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("failed to unpack `etc/h`"), "{text}");
    assert!(
        text.contains("(os error 20)") || text.contains("(os error 17)"),
        "the cause is missing: {text}"
    );
    assert!(!text.contains(".offbox-partial-"), "{text}");
}

/// A reader error met inside an entry (an archive authentication failure, in real use)
/// stays reachable in the error's source chain.
#[test]
fn reader_errors_keep_their_source() {
    #[derive(Debug)]
    struct Marker;
    impl std::fmt::Display for Marker {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("segment 3 failed authentication")
        }
    }
    impl std::error::Error for Marker {}
    let tar = tar_of(&[("big", tar::EntryType::Regular, 0o644, &[7u8; 8192])]);
    let failing = (&tar[..2048]).chain(FailingRead(Some(Marker)));
    let dir = tempfile::tempdir().unwrap();
    let st = Staging::create(&dir.path().join("out")).unwrap();
    let Err(UnpackError::Extract(err)) = st.extract(failing) else {
        panic!("expected an extraction error");
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut found = false;
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            found |= io.get_ref().is_some_and(|r| r.is::<Marker>());
        }
        found |= e.is::<Marker>();
        cur = e.source();
    }
    assert!(found, "{err:?}");

    struct FailingRead(Option<Marker>);
    impl Read for FailingRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other(self.0.take().expect("read once")))
        }
    }
}

#[test]
fn leftovers_of_killed_runs_are_removed_and_reported_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let stale = dir.path().join(".out.offbox-partial-0123456789abcdef");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("half"), b"x").unwrap();
    let keep = [
        ".out.offbox-partial-notours",
        ".out.offbox-partial-0123456789abcdef0",
        ".outer.offbox-partial-0123456789abcdef",
    ];
    for k in keep {
        fs::create_dir(dir.path().join(k)).unwrap();
    }
    // A symlink with a staging name is not followed into its target.
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("precious"), b"p").unwrap();
    let link = dir.path().join(".out.offbox-partial-fedcba9876543210");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();

    let running = Staging::create(&dest).unwrap();
    assert_eq!(running.removed_leftovers(), [stale.display().to_string()]);
    assert!(!stale.exists());
    for k in keep {
        assert!(dir.path().join(k).exists(), "{k} was removed");
    }
    assert!(elsewhere.join("precious").exists());
    // A second restore to the same destination leaves the running one's directory.
    let second = Staging::create(&dest).unwrap();
    assert!(second.removed_leftovers().is_empty());
    assert!(running.path().exists());
    let (_, report) = running.extract(&tar_of(&[])[..]).unwrap();
    let w = report.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("removed 1 leftover staging directory"),
        "{w:?}"
    );
    assert!(w[0].contains("0123456789abcdef"), "{w:?}");
}
