//! The archive header: what it holds and how it is laid out on the wire.
//!
//! Wire layout: `MAGIC (8) || header_len (u32 LE) || header (postcard) || header MAC (32)`.
//! The MAC is computed by [`crate::format::schedule`]; this file only encodes and decodes.

use serde::{Deserialize, Serialize};

use aws_lc_rs::digest;

use super::{
    FormatError, MAGIC, MAX_HEADER_LEN, MAX_SEGMENT_SIZE, MIN_READ_VERSION, MIN_SEGMENT_SIZE,
    VERSION,
};

/// Domain separation of [`Header::slot_binding`].
const BINDING_LABEL: &[u8] = b"offbox v2 slot binding\0";

/// What an archive holds. Recorded so that a restore knows what it is opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveKind {
    /// Data, settings, software and access records: a tar stream of the configured sources.
    System,
    /// The vault's confidential export ("break the glass"): an opaque byte stream.
    Secrets,
    /// Session recordings: a tar stream of the recordings directory.
    Videos,
}

impl ArchiveKind {
    /// The lowercase name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::System => "system",
            ArchiveKind::Secrets => "secrets",
            ArchiveKind::Videos => "videos",
        }
    }
}

/// How the plaintext payload is compressed before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// The payload is stored as is.
    None,
    /// The payload is one or more zstd frames.
    Zstd {
        /// The level the writer used (informational).
        level: i32,
    },
}

/// One wrapped copy of the archive's data key. An archive carries several; any one opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySlot {
    /// Wrapped by a non-extractable AES key inside a PKCS#11 token.
    Pkcs11 {
        /// CKA_LABEL of the key-encryption key.
        key_label: String,
        /// CKA_ID of the key-encryption key.
        key_id: Vec<u8>,
        /// offbox's version number of that key (rotation).
        key_version: u32,
        /// The PKCS#11 mechanism used (CKM_AES_KEY_WRAP = 0x2109).
        mechanism: u64,
        /// The wrapped data key.
        wrapped: Vec<u8>,
    },
    /// Sealed under a storage key of a TPM 2.0.
    Tpm {
        /// offbox's version number of the sealing parent (rotation).
        key_version: u32,
        /// Name of the parent key: identifies the TPM that sealed the slot.
        parent_name: Vec<u8>,
        /// PCR indexes (SHA-256 bank) the unseal policy is bound to; empty when unbound.
        pcrs: Vec<u8>,
        /// TPM2B_PUBLIC of the sealed object, marshalled.
        public: Vec<u8>,
        /// TPM2B_PRIVATE of the sealed object, marshalled.
        private: Vec<u8>,
    },
    /// Wrapped to the offline recovery public key (X25519, HKDF-SHA256, AES-256-GCM).
    Recovery {
        /// Identifies the recovery key (first 8 bytes of SHA-256 of its public key).
        key_id: [u8; 8],
        /// The writer's ephemeral X25519 public key.
        ephemeral: [u8; 32],
        /// AES-256-GCM encryption of the data key, tag appended.
        wrapped: Vec<u8>,
    },
}

impl KeySlot {
    /// A short name for reports: "pkcs11", "tpm" or "recovery".
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            KeySlot::Pkcs11 { .. } => "pkcs11",
            KeySlot::Tpm { .. } => "tpm",
            KeySlot::Recovery { .. } => "recovery",
        }
    }
}

/// Who signs the archive trailer, so that a server can check it without decryption keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerInfo {
    /// First 8 bytes of SHA-256 of the signer's SubjectPublicKeyInfo (DER).
    pub key_id: [u8; 8],
}

/// Length of the signature trailer: an ECDSA P-256 signature as raw `r || s`.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// The archive header. Everything in it is authenticated by the header MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version; always [`VERSION`] for archives this build writes.
    pub version: u16,
    /// What the archive holds.
    pub kind: ArchiveKind,
    /// Creation time, seconds since the Unix epoch (UTC).
    pub created_unix: i64,
    /// The appliance that wrote the archive.
    pub appliance_id: String,
    /// Random identifier of this archive.
    pub archive_id: [u8; 16],
    /// How the payload is compressed.
    pub compression: Compression,
    /// Plaintext bytes per body segment (the last segment may be shorter).
    pub segment_size: u32,
    /// Random salt of the key schedule.
    pub salt: [u8; 32],
    /// Random 7-byte prefix of every segment nonce.
    pub nonce_prefix: [u8; 7],
    /// Wrapped copies of the data key.
    pub slots: Vec<KeySlot>,
    /// Signer of the trailer, when the archive is signed.
    pub signer: Option<SignerInfo>,
}

impl Header {
    /// Number of bytes that follow the last body segment.
    pub fn trailer_len(&self) -> usize {
        if self.signer.is_some() {
            SIGNATURE_LEN
        } else {
            0
        }
    }

    /// The archive id as lowercase hex, as shown to operators.
    pub(crate) fn archive_id_hex(&self) -> String {
        hex(&self.archive_id)
    }

    /// Checks the invariants a well-formed header holds.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !(MIN_READ_VERSION..=VERSION).contains(&self.version) {
            return Err(FormatError::UnsupportedVersion(self.version));
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(FormatError::HeaderInvalid("segment size out of range"));
        }
        if self.slots.is_empty() {
            return Err(FormatError::HeaderInvalid("no key slot"));
        }
        if self.appliance_id.len() > 255 {
            return Err(FormatError::HeaderInvalid(
                "appliance id longer than 255 bytes",
            ));
        }
        Ok(())
    }

    /// What every key slot of a version-2 archive is bound to: SHA-256 of a label and the
    /// postcard encoding of every header field except `slots`, in header order. A slot moved
    /// into an archive whose header differs in any other field no longer opens. `None` for
    /// version 1, whose device slots are unbound.
    pub fn slot_binding(&self) -> Option<[u8; 32]> {
        if self.version < 2 {
            return None;
        }
        let fields = (
            self.version,
            self.kind,
            self.created_unix,
            &self.appliance_id,
            &self.archive_id,
            self.compression,
            self.segment_size,
            &self.salt,
            &self.nonce_prefix,
            &self.signer,
        );
        let body = postcard::to_stdvec(&fields).expect("header fields encode");
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(BINDING_LABEL);
        ctx.update(&body);
        Some(ctx.finish().as_ref().try_into().expect("32 bytes"))
    }

    /// Encodes `MAGIC || len || header`: the bytes the header MAC covers.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        let body =
            postcard::to_stdvec(self).map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        if body.len() > MAX_HEADER_LEN {
            return Err(FormatError::HeaderTooLarge(body.len()));
        }
        let mut out = Vec::with_capacity(12 + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads the 12-byte prefix and returns the length of the postcard header that follows.
    pub fn decode_prefix(prefix: &[u8; 12]) -> Result<usize, FormatError> {
        if prefix[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let len = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")) as usize;
        if len > MAX_HEADER_LEN {
            return Err(FormatError::HeaderTooLarge(len));
        }
        Ok(len)
    }

    /// Decodes the postcard header bytes (without prefix or MAC) and validates them.
    pub fn decode_body(body: &[u8]) -> Result<Header, FormatError> {
        let (version, _) = postcard::take_from_bytes::<u16>(body)
            .map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        if !(MIN_READ_VERSION..=VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let header: Header =
            postcard::from_bytes(body).map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        // postcard ignores trailing bytes; a canonical header has none.
        let again =
            postcard::to_stdvec(&header).map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        if again != body {
            return Err(FormatError::HeaderInvalid("non-canonical encoding"));
        }
        header.validate()?;
        Ok(header)
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}
