//! Edits of the config file's text that keep the operator's formatting: recording the
//! recovery public key after a ceremony. Only the one line changes; comments, order, mode and
//! owner are kept, and the result is parsed back before it replaces the file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::ConfigError;
use crate::keys::recovery::RecoveryPublicKey;

/// Records the recovery public key in the config file, replacing `old` when rotating.
/// Only this line changes; comments and the rest of the file are kept, and so are the file's
/// mode and owner. The result is parsed back before it replaces the file: a config that would
/// still name the old key (or none) is an error, never a silent success.
pub fn record_public_key(
    config: &Path,
    new: &RecoveryPublicKey,
    old: Option<&RecoveryPublicKey>,
) -> Result<(), ConfigError> {
    let io_err = |err| ConfigError::Update {
        path: config.display().to_string(),
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
        return Err(io_err(io::Error::other(format!(
                "the new recovery public key could not be recorded automatically; the share files were written, so set it by hand under [recovery]: {line}"
        ))));
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
    use crate::format::header::hex;
    use crate::keys::recovery::RecoverySecret;

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
