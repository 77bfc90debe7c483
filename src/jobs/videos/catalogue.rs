//! The local catalogue: the newest video restore point's manifest, kept in the state
//! directory so that a run compares the recordings with it without reading anything from
//! the target. It is a cache: the manifests on the target are the truth. A catalogue that
//! is missing, corrupt (its SHA-256 does not match), or names another archive than the
//! newest on the target is rebuilt from that archive's manifest.
//!
//! File: `<state_dir>/videos/<target>.catalogue`, written atomically (temporary file,
//! fsync, rename), mode 0600: `"offbox videos catalogue 1\n" || SHA-256(body) || body`,
//! the body being the postcard encoding of [`Catalogue`].

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::Chain;
use crate::payload::videos::Manifest;

const MAGIC: &[u8] = b"offbox videos catalogue 1\n";

/// What the catalogue holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Catalogue {
    /// The target's URL (no secrets), to refuse another target's catalogue.
    pub target: String,
    /// The archive the manifest is from: the newest restore point.
    pub archive_name: String,
    /// Its chain.
    pub chain: Chain,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Where the catalogue of target `name` lives.
pub(crate) fn path(state_dir: &Path, target_name: &str) -> PathBuf {
    state_dir.join("videos").join(format!(
        "{}.catalogue",
        crate::targets::name::sanitize(target_name)
    ))
}

/// Reads the catalogue: `Ok(None)` when there is none, `Err(why)` when it is corrupt. It is
/// decoded as it is read (no copy of the file in memory), and its checksum checked over
/// every byte before the result is used.
pub(crate) fn load(path: &Path) -> Result<Option<Catalogue>, String> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be read ({e})")),
    };
    let mut r = io::BufReader::with_capacity(1 << 20, f);
    let mut head = vec![0u8; MAGIC.len() + 32];
    if r.read_exact(&mut head).is_err() || !head.starts_with(MAGIC) {
        return Err("does not start like a catalogue".into());
    }
    let mut hr = HashingReader {
        inner: r,
        ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
    };
    // Room for the longest path or name.
    let mut scratch = vec![0u8; 64 * 1024];
    let decoded = postcard::from_io::<Catalogue, _>((&mut hr, &mut scratch[..]))
        .map(|(c, _)| c)
        .map_err(|e| format!("cannot be decoded ({e})"));
    let rest = io::copy(&mut hr, &mut io::sink()).map_err(|e| format!("cannot be read ({e})"))?;
    if hr.ctx.finish().as_ref() != &head[MAGIC.len()..] {
        return Err("its checksum does not match (the file is damaged)".into());
    }
    if rest > 0 {
        return Err("has bytes after its end".into());
    }
    decoded.map(Some)
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    ctx: aws_lc_rs::digest::Context,
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.ctx.update(&b[..n]);
        Ok(n)
    }
}

/// Writes the catalogue atomically.
pub(crate) fn save(path: &Path, c: &Catalogue) -> io::Result<()> {
    let dir = path.parent().expect("catalogue paths have a directory");
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("catalogue.tmp");
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // The body is encoded straight to the file (no copy of it in memory), hashed on the
    // way; the checksum in front of it is written last.
    let mut w = HashingWriter {
        inner: io::BufWriter::with_capacity(1 << 20, f),
        ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
    };
    w.inner.write_all(MAGIC)?;
    w.inner.write_all(&[0; 32])?;
    postcard::to_io(c, &mut w).map_err(io::Error::other)?;
    let sum = w.ctx.finish();
    let mut f = w.inner.into_inner().map_err(|e| e.into_error())?;
    f.seek(io::SeekFrom::Start(MAGIC.len() as u64))?;
    f.write_all(sum.as_ref())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Hashes what it writes.
struct HashingWriter<W> {
    inner: W,
    ctx: aws_lc_rs::digest::Context,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.ctx.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::videos::manifest::MANIFEST_FORMAT;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "dr-site");
        assert_eq!(load(&p), Ok(None));
        let c = Catalogue {
            target: "file:///t".into(),
            archive_name: "a.obx".into(),
            chain: Chain {
                base: [1; 16],
                parent: None,
                seq: 0,
                depends_on: vec![],
            },
            manifest: Manifest {
                format: MANIFEST_FORMAT,
                archive_id: [1; 16],
                archives: vec![],
                records: vec![],
            },
        };
        save(&p, &c).unwrap();
        assert_eq!(load(&p), Ok(Some(c)));
        let mut b = fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&p, &b).unwrap();
        assert_eq!(
            load(&p),
            Err("its checksum does not match (the file is damaged)".into())
        );
    }
}
