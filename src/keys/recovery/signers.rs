//! The appliance signing keys a recovery ceremony records in every share file, so that break
//! the glass on a bare machine can tell a genuine archive from a forged one with the shares
//! alone.
//!
//! A share file lists each key as `signing-key: <base64 of its DER SubjectPublicKeyInfo>`,
//! followed by `signing-keys-tag: <hex>`, where the tag is
//! `HMAC-SHA256(HKDF-SHA256(salt = "", ikm = recovery private key, info = "offbox v1 share
//! signing keys"), SPKI_1 || SPKI_2 || ...)`. Only the whole quorum can check the tag, and
//! only the ceremony that held the private key could make it: a custodian (or anyone who
//! steals fewer than M share files) cannot add a key of their own.

use aws_lc_rs::{constant_time, hmac};

use super::{RecoveryError, RecoverySecret};
use crate::format::header::hex;
use crate::format::schedule::hkdf32;
use crate::format::signature::PublicKey;

const INFO: &[u8] = b"offbox v1 share signing keys";
/// The line naming one signing key.
pub(crate) const KEY_LINE: &str = "signing-key:";
/// The line carrying the tag.
pub const TAG_LINE: &str = "signing-keys-tag:";

/// The tag over `keys`, under a key derived from the recovery private key.
pub fn tag(secret: &RecoverySecret, keys: &[PublicKey]) -> [u8; 32] {
    let k = hkdf32(b"", secret.expose(), &[INFO]);
    let key = hmac::Key::new(hmac::HMAC_SHA256, k.expose());
    let mut ctx = hmac::Context::with_key(&key);
    for pk in keys {
        ctx.update(&pk.spki_der());
    }
    ctx.sign().as_ref().try_into().expect("32 bytes")
}

/// The lines a share file carries for `keys`.
pub fn lines(keys: &[PublicKey], tag: &[u8; 32]) -> String {
    let mut out = String::new();
    for k in keys {
        out.push_str(&format!(
            "{KEY_LINE} {}\n",
            data_encoding::BASE64.encode(&k.spki_der())
        ));
    }
    if !keys.is_empty() {
        out.push_str(&format!("{TAG_LINE} {}\n", hex(tag)));
    }
    out
}

/// What a share file says about signing keys, as read (not yet checked).
#[derive(Default)]
pub struct Listed {
    /// The keys, in file order.
    pub keys: Vec<PublicKey>,
    /// The tag, when the file has one.
    pub tag: Option<[u8; 32]>,
}

impl Listed {
    /// Reads one `signing-key:` or `signing-keys-tag:` line; false when it is neither.
    pub(crate) fn read_line(&mut self, line: &str) -> Result<bool, &'static str> {
        if let Some(v) = line.strip_prefix(KEY_LINE) {
            let der = data_encoding::BASE64
                .decode(v.trim().as_bytes())
                .map_err(|_| "a signing-key line is not base64")?;
            let key = PublicKey::from_spki_der(&der)
                .map_err(|_| "a signing-key line is not a P-256 public key")?;
            self.keys.push(key);
            return Ok(true);
        }
        if let Some(v) = line.strip_prefix(TAG_LINE) {
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(v.trim().as_bytes())
                .map_err(|_| "the signing-keys-tag line is not hex")?;
            self.tag = Some(
                bytes
                    .try_into()
                    .map_err(|_| "the signing-keys-tag line is not 32 bytes")?,
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Checks that a listed set is complete: keys without a tag, or a tag without keys, is
    /// a damaged file.
    pub(crate) fn check_shape(&self) -> Result<(), &'static str> {
        match (self.keys.is_empty(), self.tag.is_some()) {
            (true, true) => Err("it has a signing-keys-tag line but no signing-key line"),
            (false, false) => Err("it has signing-key lines but no signing-keys-tag line"),
            _ => Ok(()),
        }
    }
}

/// The signing keys the shares vouch for, checked under the rebuilt recovery key. Shares that
/// list none (typed codes, files of older ceremonies) add nothing; a share whose list does
/// not match its tag is refused, naming it.
pub fn vouched<'a>(
    secret: &RecoverySecret,
    shares: impl IntoIterator<Item = (&'a str, &'a Listed)>,
) -> Result<Vec<PublicKey>, RecoveryError> {
    let mut out: Vec<PublicKey> = Vec::new();
    for (which, listed) in shares {
        let Some(t) = listed.tag else { continue };
        let expected = tag(secret, &listed.keys);
        if constant_time::verify_slices_are_equal(&expected, &t).is_err() {
            return Err(RecoveryError::BadShare {
                which: which.to_string(),
                detail: "its signing-key lines were changed after the ceremony (their tag does not match the recovery key); use the custodian's original file".into(),
            });
        }
        for k in &listed.keys {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    Ok(out)
}
