//! Restoring a tar payload through a staging directory.
//!
//! Entries are extracted into `.NAME.offbox-partial-RANDOM` beside the destination, a
//! directory created exclusively (never through a planted symlink) with mode 0700 and held
//! under a `flock` while in use. Only after the caller has authenticated the whole archive
//! does [`Staging::commit`] rename it to the destination, in one step. A staging directory
//! that is dropped uncommitted is deleted, and leftovers of killed runs (unlocked staging
//! directories of the same destination) are removed by the next restore, which reports
//! them. A failed restore therefore never leaves a tree that looks like a finished one.
//!
//! FIFOs and device nodes come back as such (device nodes only as root); setuid/setgid
//! bits of files are stripped unless [`UnpackOptions::keep_setuid`] is set. What the
//! restore did not reproduce exactly is listed in the [`ExtractReport`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::extract::extract_tree;
use crate::format::header::hex;
use crate::secret::random_bytes;

/// Why a restore destination cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination holds files already.
    #[error("the restore destination {0} exists and is not an empty directory; choose a new directory (offbox never overwrites a tree)")]
    DestNotEmpty(String),
    /// The staging directory could not be made or moved.
    #[error("cannot prepare or publish the restore at {path}: {err}; check free space and permissions there")]
    Staging {
        /// The path concerned.
        path: String,
        /// The error.
        err: io::Error,
    },
    /// Extraction failed (this includes authentication failures of the archive, and
    /// entries refused because their path leads outside the restore).
    #[error("extracting the archive failed: {0}")]
    Extract(#[source] io::Error),
}

/// Choices of a restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Keep the setuid and setgid bits of files (and device nodes). Off by default: the
    /// bits are stripped and the files listed in [`ExtractReport::stripped_setid`].
    /// Directories always keep their setgid bit, which grants no privilege.
    pub keep_setuid: bool,
}

/// What a restore did not reproduce exactly, or cleaned up, for the operator to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtractReport {
    /// Entries written.
    pub entries: u64,
    /// Files whose setuid/setgid bits were stripped (paths as stored in the archive).
    pub stripped_setid: Vec<String>,
    /// Device nodes not created, because that needs root (`CAP_MKNOD`); they are absent
    /// from the restored tree.
    pub devices_not_created: Vec<String>,
    /// Entries not restored, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Staging directories of earlier, killed restores that were removed at start.
    pub removed_leftovers: Vec<String>,
}

impl ExtractReport {
    /// One summarised line per kind of event, empty when the restore is exact.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.removed_leftovers.is_empty() {
            out.push(format!(
                "removed {} leftover staging director{} of an earlier, interrupted restore: {}",
                self.removed_leftovers.len(),
                if self.removed_leftovers.len() == 1 { "y" } else { "ies" },
                few(&self.removed_leftovers)
            ));
        }
        if !self.stripped_setid.is_empty() {
            out.push(format!(
                "setuid/setgid bits stripped from {} file(s): {}; restore with --keep-setid to keep them",
                self.stripped_setid.len(),
                few(&self.stripped_setid)
            ));
        }
        if !self.devices_not_created.is_empty() {
            out.push(format!(
                "{} device node(s) not created, because that needs root: {}; they are missing from the restored tree (restore as root to get them)",
                self.devices_not_created.len(),
                few(&self.devices_not_created)
            ));
        }
        if !self.skipped.is_empty() {
            let shown: Vec<String> = self
                .skipped
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            out.push(format!(
                "{} entr{} not restored: {}",
                self.skipped.len(),
                if self.skipped.len() == 1 { "y" } else { "ies" },
                few(&shown)
            ));
        }
        out
    }
}

