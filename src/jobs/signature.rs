//! Checking archive signatures: after a keyed read (with the device's public key), and
//! without any key at all (`verify --keyless`), as a backup server does.

use std::io::Read;

use crate::format::header::hex;
use crate::format::signature::{PublicKey, SignatureError};
use crate::format::Header;
use crate::stream::{signed_message, DecryptReader, Framer};

use super::open::read_head;
use super::JobError;

/// The key an archive's signature is checked against, and where it came from.
pub struct Expected {
    /// The verification key.
    pub key: PublicKey,
    /// True when the operator named it (`--public-key`): any other signer is then an error.
    /// False for this appliance's own signing key: an archive of another appliance (a
    /// disaster restore on a replacement) is then reported as not checked, not refused.
    pub explicit: bool,
}

/// The outcome of a signature check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// Signed by the key with this id, and the signature matches.
    Verified(String),
    /// Signed, but no public key was at hand to check it.
    NotChecked(String),
    /// Signed by another appliance's key; this appliance's key cannot check it.
    OtherAppliance(String),
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureStatus::Verified(id) => write!(f, "verified (key {id})"),
            SignatureStatus::NotChecked(id) => write!(f, "not checked (signed by key {id}; pass --public-key FILE to check it)"),
            SignatureStatus::OtherAppliance(id) => write!(f, "not checked (signed by another appliance's key {id}; pass its --public-key FILE to check it)"),
        }
    }
}

fn check(
    header: &Header,
    digest: Option<[u8; 32]>,
    trailer: &[u8],
    expected: Option<&Expected>,
) -> Result<SignatureStatus, JobError> {
    let Some(signer) = &header.signer else {
        return Err(JobError::Signature(SignatureError::Unsigned.to_string()));
    };
    let Some(Expected { key, explicit }) = expected else {
        return Ok(SignatureStatus::NotChecked(hex(&signer.key_id)));
    };
    if key.key_id() != signer.key_id && !explicit {
        return Ok(SignatureStatus::OtherAppliance(hex(&signer.key_id)));
    }
    if key.key_id() != signer.key_id {
        return Err(JobError::Signature(
            SignatureError::OtherSigner {
                archive: hex(&signer.key_id),
                given: hex(&key.key_id()),
            }
            .to_string(),
        ));
    }
    let digest = digest.ok_or_else(|| JobError::Signature(SignatureError::Invalid.to_string()))?;
    key.verify(&signed_message(&digest), trailer)
        .map_err(|e| JobError::Signature(e.to_string()))?;
    Ok(SignatureStatus::Verified(hex(&signer.key_id)))
}

/// Checks the signature of an archive that was read to its end.
pub fn check_read<R: Read>(
    reader: &DecryptReader<R>,
    expected: Option<&Expected>,
) -> Result<SignatureStatus, JobError> {
    check(
        reader.header(),
        reader.stream_digest(),
        reader.trailer(),
        expected,
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
    /// Segments read.
    pub segments: u64,
    /// Archive bytes read.
    pub archive_bytes: u64,
    /// The signature status.
    pub signature: SignatureStatus,
}

/// Checks an archive's structure and signature with no decryption key, HSM, TPM or config.
pub fn verify_keyless<R: Read>(mut input: R, key: &PublicKey) -> Result<KeylessSummary, JobError> {
    let head = read_head(&mut input)?;
    let header = head.header;
    if header.signer.is_none() {
        return Err(JobError::Signature(SignatureError::Unsigned.to_string()));
    }
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
            return Err(JobError::Signature(SignatureError::Invalid.to_string()));
        }
        segments += 1;
    }
    let expected = Expected {
        key: key.clone(),
        explicit: true,
    };
    let signature = check(
        &header,
        framer.stream_digest(),
        framer.trailer(),
        Some(&expected),
    )?;
    Ok(KeylessSummary {
        archive_id: header.archive_id_hex(),
        kind: header.kind.name(),
        appliance_id: header.appliance_id.clone(),
        created_unix: header.created_unix,
        segments,
        archive_bytes: framer.bytes_read(),
        signature,
    })
}
