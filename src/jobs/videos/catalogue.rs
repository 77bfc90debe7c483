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
use std::io::{self, Write};
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

/// Reads the catalogue: `Ok(None)` when there is none, `Err(why)` when it is corrupt.
pub(crate) fn load(path: &Path) -> Result<Option<Catalogue>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be read ({e})")),
    };
    let body = bytes
        .strip_prefix(MAGIC)
        .filter(|b| b.len() >= 32)
        .ok_or("does not start like a catalogue")?;
    let (sum, body) = body.split_at(32);
    if aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref() != sum {
        return Err("its checksum does not match (the file is damaged)".into());
    }
    postcard::from_bytes(body)
        .map(Some)
        .map_err(|e| format!("cannot be decoded ({e})"))
}

/// Writes the catalogue atomically.
pub(crate) fn save(path: &Path, c: &Catalogue) -> io::Result<()> {
    let dir = path.parent().expect("catalogue paths have a directory");
    fs::create_dir_all(dir)?;
    let body = postcard::to_stdvec(c).map_err(io::Error::other)?;
    let tmp = path.with_extension("catalogue.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref())?;
    f.write_all(&body)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
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
