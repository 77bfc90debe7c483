//! Trusting archives: an archive's contents are released, and `verify` succeeds, only when
//! its signature verifies under a **trusted** signing key. The trusted keys are this
//! appliance's own signing keys (every version its HSM or TPM still holds), the keys the
//! operator names (`--public-key FILE`, repeatable), and, for break the glass, the keys the
//! recovery ceremony recorded in the custodians' share files. An unsigned archive, or one
//! signed by any other key, is refused: whoever knows one data key, or the recovery public
//! key, can build an archive that every slot opens, but cannot sign it.
//!
//! The only way around the check is [`Trust::accept_forged`], set by the loud CLI option
//! `--accept-unverified-may-be-forged`; the caller audits every use.

use std::io::Read;

use crate::format::header::hex;
use crate::format::signature::{PublicKey, SignatureError};
use crate::format::trailer::{message_v3, TrailerV3};
use crate::format::{Header, VERSION_CHAIN};
use crate::stream::{signed_message, DecryptReader, Framer};

use super::open::read_head;
use super::JobError;

/// Reads every public key of a PEM file (several `BEGIN PUBLIC KEY` blocks allowed, as in
/// the ceremony's `signing-keys.pem`) or one DER.
pub fn load_public_keys(path: &std::path::Path) -> Result<Vec<PublicKey>, JobError> {
    let bytes = std::fs::read(path).map_err(|err| JobError::Io {
        what: format!("reading public key {}", path.display()),
        err,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let blocks: Vec<&str> = text
        .split_inclusive("-----END PUBLIC KEY-----")
        .filter(|b| b.contains("-----BEGIN PUBLIC KEY-----"))
        .collect();
    if blocks.is_empty() {
        return Ok(vec![PublicKey::from_pem_or_der(&bytes)?]);
    }
    blocks
        .into_iter()
        .map(|b| Ok(PublicKey::from_pem_or_der(b.as_bytes())?))
        .collect()
}

/// One trusted signing key and where its trust comes from.
pub(crate) struct TrustedKey {
    /// The verification key.
    pub key: PublicKey,
    /// "this appliance's HSM/TPM", "--public-key FILE", "the custodians' shares", ...
    pub source: String,
}

/// The signing keys an archive may be signed by, and whether an unverifiable archive may be
/// opened anyway.
#[derive(Default)]
pub struct Trust {
    keys: Vec<TrustedKey>,
    accept_forged: bool,
}

impl Trust {
    /// No trusted key yet.
    pub fn new() -> Self {
        Trust::default()
    }

    /// Trusts `key`, naming where it comes from. A key already trusted keeps its first source.
    pub fn add(&mut self, key: PublicKey, source: impl Into<String>) {
        if !self.keys.iter().any(|k| k.key == key) {
            self.keys.push(TrustedKey {
                key,
                source: source.into(),
            });
        }
    }

    /// Opens archives whose signature cannot be verified (unsigned, untrusted signer, wrong
    /// signature). Their contents may be forged; the caller must say so and audit it.
    pub fn accept_forged(&mut self) {
        self.accept_forged = true;
    }

    /// The ids of the trusted keys, for messages.
    pub(crate) fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.key.key_id())).collect()
    }

    fn find(&self, key_id: &[u8; 8]) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| &k.key.key_id() == key_id)
    }

    /// Refuses, before any key is used, an archive that cannot pass [`Trust::check`]: one
    /// with no signer, or whose signer is not trusted (unless forged contents are accepted).
    pub(crate) fn precheck(&self, header: &Header) -> Result<(), JobError> {
        if self.accept_forged {
            return Ok(());
        }
        match &header.signer {
            None => Err(JobError::Signature(SignatureError::Unsigned)),
            Some(s) if self.find(&s.key_id).is_none() => {
                Err(JobError::Signature(SignatureError::Untrusted {
                    archive: hex(&s.key_id),
                    trusted: if self.keys.is_empty() {
                        "none".into()
                    } else {
                        self.key_ids().join(", ")
                    },
                }))
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks an archive's signature after a full read: `header_digest` is SHA-256 of its
    /// header block, `digest` SHA-256 of every byte before the trailer (`None` when the
    /// archive was not read to its end).
    pub fn check(
        &self,
        header: &Header,
        header_digest: &[u8; 32],
        digest: Option<[u8; 32]>,
        trailer: &[u8],
    ) -> Result<SignatureStatus, JobError> {
        self.lenient(self.check_strict(header, trailer, |sig| {
            let digest = digest.ok_or(SignatureError::Invalid)?;
            if header.version < VERSION_CHAIN {
                return Ok((signed_message(&digest), sig.to_vec()));
            }
            let t = TrailerV3::decode(sig).map_err(|_| SignatureError::Invalid)?;
            if t.stream_digest != digest {
                return Err(SignatureError::Invalid);
            }
            let m = message_v3(header_digest, &digest, t.tail_start, &t.tail_digest);
            Ok((m, t.signature.to_vec()))
        }))
    }

    /// Checks a version-3 archive's signature after reading only its header block and its
    /// tail (`tail_digest`, see `crate::format::trailer`); returns the tail's start with the
    /// status. Never lenient: a tail feeds retention and the catalogue, not an operator.
    pub(crate) fn check_tail(
        &self,
        header: &Header,
        header_digest: &[u8; 32],
        tail_digest: &[u8; 32],
        trailer: &[u8],
    ) -> Result<(u64, SignatureStatus), JobError> {
        let t =
            TrailerV3::decode(trailer).map_err(|_| JobError::Signature(SignatureError::Invalid))?;
        let s = self.check_strict(header, trailer, |_| {
            let m = message_v3(header_digest, &t.stream_digest, t.tail_start, tail_digest);
            Ok((m, t.signature.to_vec()))
        });
        Ok((t.tail_start, s.map_err(JobError::Signature)?))
    }

    /// Checks a version-3 archive's signature with its header block and trailer alone,
    /// which proves the header authentic (its chain, for retention) without any body byte.
    pub(crate) fn check_head(
        &self,
        header: &Header,
        header_digest: &[u8; 32],
        trailer: &[u8],
    ) -> Result<SignatureStatus, JobError> {
        let t =
            TrailerV3::decode(trailer).map_err(|_| JobError::Signature(SignatureError::Invalid))?;
        self.check_strict(header, trailer, |_| {
            let m = message_v3(
                header_digest,
                &t.stream_digest,
                t.tail_start,
                &t.tail_digest,
            );
            Ok((m, t.signature.to_vec()))
        })
        .map_err(JobError::Signature)
    }

    fn lenient(
        &self,
        r: Result<SignatureStatus, SignatureError>,
    ) -> Result<SignatureStatus, JobError> {
        match r {
            Ok(s) => Ok(s),
            Err(e) if self.accept_forged => Ok(SignatureStatus::Unverified(e.to_string())),
            Err(e) => Err(JobError::Signature(e)),
        }
    }

    /// Finds the trusted signer of `header` and checks the signature that `message` (given
    /// the trailer) returns with the message it covers.
    fn check_strict(
        &self,
        header: &Header,
        trailer: &[u8],
        message: impl FnOnce(&[u8]) -> Result<(Vec<u8>, Vec<u8>), SignatureError>,
    ) -> Result<SignatureStatus, SignatureError> {
        let Some(signer) = &header.signer else {
            return Err(SignatureError::Unsigned);
        };
        let Some(trusted) = self.find(&signer.key_id) else {
            return Err(SignatureError::Untrusted {
                archive: hex(&signer.key_id),
                trusted: if self.keys.is_empty() {
                    "none".into()
                } else {
                    self.key_ids().join(", ")
                },
            });
        };
        let (m, sig) = message(trailer)?;
        trusted.key.verify(&m, &sig)?;
        Ok(SignatureStatus::Verified {
            key: hex(&signer.key_id),
            trusted_as: trusted.source.clone(),
        })
    }
}

/// The outcome of a signature check that let the archive through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// Signed by a trusted key, and the signature matches.
    Verified {
        /// The signing key's id.
        key: String,
        /// Why that key is trusted.
        trusted_as: String,
    },
    /// Not verified, and opened anyway because the operator accepted forged contents; the
    /// text says why the check failed.
    Unverified(String),
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureStatus::Verified { key, trusted_as } => {
                write!(f, "verified (key {key}, trusted as {trusted_as})")
            }
            SignatureStatus::Unverified(why) => write!(
                f,
                "NOT VERIFIED, THE CONTENTS MAY BE FORGED (accepted by --accept-unverified-may-be-forged): {why}"
            ),
        }
    }
}

