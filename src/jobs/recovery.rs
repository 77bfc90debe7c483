//! Recovery key ceremonies and break-the-glass: splitting the recovery key into custodian
//! share files, checking a quorum, reading share files, and rebuilding the key from shares.
//! Shares typed at a terminal and the audit line of every opening are the CLI's
//! (`cli::prompt`, `cli::audit`): this module does no terminal or syslog I/O.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::header::hex;
use crate::format::signature::PublicKey;
use crate::keys::recovery::share::{self, Share};
use crate::keys::recovery::signers;
use crate::keys::recovery::{RecoveryError, RecoverySecret};
use crate::keys::KeyError;

use super::JobError;

/// What a ceremony produced (no secret in it).
#[derive(Debug, serde::Serialize)]
pub struct CeremonyResult {
    /// The public key, as written to the config.
    pub public_key: String,
    /// Its key id (hex).
    pub key_id: String,
    /// Share files, in index order.
    pub share_files: Vec<PathBuf>,
    /// Shares needed.
    pub threshold: u8,
    /// Number of M-subsets that were rebuilt and checked before finishing.
    pub subsets_checked: usize,
    /// Ids of the appliance signing keys recorded in every share (and in the public
    /// `signing-keys.pem` beside them).
    pub signing_keys: Vec<String>,
}

/// The public file a ceremony writes beside the shares: the appliance signing keys the shares
/// vouch for, as PEM, for backup servers (`verify --keyless --public-key`) and for shares
/// typed at a prompt, which carry no key lines.
pub(crate) const SIGNING_KEYS_FILE: &str = "signing-keys.pem";

/// Largest share file read: a share with its signing-key lines is about a kilobyte.
const MAX_SHARE_FILE: u64 = 64 * 1024;

/// Generates a recovery key in memory, splits it into `count` share files in `out_dir`,
/// re-reads them, checks that several `threshold`-subsets rebuild the key, and returns the
/// public key. The private key is never written anywhere but in the shares. Every share
/// records `signing_keys`, the appliance keys whose archives break the glass will trust.
pub fn ceremony(
    out_dir: &Path,
    count: u32,
    threshold: u32,
    signing_keys: &[PublicKey],
) -> Result<CeremonyResult, JobError> {
    let (count, threshold) = share::check_parameters(count, threshold).map_err(KeyError::from)?;
    let io_err = |what: String| move |err| JobError::Io { what, err };
    if out_dir.exists()
        && fs::read_dir(out_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(JobError::refused(
            format!("writing shares to {}", out_dir.display()),
            super::error::Policy::DirectoryNotEmpty,
            "the directory is not empty; give a new directory so that no share is overwritten",
        ));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out_dir)
        .map_err(io_err(format!("creating {}", out_dir.display())))?;
    let secret = RecoverySecret::generate();
    let public = secret.public();
    let shares = share::split(&secret, count, threshold, signing_keys);
    let mut files = Vec::new();
    for s in &shares {
        let path = out_dir.join(format!("share-{}-of-{}.txt", s.index, count));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(format!("creating {}", path.display())))?;
        f.write_all(s.to_file_text().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io_err(format!("writing {}", path.display())))?;
        files.push(path);
    }
    drop(shares);
    let pem: String = signing_keys.iter().map(PublicKey::to_pem).collect();
    let pem_path = out_dir.join(SIGNING_KEYS_FILE);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&pem_path)
        .and_then(|mut f| f.write_all(pem.as_bytes()).and_then(|_| f.sync_all()))
        .map_err(io_err(format!("writing {}", pem_path.display())))?;
    // Check from the files as written, so that a bad write is caught now, not at an emergency.
    let subsets = subsets(count, threshold);
    for subset in &subsets {
        let picked = subset
            .iter()
            .map(|&i| read_share_file(&files[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let rebuilt = share::combine(&picked).map_err(KeyError::from)?;
        let vouched = vouched_signers(&rebuilt, &picked)?;
        if rebuilt.public() != public
            || rebuilt.expose() != secret.expose()
            || vouched != signing_keys
        {
            return Err(KeyError::from(RecoveryError::Mismatch {
                key_id: hex(&public.key_id()),
            })
            .into());
        }
    }
    Ok(CeremonyResult {
        public_key: public.encode(),
        key_id: hex(&public.key_id()),
        share_files: files,
        threshold,
        subsets_checked: subsets.len(),
        signing_keys: signing_keys.iter().map(|k| hex(&k.key_id())).collect(),
    })
}

/// The subsets checked by a ceremony: the first M, the last M, every rotation of a window of
/// M, and a few random ones; each is a list of 0-based indexes.
fn subsets(count: u8, threshold: u8) -> Vec<Vec<usize>> {
    let (n, m) = (count as usize, threshold as usize);
    let mut out: Vec<Vec<usize>> = (0..n)
        .map(|s| (0..m).map(|k| (s + k) % n).collect())
        .collect();
    for _ in 0..4 {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let r = u32::from_le_bytes(crate::secret::random_bytes::<4>()) as usize % (i + 1);
            idx.swap(i, r);
        }
        idx.truncate(m);
        out.push(idx);
    }
    for s in out.iter_mut() {
        s.sort_unstable();
    }
    out.sort();
    out.dedup();
    out
}

/// Reads one share file (at most 64 KiB: `--share /dev/zero` is refused, not read forever).
pub fn read_share_file(path: &Path) -> Result<(String, Share), JobError> {
    use std::io::Read;
    let name = path.display().to_string();
    let io_err = |err| JobError::Io {
        what: format!("reading share file {name}"),
        err,
    };
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    fs::File::open(path)
        .and_then(|f| f.take(MAX_SHARE_FILE + 1).read_to_end(&mut raw))
        .map_err(io_err)?;
    if raw.len() as u64 > MAX_SHARE_FILE {
        return Err(KeyError::from(RecoveryError::BadShare {
            which: name,
            detail: format!("it is larger than {MAX_SHARE_FILE} bytes, so it is not a share file"),
        })
        .into());
    }
    let text = zeroize::Zeroizing::new(String::from_utf8(raw.to_vec()).map_err(|_| {
        KeyError::from(RecoveryError::BadShare {
            which: name.clone(),
            detail: "it is not text".into(),
        })
    })?);
    let s = Share::parse(&text, &name).map_err(KeyError::from)?;
    Ok((name, s))
}

/// Rebuilds the recovery key from shares.
pub fn rebuild(shares: &[(String, Share)]) -> Result<RecoverySecret, JobError> {
    Ok(share::combine(shares).map_err(KeyError::from)?)
}

/// The appliance signing keys the given shares vouch for, checked under the rebuilt key.
pub(crate) fn vouched_signers(
    secret: &RecoverySecret,
    shares: &[(String, Share)],
) -> Result<Vec<PublicKey>, JobError> {
    Ok(
        signers::vouched(secret, shares.iter().map(|(w, s)| (w.as_str(), &s.signers)))
            .map_err(KeyError::from)?,
    )
}

/// "1,3,5": the indexes of the shares used.
pub(crate) fn share_indexes(shares: &[(String, Share)]) -> String {
    let mut idx: Vec<u8> = shares.iter().map(|(_, s)| s.index).collect();
    idx.sort_unstable();
    idx.dedup();
    idx.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_cover_every_share() {
        let s = subsets(5, 3);
        for i in 0..5 {
            assert!(s.iter().any(|x| x.contains(&i)));
        }
        assert!(s.iter().all(|x| x.len() == 3));
    }
}
