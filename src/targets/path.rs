//! `file:///path`: a directory on a network filesystem that the operator mounted by other
//! means (fstab, a systemd mount). The guard accepts it only on NFS, CIFS/SMB2 or sshfs
//! whose server is not this appliance.
//!
//! Uploads: `O_EXCL` temporary file, `fsync`, then `link(2)` to the final name (fails if
//! it exists, never overwrites) and unlink of the temporary. Where the filesystem has no
//! hard links (CIFS without unix extensions, some FUSE), a `rename` after an existence
//! check is used instead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{net, temp_name, Entry, PathUrl, Retry, Target, TargetError, TargetSpec, Upload};
use crate::guard::mount::{self, DirFacts, Mount};
use crate::guard::SelfIdentity;

/// The read buffer of an archive opened here: enough for the header's few small reads. A
/// reader's segment reads (1 MiB) are larger and bypass it; a buffer of a segment's size
/// would instead copy every byte once more.
const READ_BUFFER: usize = 64 << 10;

/// A mounted directory.
pub(crate) struct PathTarget {
    dir: PathBuf,
    url: String,
}

impl PathTarget {
    /// Guards the directory ([`check_dir`]), then opens it.
    pub fn connect(
        spec: &TargetSpec,
        url: &PathUrl,
        me: &SelfIdentity,
    ) -> Result<PathTarget, TargetError> {
        let target = spec.url.to_string();
        check_dir(me, &target, Path::new(&url.path))?;
        Ok(PathTarget {
            dir: PathBuf::from(&url.path),
            url: target,
        })
    }

    /// A target on any directory, with no guard: for unit tests of the upload logic only.
    #[cfg(test)]
    fn unguarded(dir: &Path) -> PathTarget {
        PathTarget {
            dir: dir.to_path_buf(),
            url: format!("file://{}", dir.display()),
        }
    }

    fn err(&self, op: &str, e: &io::Error) -> TargetError {
        TargetError::from_io(&self.url, op, e)
    }
}

/// Checks a `file://` directory: it exists, it is on a network filesystem, and the mount's
/// server is not this appliance ([`mount::check_mount`], then the server is resolved and
/// checked through [`net::resolve`]). Returns the mount it is on.
pub(crate) fn check_dir(me: &SelfIdentity, target: &str, dir: &Path) -> Result<Mount, TargetError> {
    let canon = std::fs::canonicalize(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TargetError::NoDirectory {
            target: target.to_string(),
            dir: dir.display().to_string(),
            create: "mount the network share there (a directory on it that the backup user can write), or create that directory on the mounted share".into(),
        },
        _ => TargetError::from_io(target, &format!("opening the directory {}", dir.display()), &e),
    })?;
    let st = nix::sys::statfs::statfs(&canon).map_err(|e| TargetError::Io {
        target: target.to_string(),
        op: "statfs".into(),
        detail: e.to_string(),
        retry: Retry::Permanent,
    })?;
    // f_type is an i64 on x86_64 glibc and an i32 on other targets.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.filesystem_type().0 as i64;
    let facts = DirFacts { canon, magic };
    let (m, host) = mount::check_mount(me, target, &facts)?;
    net::resolve(me, target, &host, 0).map_err(|e| match e {
        TargetError::Refused(r) => TargetError::Refused(mount::served_by_self(r, &facts.canon, &m)),
        other => other,
    })?;
    Ok(m)
}

struct PathUpload {
    file: Option<File>,
    dir: PathBuf,
    temp: String,
    url: String,
}