/// Checks the signature of an archive that was read to its end.
pub(crate) fn check_read<R: Read>(
    reader: &DecryptReader<R>,
    trust: &Trust,
) -> Result<SignatureStatus, JobError> {
    trust.check(
        reader.header(),
        &reader.header_digest(),
        reader.stream_digest(),
        reader.trailer(),
    )
}

/// What a keyless verification saw.
#[derive(Debug, serde::Serialize)]
pub struct KeylessSummary {
    /// The archive id (from the unauthenticated header, vouched for by the signature).
    pub archive_id: String,
    /// The archive kind.
    pub kind: &'static str,
    /// The appliance that wrote it.
    pub appliance_id: String,
    /// Creation time (Unix seconds).
    pub created_unix: i64,
    /// Creation time, RFC 3339 in UTC (see [`super::read::created_rfc3339`]).
    pub created: Option<String>,
    /// The key slot kinds in header order, as `verify` and `backup` list them.
    pub slots: Vec<&'static str>,
    /// Segments read.
    pub segments: u64,
    /// Archive bytes read.
    pub archive_bytes: u64,
    /// The signature status.
    pub signature: SignatureStatus,
    /// SHA-256 of every byte before the trailer (the signed digest).
    #[serde(skip)]
    pub stream_digest: [u8; 32],
}

