//! The archive header: what it holds and how it is laid out on the wire.
//!
//! Wire layout: `MAGIC (8) || header_len (u32 LE) || header (postcard) || header MAC (32)`.
//! The MAC is computed by [`crate::format::schedule`]; this file only encodes and decodes.

use serde::{Deserialize, Serialize};

use aws_lc_rs::digest;

use super::{
    FormatError, MAGIC, MAX_CHAIN_DEPENDS, MAX_HEADER_LEN, MAX_READ_VERSION, MAX_SEGMENT_SIZE,
    MIN_READ_VERSION, MIN_SEGMENT_SIZE, VERSION_CHAIN,
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

/// Where an archive of a chain (format version 3: incremental video backups) stands: the
/// full that started the chain, the archive it follows, and every other archive whose bytes
/// its restore point needs. Authenticated with the rest of the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The archive id of the chain's full (this archive's own id when it is the full).
    pub base: [u8; 16],
    /// The archive id of the previous archive of the chain; `None` for the full.
    pub parent: Option<[u8; 16]>,
    /// Position in the chain: 0 for the full, parent's + 1 after.
    pub seq: u32,
    /// The other archives holding bytes this archive's restore point needs, sorted, no
    /// duplicates, at most [`MAX_CHAIN_DEPENDS`]. Retention reads it to keep them.
    pub depends_on: Vec<[u8; 16]>,
}

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
    /// The chain of an incremental archive (version 3 only; `None` before).
    #[serde(skip)]
    pub chain: Option<Chain>,
}

impl Header {
    /// Number of bytes that follow the last body segment.
    pub fn trailer_len(&self) -> usize {
        match (&self.signer, self.version >= VERSION_CHAIN) {
            (None, _) => 0,
            (Some(_), false) => SIGNATURE_LEN,
            (Some(_), true) => super::trailer::TRAILER_V3_LEN,
        }
    }

    /// The archive id as lowercase hex, as shown to operators.
    pub(crate) fn archive_id_hex(&self) -> String {
        hex(&self.archive_id)
    }

    /// Checks the invariants a well-formed header holds.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !(MIN_READ_VERSION..=MAX_READ_VERSION).contains(&self.version) {
            return Err(FormatError::UnsupportedVersion(self.version));
        }
        match (&self.chain, self.version >= VERSION_CHAIN) {
            (Some(_), false) => {
                return Err(FormatError::HeaderInvalid("a chain needs format version 3"))
            }
            (None, true) => return Err(FormatError::HeaderInvalid("version 3 without a chain")),
            (Some(c), true) => c.validate(&self.archive_id)?,
            (None, false) => {}
        }
        if self.version >= VERSION_CHAIN && self.signer.is_none() {
            return Err(FormatError::HeaderInvalid("version 3 archives are signed"));
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
        let mut body = postcard::to_stdvec(&fields).expect("header fields encode");
        if self.version >= VERSION_CHAIN {
            body.extend(postcard::to_stdvec(&self.chain).expect("chain encodes"));
        }
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(BINDING_LABEL);
        ctx.update(&body);
        Some(ctx.finish().as_ref().try_into().expect("32 bytes"))
    }

    /// Encodes `MAGIC || len || header`: the bytes the header MAC covers.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        let mut body =
            postcard::to_stdvec(self).map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        if self.version >= VERSION_CHAIN {
            body.extend(
                postcard::to_stdvec(&self.chain)
                    .map_err(|e| FormatError::HeaderDecode(e.to_string()))?,
            );
        }
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
        if !(MIN_READ_VERSION..=MAX_READ_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let (mut header, rest) = postcard::take_from_bytes::<Header>(body)
            .map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        if version >= VERSION_CHAIN {
            header.chain =
                postcard::from_bytes(rest).map_err(|e| FormatError::HeaderDecode(e.to_string()))?;
        }
        // postcard ignores trailing bytes; a canonical header has none. (`encode` also
        // validates.)
        let again = header.encode()?;
        if again[12..] != *body {
            return Err(FormatError::HeaderInvalid("non-canonical encoding"));
        }
        Ok(header)
    }
}

impl Chain {
    /// Checks the chain's invariants against the archive id that carries it.
    fn validate(&self, archive_id: &[u8; 16]) -> Result<(), FormatError> {
        match (self.seq, &self.parent) {
            (0, None) if self.base == *archive_id && self.depends_on.is_empty() => {}
            (0, _) => return Err(FormatError::HeaderInvalid("a chain's full is its own base")),
            (_, None) => return Err(FormatError::HeaderInvalid("an increment names its parent")),
            (_, Some(p)) if p == archive_id || self.base == *archive_id => {
                return Err(FormatError::HeaderInvalid("an increment names itself"))
            }
            _ => {}
        }
        if self.depends_on.len() > MAX_CHAIN_DEPENDS
            || self.depends_on.windows(2).any(|w| w[0] >= w[1])
            || self.depends_on.contains(archive_id)
        {
            return Err(FormatError::HeaderInvalid(
                "chain dependencies are not a sorted set of other archives",
            ));
        }
        Ok(())
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}
