//! The key schedule: from one data key to the header MAC key and the payload key.
//!
//! `header_key  = HKDF-SHA256(salt, DEK, "offbox v1 header mac")`
//! `payload_key = HKDF-SHA256(salt, DEK, "offbox v1 payload")`
//! `header_mac  = HMAC-SHA256(header_key, MAGIC || len || header)`
//!
//! The header MAC is also the associated data of every body segment, which binds the body to
//! exactly one header.

use aws_lc_rs::{aead, constant_time, hkdf, hmac};

use super::{FormatError, HEADER_MAC_LEN};
use crate::secret::{Key32, KEY_LEN};

const INFO_HEADER: &[u8] = b"offbox v1 header mac";
const INFO_PAYLOAD: &[u8] = b"offbox v1 payload";

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Derives one 32-byte key with HKDF-SHA256.
pub fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Key32 {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(info, Len(KEY_LEN))
        .expect("32 bytes is a valid HKDF length");
    let mut out = [0u8; KEY_LEN];
    okm.fill(&mut out).expect("32 bytes is a valid HKDF length");
    Key32::from_bytes(&mut out)
}

/// The keys of one archive, derived from its data key and salt.
pub struct ArchiveKeys {
    header: hmac::Key,
    payload: aead::LessSafeKey,
}

impl ArchiveKeys {
    /// Runs the key schedule.
    pub fn derive(dek: &Key32, salt: &[u8; 32]) -> Self {
        let header = hkdf32(salt, dek.expose(), &[INFO_HEADER]);
        let payload = hkdf32(salt, dek.expose(), &[INFO_PAYLOAD]);
        ArchiveKeys {
            header: hmac::Key::new(hmac::HMAC_SHA256, header.expose()),
            payload: aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::AES_256_GCM, payload.expose())
                    .expect("32-byte AES-256 key"),
            ),
        }
    }

    /// The MAC over the encoded header (`MAGIC || len || header`).
    pub fn header_mac(&self, encoded: &[u8]) -> [u8; HEADER_MAC_LEN] {
        let tag = hmac::sign(&self.header, encoded);
        tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
    }

    /// Checks a header MAC in constant time.
    pub(crate) fn check_header_mac(&self, encoded: &[u8], mac: &[u8]) -> Result<(), FormatError> {
        let expected = self.header_mac(encoded);
        constant_time::verify_slices_are_equal(&expected, mac).map_err(|_| FormatError::HeaderAuth)
    }

    /// The AEAD key of the body segments.
    pub fn payload(&self) -> &aead::LessSafeKey {
        &self.payload
    }
}