/// Checks an archive's structure and signature with no decryption key, HSM, TPM or config.
pub fn verify_keyless<R: Read>(mut input: R, trust: &Trust) -> Result<KeylessSummary, JobError> {
    let head = read_head(&mut input)?;
    let header = head.header;
    let mut framer = Framer::new(
        input,
        header.segment_size,
        header.trailer_len(),
        &[&head.encoded, &head.mac],
    );
    let mut segments = 0;
    while let Some(seg) = framer
        .advance()
        .map_err(|e| JobError::io("reading the archive", e))?
    {
        if !seg.last && seg.len != header.segment_size as usize + crate::format::TAG_LEN {
            return Err(JobError::Signature(SignatureError::Invalid));
        }
        segments += 1;
    }
    let digest = framer.stream_digest();
    let signature = trust.check(&header, &framer.prelude_digest(), digest, framer.trailer())?;
    Ok(KeylessSummary {
        archive_id: header.archive_id_hex(),
        kind: header.kind.name(),
        appliance_id: header.appliance_id.clone(),
        created_unix: header.created_unix,
        created: super::read::created_rfc3339(header.created_unix),
        slots: header.slots.iter().map(|s| s.kind_name()).collect(),
        segments,
        archive_bytes: framer.bytes_read(),
        signature,
        stream_digest: digest.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ArchiveKind, Compression, KeySlot, SignerInfo, VERSION};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn key_pair() -> (EcdsaKeyPair, PublicKey) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pk = PublicKey::from_point(kp.public_key().as_ref()).unwrap();
        (kp, pk)
    }

    fn header(signer: Option<[u8; 8]>) -> Header {
        Header {
            version: VERSION,
            kind: ArchiveKind::System,
            created_unix: 0,
            appliance_id: "a".into(),
            archive_id: [1; 16],
            compression: Compression::None,
            segment_size: 4096,
            salt: [2; 32],
            nonce_prefix: [3; 7],
            slots: vec![KeySlot::Recovery {
                key_id: [0; 8],
                ephemeral: [0; 32],
                wrapped: vec![0; 48],
            }],
            signer: signer.map(|key_id| SignerInfo { key_id }),
            chain: None,
        }
    }

    #[test]
    fn only_a_trusted_signer_with_a_good_signature_passes() {
        let (kp, pk) = key_pair();
        let (_, other) = key_pair();
        let digest = [9u8; 32];
        let sig = kp
            .sign(&SystemRandom::new(), &signed_message(&digest))
            .unwrap();
        let h = header(Some(pk.key_id()));
        let mut trust = Trust::new();
        trust.add(other.clone(), "other");
        let e = trust
            .check(&h, &[0; 32], Some(digest), sig.as_ref())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "the archive was signed by key {}, which is not a trusted signing key here (trusted: {}): it was not written by this appliance, or it was forged. An archive of another appliance opens with the custodians' shares (--share FILE: their files record that appliance's signing keys) or with that appliance's public key (--public-key FILE); never trust it otherwise",
                hex(&pk.key_id()),
                hex(&other.key_id())
            )
        );
        assert_eq!(e.exit_code(), 3);
        trust.add(pk.clone(), "--public-key k.pem");
        assert_eq!(
            trust
                .check(&h, &[0; 32], Some(digest), sig.as_ref())
                .unwrap(),
            SignatureStatus::Verified {
                key: hex(&pk.key_id()),
                trusted_as: "--public-key k.pem".into()
            }
        );
        let e = trust
            .check(&h, &[0; 32], Some([8; 32]), sig.as_ref())
            .err()
            .unwrap();
        assert!(matches!(e, JobError::Signature(SignatureError::Invalid)));
        let e = trust
            .check(&header(None), &[0; 32], Some(digest), &[])
            .err()
            .unwrap();
        assert!(matches!(e, JobError::Signature(SignatureError::Unsigned)));
        trust.accept_forged();
        let s = trust
            .check(&header(None), &[0; 32], Some(digest), &[])
            .unwrap();
        assert!(s.to_string().starts_with("NOT VERIFIED"), "{s}");
    }
}
