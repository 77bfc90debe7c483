//! Archive signatures: the P-256 public key encodings (SPKI DER, PEM) and the check of a
//! trailer signature. Pure functions; signing itself happens in the HSM or TPM.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

/// DER prefix of a P-256 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { id-ecPublicKey,
/// prime256v1 }, BIT STRING (0 unused bits) ... } followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DER of the prime256v1 OID, as PKCS#11 CKA_EC_PARAMS wants it.
pub(crate) const P256_EC_PARAMS: [u8; 10] =
    [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Why a public key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key file is not a P-256 public key.
    #[error("the public key is not a PEM or DER P-256 SubjectPublicKeyInfo; export it with `offbox keys export-public`")]
    BadPublicKey,
    /// The archive carries no signature.
    #[error("the archive is not signed, so it cannot be checked without keys; make new archives with a signing key (`offbox keys init`)")]
    Unsigned,
    /// The archive was signed by a key that is not trusted here.
    #[error("the archive was signed by key {archive}, which is not a trusted signing key here (trusted: {trusted}): it was not written by this appliance, or it was forged. An archive of another appliance opens with the custodians' shares (--share FILE: their files record that appliance's signing keys) or with that appliance's public key (--public-key FILE); never trust it otherwise")]
    Untrusted {
        /// Key id in the archive.
        archive: String,
        /// Ids of the trusted keys, comma-separated ("none" when there is none).
        trusted: String,
    },
    /// The signature does not match.
    #[error("the archive signature does not match its content: it was modified, truncated or extended after it was written; do not trust this file")]
    Invalid,
}

/// A P-256 verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: [u8; 65],
}

impl PublicKey {
    /// From an uncompressed SEC1 point (0x04 || x || y).
    pub fn from_point(point: &[u8]) -> Result<Self, SignatureError> {
        let point: [u8; 65] = point.try_into().map_err(|_| SignatureError::BadPublicKey)?;
        if point[0] != 0x04 {
            return Err(SignatureError::BadPublicKey);
        }
        Ok(PublicKey { point })
    }

    /// From DER SubjectPublicKeyInfo.
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<Self, SignatureError> {
        if der.len() != P256_SPKI_PREFIX.len() + 65
            || der[..P256_SPKI_PREFIX.len()] != P256_SPKI_PREFIX
        {
            return Err(SignatureError::BadPublicKey);
        }
        Self::from_point(&der[P256_SPKI_PREFIX.len()..])
    }

    /// From PEM ("-----BEGIN PUBLIC KEY-----") or raw DER bytes.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, SignatureError> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Self::from_spki_der(bytes);
        };
        let b64: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PUBLIC KEY-----")
            .collect();
        let der = data_encoding::BASE64
            .decode(b64.as_bytes())
            .map_err(|_| SignatureError::BadPublicKey)?;
        Self::from_spki_der(&der)
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut v = P256_SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.point);
        v
    }

    /// PEM SubjectPublicKeyInfo, 64 characters a line.
    pub fn to_pem(&self) -> String {
        let b64 = data_encoding::BASE64.encode(&self.spki_der());
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// The key id recorded in archive headers: SHA-256(SPKI DER)[..8].
    pub fn key_id(&self) -> [u8; 8] {
        digest::digest(&digest::SHA256, &self.spki_der()).as_ref()[..8]
            .try_into()
            .expect("8 bytes")
    }

    /// Checks a raw `r || s` signature over `message` (ECDSA P-256 with SHA-256).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point[..])
            .verify(message, signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// What the hardware signs for a message: SHA-256(message), to be signed with raw ECDSA.
pub(crate) fn prehash(message: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, message)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    #[test]
    fn pem_round_trip_and_verification() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pk = PublicKey::from_point(kp.public_key().as_ref()).unwrap();
        let pem = pk.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"));
        assert_eq!(PublicKey::from_pem_or_der(pem.as_bytes()).unwrap(), pk);
        assert_eq!(PublicKey::from_pem_or_der(&pk.spki_der()).unwrap(), pk);
        let sig = kp.sign(&rng, b"message").unwrap();
        pk.verify(b"message", sig.as_ref()).unwrap();
        assert_eq!(
            pk.verify(b"messagf", sig.as_ref()),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            PublicKey::from_pem_or_der(b"junk"),
            Err(SignatureError::BadPublicKey)
        );
    }
}
