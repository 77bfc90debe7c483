//! Recovery key ceremonies and break-the-glass: splitting the recovery key into custodian
//! share files, checking a quorum, reading shares from files or a prompt, and the audit line
//! every opening leaves.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::header::hex;
use crate::format::signature::PublicKey;
use crate::keys::recovery::share::{self, Share};
use crate::keys::recovery::signers;
use crate::keys::recovery::{RecoveryError, RecoveryPublicKey, RecoverySecret};
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
pub const SIGNING_KEYS_FILE: &str = "signing-keys.pem";

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
        return Err(JobError::Io {
            what: format!("writing shares to {}", out_dir.display()),
            err: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the directory is not empty; give a new directory so that no share is overwritten",
            ),
        });
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

/// Reads shares typed by custodians, one per line, from standard input; echo is turned off
/// when it is a terminal. Stops when as many distinct shares as the first share's threshold
/// were given (a share typed twice does not count twice), or at end of input.
pub fn prompt_shares() -> Result<Vec<(String, Share)>, JobError> {
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    let _echo = if tty { EchoOff::new() } else { None };
    let mut shares: Vec<(String, Share)> = Vec::new();
    let mut lines = stdin.lock();
    let distinct = |shares: &[(String, Share)]| {
        let mut idx: Vec<u8> = shares.iter().map(|(_, s)| s.index).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.len()
    };
    let mut typed = 0;
    loop {
        let needed = shares.first().map(|(_, s)| s.threshold as usize);
        let have = distinct(&shares);
        if needed.is_some_and(|n| have >= n) {
            break;
        }
        typed += 1;
        if tty {
            let of = needed.map(|n| format!(" of {n}")).unwrap_or_default();
            eprint!(
                "custodian {}{of}: type your share code and press Enter (input is hidden): ",
                have + 1
            );
        }
        let mut line = zeroize::Zeroizing::new(String::new());
        let n = lines.read_line(&mut line).map_err(|err| JobError::Io {
            what: "reading a share from standard input".into(),
            err,
        })?;
        if tty {
            eprintln!();
        }
        if n == 0 {
            break;
        }
        if line.trim().is_empty() {
            typed -= 1;
            continue;
        }
        let which = format!("#{typed} (typed)");
        let s = Share::parse(&line, &which).map_err(KeyError::from)?;
        if tty && shares.iter().any(|(_, p)| p.index == s.index) {
            eprintln!("share {} was given already; it counts once", s.index);
        }
        shares.push((which, s));
    }
    Ok(shares)
}

/// Turns terminal echo off for its lifetime.
struct EchoOff {
    saved: nix::sys::termios::Termios,
}

impl EchoOff {
    fn new() -> Option<Self> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut t = saved.clone();
        t.local_flags.remove(LocalFlags::ECHO);
        t.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &t).ok()?;
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Rebuilds the recovery key from shares.
pub fn rebuild(shares: &[(String, Share)]) -> Result<RecoverySecret, JobError> {
    Ok(share::combine(shares).map_err(KeyError::from)?)
}

/// The appliance signing keys the given shares vouch for, checked under the rebuilt key.
pub fn vouched_signers(
    secret: &RecoverySecret,
    shares: &[(String, Share)],
) -> Result<Vec<PublicKey>, JobError> {
    Ok(
        signers::vouched(secret, shares.iter().map(|(w, s)| (w.as_str(), &s.signers)))
            .map_err(KeyError::from)?,
    )
}

/// "1,3,5": the indexes of the shares used.
pub fn share_indexes(shares: &[(String, Share)]) -> String {
    let mut idx: Vec<u8> = shares.iter().map(|(_, s)| s.index).collect();
    idx.sort_unstable();
    idx.dedup();
    idx.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// Writes an audit line to stderr and, when a syslog socket exists, to syslog (facility
/// authpriv, severity notice).
pub fn audit(message: &str) {
    eprintln!("offbox: AUDIT: {message}");
    let line = format!("<85>offbox[{}]: AUDIT: {message}", std::process::id());
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = sock.send_to(line.as_bytes(), "/dev/log");
    }
}