impl Write for PathUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Upload for PathUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        let file = self.file.take().expect("open until commit");
        let r = self.publish(file, name);
        if r.is_err() {
            let _ = fs::remove_file(self.dir.join(&self.temp));
        }
        r
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl PathUpload {
    fn publish(&self, file: File, name: &str) -> Result<(), TargetError> {
        let e = |op: &str, err: &io::Error| TargetError::from_io(&self.url, op, err);
        file.sync_all()
            .map_err(|err| e("syncing the upload", &err))?;
        drop(file);
        let tmp = self.dir.join(&self.temp);
        let fin = self.dir.join(name);
        match fs::hard_link(&tmp, &fin) {
            Ok(()) => {
                fs::remove_file(&tmp).map_err(|err| e("removing the temporary", &err))?;
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(TargetError::Exists {
                    target: self.url.clone(),
                    name: name.into(),
                })
            }
            Err(_) => {
                if fin.symlink_metadata().is_ok() {
                    return Err(TargetError::Exists {
                        target: self.url.clone(),
                        name: name.into(),
                    });
                }
                fs::rename(&tmp, &fin).map_err(|err| e("publishing the archive", &err))?;
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for PathUpload {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(self.dir.join(&self.temp));
        }
    }
}

impl Target for PathTarget {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(&temp))
            .map_err(|e| self.err("creating the upload file", &e))?;
        Ok(Box::new(PathUpload {
            file: Some(file),
            dir: self.dir.clone(),
            temp,
            url: self.url.clone(),
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| self.err("listing", &e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| self.err("listing", &e))?;
            let md = e.metadata().ok();
            if md.as_ref().is_some_and(|m| !m.is_file()) {
                continue;
            }
            out.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                size: md.map(|m| m.len()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.url, name)?;
        let f = File::open(self.dir.join(name)).map_err(|e| self.err(name, &e))?;
        Ok(Box::new(io::BufReader::with_capacity(READ_BUFFER, f)))
    }

    fn open_at(&mut self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, TargetError> {
        use std::io::Seek;
        super::check_plain(&self.url, name)?;
        let mut f = File::open(self.dir.join(name)).map_err(|e| self.err(name, &e))?;
        f.seek(io::SeekFrom::Start(offset))
            .map_err(|e| self.err(name, &e))?;
        Ok(Box::new(io::BufReader::with_capacity(READ_BUFFER, f)))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.url, name)?;
        fs::remove_file(self.dir.join(name)).map_err(|e| self.err(&format!("deleting {name}"), &e))
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| TargetError::Io {
            target: self.url.clone(),
            op: "statvfs".into(),
            detail: e.to_string(),
            retry: Retry::Temporary,
        })?;
        Ok(Some(st.blocks_available() * st.fragment_size()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_commit_abort_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let mut t = PathTarget::unguarded(d.path());
        let mut u = t.begin("app").unwrap();
        u.write_all(b"hello").unwrap();
        u.commit("a.obx").unwrap();
        assert_eq!(fs::read(d.path().join("a.obx")).unwrap(), b"hello");
        // An aborted upload leaves nothing.
        let mut u = t.begin("app").unwrap();
        u.write_all(b"partial").unwrap();
        drop(u);
        let names: Vec<String> = t.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["a.obx"]);
        // No overwrite.
        let mut u = t.begin("app").unwrap();
        u.write_all(b"other").unwrap();
        assert!(matches!(u.commit("a.obx"), Err(TargetError::Exists { .. })));
        assert_eq!(fs::read(d.path().join("a.obx")).unwrap(), b"hello");
        // Temporaries carry the appliance; cleanup (jobs::target) decides by that name.
        let temp = t.begin("app").unwrap().temp_name().to_string();
        assert!(super::super::is_temp_of(&temp, "app"), "{temp}");
        assert_eq!(
            t.list().unwrap().len(),
            1,
            "the dropped upload left nothing"
        );
        let mut s = String::new();
        t.open("a.obx").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(t.open("../x").is_err());
        assert!(t.free_space().unwrap().unwrap() > 0);
    }

    #[test]
    fn local_dirs_are_refused() {
        let me = SelfIdentity::load();
        for d in ["/", "/tmp", "/proc", "/dev/shm"] {
            let e = check_dir(&me, "file://x", Path::new(d)).unwrap_err();
            assert!(e.to_string().contains("local filesystem"), "{d}: {e}");
        }
    }
}