/// The first few items of a list, and how many more there are.
fn few(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

/// The random part of a staging directory's name: 8 bytes in lowercase hex.
const RANDOM_HEX: usize = 16;

/// An extraction in progress; deleted on drop unless committed.
pub struct Staging {
    path: PathBuf,
    dest: PathBuf,
    opts: UnpackOptions,
    removed: Vec<String>,
    committed: bool,
    /// Held while the staging directory is in use, so that a concurrent restore to the same
    /// destination does not take it for a leftover.
    _lock: Flock<File>,
}

impl Staging {
    /// Checks the destination and creates a private staging directory beside it, with the
    /// default [`UnpackOptions`].
    pub fn create(dest: &Path) -> Result<Staging, UnpackError> {
        Self::create_with(dest, UnpackOptions::default())
    }

    /// Checks the destination and creates a private staging directory beside it; `opts`
    /// apply to [`Staging::extract`].
    pub fn create_with(dest: &Path, opts: UnpackOptions) -> Result<Staging, UnpackError> {
        let dest = std::path::absolute(dest).map_err(|err| UnpackError::Staging {
            path: dest.display().to_string(),
            err,
        })?;
        match fs::read_dir(&dest) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    return Err(UnpackError::DestNotEmpty(dest.display().to_string()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return Err(UnpackError::DestNotEmpty(dest.display().to_string())),
        }
        let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
        let staging_err = |err| UnpackError::Staging {
            path: parent.display().to_string(),
            err,
        };
        fs::create_dir_all(&parent).map_err(staging_err)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "restore".into());
        let prefix = format!(".{name}.offbox-partial-");
        let removed = remove_leftovers(&parent, &prefix);
        let path = parent.join(format!("{prefix}{}", hex(&random_bytes::<8>())));
        let lock = make_private_dir(&path).map_err(|err| UnpackError::Staging {
            path: path.display().to_string(),
            err,
        })?;
        Ok(Staging {
            path,
            dest,
            opts,
            removed,
            committed: false,
            _lock: lock,
        })
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The leftover staging directories of earlier runs that [`Staging::create`] removed.
    pub fn removed_leftovers(&self) -> &[String] {
        &self.removed
    }

    /// Extracts a tar stream into the staging directory and hands the reader back, so that
    /// the caller can read the archive to its authenticated end, with the report of what
    /// was stripped, skipped or cleaned up. An entry whose path leads outside the restore
    /// (a `..` component, an absolute path) fails the extraction with an error naming it.
    pub fn extract<R: Read>(&self, tar_stream: R) -> Result<(R, ExtractReport), UnpackError> {
        let mut report = ExtractReport {
            removed_leftovers: self.removed.clone(),
            ..ExtractReport::default()
        };
        let root = self.path.canonicalize().map_err(|err| UnpackError::Staging {
            path: self.path.display().to_string(),
            err,
        })?;
        let reader =
            extract_tree(&root, tar_stream, self.opts, &mut report).map_err(UnpackError::Extract)?;
        Ok((reader, report))
    }

    /// Moves the staging directory to the destination. Call only after authentication.
    pub fn commit(mut self) -> Result<PathBuf, UnpackError> {
        let err = |err| UnpackError::Staging {
            path: self.dest.display().to_string(),
            err,
        };
        if self.dest.exists() {
            fs::remove_dir(&self.dest).map_err(err)?;
        }
        fs::rename(&self.path, &self.dest).map_err(err)?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Creates `path` as a new directory with mode 0700 (failing if anything, a symlink
/// included, is already there), checks what was made, and locks it.
fn make_private_dir(path: &Path) -> io::Result<Flock<File>> {
    fs::DirBuilder::new().mode(0o700).create(path)?;
    // Opened without following a symlink, so the checks below are about what was made.
    let dir = File::from(nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?);
    let meta = dir.metadata()?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::other(
            "the new staging directory is not owned by this user",
        ));
    }
    // The umask may only have removed bits; make it exactly 0700.
    dir.set_permissions(fs::Permissions::from_mode(0o700))?;
    Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| io::Error::from(e))
}

/// Removes the staging directories of earlier restores to the same destination that were
/// killed: names `PREFIX` + 16 lowercase hex digits, real directories (not symlinks), not
/// locked by a restore still running. Returns the paths removed.
fn remove_leftovers(parent: &Path, prefix: &str) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(parent) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let ours = rest.len() == RANDOM_HEX
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ours || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let Ok(dir) = File::open(&path) else {
            continue;
        };
        // A running restore holds its lock: leave its directory alone.
        let Ok(lock) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if fs::remove_dir_all(&path).is_ok() {
            removed.push(path.display().to_string());
        }
        drop(lock);
    }
    removed
}

#[cfg(test)]
mod tests {
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
        nix::unistd::mkfifo(&src.join("p"), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap();
        let meter = crate::progress::Meter::default();
        let excludes = crate::payload::exclude::Excludes::new(&[]);
        let (tar, _) = crate::payload::pack::pack(&[src.clone()], &excludes, Vec::new(), &meter)
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
        assert!(w[0].contains("stripped from 2 file(s): usr/bin/su, usr/bin/wall"), "{w:?}");
        let keep = UnpackOptions { keep_setuid: true };
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
        assert!(w[0].contains("removed 1 leftover staging directory"), "{w:?}");
        assert!(w[0].contains("0123456789abcdef"), "{w:?}");
    }
}