/// Records the recovery public key in the config file, replacing `old` when rotating.
/// Only this line changes; comments and the rest of the file are kept, and so are the file's
/// mode and owner. The result is parsed back before it replaces the file: a config that would
/// still name the old key (or none) is an error, never a silent success.
pub fn record_public_key(
    config: &Path,
    new: &RecoveryPublicKey,
    old: Option<&RecoveryPublicKey>,
) -> Result<(), JobError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io_err = |err| JobError::Io {
        what: format!("updating {}", config.display()),
        err,
    };
    let text = fs::read_to_string(config).map_err(io_err)?;
    let meta = fs::metadata(config).map_err(io_err)?;
    let line = format!("public_key = \"{}\"", new.encode());
    let updated = if let Some(old) = old {
        // The key may have been pasted in upper case (parsing accepts it).
        let needle = old.encode().to_ascii_lowercase();
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with("public_key")
                    && l.to_ascii_lowercase().contains(&needle)
                {
                    line.clone()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    } else if let Some(pos) = text
        .lines()
        .position(|l| l.split('#').next().unwrap_or("").trim() == "[recovery]")
    {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.insert(pos + 1, line.clone());
        lines.join("\n") + "\n"
    } else {
        let sep = if text.ends_with('\n') || text.is_empty() {
            ""
        } else {
            "\n"
        };
        format!("{text}{sep}\n[recovery]\n{line}\n")
    };
    let recorded = toml::from_str::<toml::Table>(&updated)
        .ok()
        .and_then(|t| {
            t.get("recovery")?
                .get("public_key")?
                .as_str()
                .map(str::to_string)
        })
        .and_then(|s| RecoveryPublicKey::parse(&s).ok());
    if recorded.as_ref() != Some(new) {
        return Err(JobError::Io {
            what: format!("updating {}", config.display()),
            err: io::Error::other(format!(
                "the new recovery public key could not be recorded automatically; the share files were written, so set it by hand under [recovery]: {line}"
            )),
        });
    }
    let tmp = config.with_extension("toml.offbox-tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    // Keep the owner (when allowed) and the mode of the file being replaced.
    let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
    let written = f
        .set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
        .and_then(|_| f.write_all(updated.as_bytes()))
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::rename(&tmp, config));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(())
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

    #[test]
    fn public_key_is_added_and_rotated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("offbox.toml");
        fs::write(&cfg, "# keep me\n[keys]\nbackend = \"pkcs11\"\n").unwrap();
        let a = RecoverySecret::generate().public();
        let b = RecoverySecret::generate().public();
        record_public_key(&cfg, &a, None).unwrap();
        let t = fs::read_to_string(&cfg).unwrap();
        assert_eq!(
            t,
            format!(
                "# keep me\n[keys]\nbackend = \"pkcs11\"\n\n[recovery]\npublic_key = \"{}\"\n",
                a.encode()
            )
        );
        record_public_key(&cfg, &b, Some(&a)).unwrap();
        let t = fs::read_to_string(&cfg).unwrap();
        assert!(t.contains(&b.encode()) && !t.contains(&a.encode()) && t.starts_with("# keep me"));
    }

    #[test]
    fn public_key_update_keeps_mode_and_refuses_what_it_cannot_record() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("offbox.toml");
        let a = RecoverySecret::generate().public();
        let b = RecoverySecret::generate().public();
        // A key pasted in upper case, a section header with a comment, a private mode.
        let upper = a.encode().replace(&hex(&a.0), &hex(&a.0).to_uppercase());
        fs::write(
            &cfg,
            format!("[recovery] # offline key\npublic_key = \"{upper}\"\n"),
        )
        .unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o640)).unwrap();
        record_public_key(&cfg, &b, Some(&a)).unwrap();
        assert_eq!(
            fs::read_to_string(&cfg).unwrap(),
            format!(
                "[recovery] # offline key\npublic_key = \"{}\"\n",
                b.encode()
            )
        );
        let mode = fs::metadata(&cfg).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);

        // Without a key yet, under a commented header.
        fs::write(
            &cfg,
            "[recovery] # offline key\nallow_without_recovery = false\n",
        )
        .unwrap();
        record_public_key(&cfg, &a, None).unwrap();
        assert_eq!(
            fs::read_to_string(&cfg).unwrap(),
            format!(
                "[recovery] # offline key\npublic_key = \"{}\"\nallow_without_recovery = false\n",
                a.encode()
            )
        );

        // A rotation whose old key is not in the file: an error, the file untouched.
        let c = RecoverySecret::generate().public();
        let before = fs::read_to_string(&cfg).unwrap();
        let e = record_public_key(&cfg, &c, Some(&b)).unwrap_err();
        assert!(
            e.to_string()
                .contains("could not be recorded automatically"),
            "{e}"
        );
        assert_eq!(fs::read_to_string(&cfg).unwrap(), before);
        // An inline recovery table cannot take a [recovery] section: an error too.
        fs::write(&cfg, "recovery = { allow_without_recovery = false }\n").unwrap();
        assert!(record_public_key(&cfg, &a, None).is_err());
        assert!(!dir.path().join("offbox.toml.offbox-tmp").exists());
    }
}
