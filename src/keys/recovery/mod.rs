//! The offline recovery custodian: data keys wrapped to an X25519 public key whose private
//! half exists only as M-of-N custodian shares.
//!
//! Wrapping is HPKE-style: a fresh ephemeral X25519 key agrees with the recovery public key;
//! `HKDF-SHA256(salt = ephemeral || recipient, ikm = shared secret, info = "offbox v1
//! recovery wrap" || context)` gives a one-time AES-256-GCM key, which seals the DEK with the
//! slot context (archive id, salt, kind) as associated data. Opening needs the private key,
//! reconstructed from shares by [`share`]; nothing else about the appliance is needed.
//!
//! The two sides are two types, so the compiler rules out an opener without the private key:
//! [`RecoveryRecipient`] (the public key, on the appliance) only wraps, and
//! [`RecoveryIdentity`] (the private key rebuilt from shares) only unwraps.

pub mod error;
pub mod share;
pub mod signers;

pub use error::RecoveryError;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::digest;

use super::{Custodian, KeyError, SlotContext, SlotIdentity, SlotRecipient};
use crate::format::header::hex;
use crate::format::schedule::hkdf32;
use crate::format::KeySlot;
use crate::secret::{Dek, Key32};

const INFO: &[u8] = b"offbox v1 recovery wrap";
const INFO_V2: &[u8] = b"offbox v2 recovery wrap";

fn info(ctx: &SlotContext<'_>) -> &'static [u8] {
    if ctx.binding.is_some() {
        INFO_V2
    } else {
        INFO
    }
}
const PUBLIC_PREFIX: &str = "offbox-recovery-v1:";

/// The recovery public key, as stored in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPublicKey(pub [u8; 32]);

impl RecoveryPublicKey {
    /// The 8-byte key id: the first 8 bytes of SHA-256 of the public key.
    pub fn key_id(&self) -> [u8; 8] {
        let d = digest::digest(&digest::SHA256, &self.0);
        d.as_ref()[..8].try_into().expect("8 bytes")
    }

    /// `offbox-recovery-v1:<64 hex digits>`.
    pub fn encode(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", hex(&self.0))
    }

    /// Parses [`RecoveryPublicKey::encode`]'s output.
    pub fn parse(s: &str) -> Result<Self, RecoveryError> {
        let bad = || RecoveryError::BadPublicKey(s.chars().take(40).collect());
        let h = s.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(h.as_bytes())
            .map_err(|_| bad())?;
        Ok(RecoveryPublicKey(bytes.try_into().map_err(|_| bad())?))
    }
}

/// The reconstructed recovery private key. Lives in memory only, zeroized on drop.
pub struct RecoverySecret(Key32);

impl RecoverySecret {
    /// A new random private key (for a ceremony).
    pub(crate) fn generate() -> Self {
        RecoverySecret(Key32::random())
    }

    /// Wraps reconstructed key bytes.
    pub fn from_key(key: Key32) -> Self {
        RecoverySecret(key)
    }

    /// The private key bytes, for splitting into shares.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// The matching public key.
    pub fn public(&self) -> RecoveryPublicKey {
        let sk = PrivateKey::from_private_key(&X25519, self.0.expose())
            .expect("any 32 bytes are an X25519 private key");
        let pk = sk.compute_public_key().expect("X25519 public key");
        RecoveryPublicKey(pk.as_ref().try_into().expect("32 bytes"))
    }
}

/// The wrap side of the recovery key: its public half, all the appliance holds.
pub struct RecoveryRecipient(pub RecoveryPublicKey);

/// The unwrap side of the recovery key: the private key rebuilt from the custodians' shares
/// (break the glass, disaster restore). No `Debug`: it holds the secret.
pub struct RecoveryIdentity(pub RecoverySecret);

fn wrap_key(
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    shared: &[u8],
    info: &[u8],
    ctx: &[u8],
) -> LessSafeKey {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let k = hkdf32(&salt, shared, &[info, ctx]);
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k.expose()).expect("AES-256 key"))
}

fn agree(
    sk: &PrivateKey,
    peer: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    info: &[u8],
    ctx: &[u8],
) -> Result<LessSafeKey, RecoveryError> {
    agreement::agree(
        sk,
        UnparsedPublicKey::new(&X25519, peer),
        RecoveryError::BadSlot,
        |shared| Ok(wrap_key(ephemeral, recipient, shared, info, ctx)),
    )
}

impl Custodian for RecoveryRecipient {
    fn name(&self) -> &'static str {
        "recovery"
    }
}

impl Custodian for RecoveryIdentity {
    fn name(&self) -> &'static str {
        "recovery"
    }
}

impl SlotRecipient for RecoveryRecipient {
    fn wrap(&mut self, dek: &Dek, ctx: &SlotContext<'_>) -> Result<KeySlot, KeyError> {
        let public = self.0;
        let eph_secret = Key32::random();
        let eph = PrivateKey::from_private_key(&X25519, eph_secret.expose())
            .expect("any 32 bytes are an X25519 private key");
        let eph_pub: [u8; 32] = eph
            .compute_public_key()
            .expect("X25519 public key")
            .as_ref()
            .try_into()
            .expect("32 bytes");
        let ctx_bytes = ctx.to_bytes();
        let key = agree(&eph, &public.0, &eph_pub, &public.0, info(ctx), &ctx_bytes)?;
        let mut wrapped = dek.expose().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(&ctx_bytes),
            &mut wrapped,
        )
        .expect("sealing 32 bytes");
        Ok(KeySlot::Recovery {
            key_id: public.key_id(),
            ephemeral: eph_pub,
            wrapped,
        })
    }
}

impl SlotIdentity for RecoveryIdentity {
    fn unwrap(&mut self, slot: &KeySlot, ctx: &SlotContext<'_>) -> Result<Option<Dek>, KeyError> {
        let KeySlot::Recovery {
            key_id,
            ephemeral,
            wrapped,
        } = slot
        else {
            return Ok(None);
        };
        let secret = &self.0;
        let public = secret.public();
        if public.key_id() != *key_id {
            return Err(RecoveryError::OtherKey {
                archive: hex(key_id),
                shares: hex(&public.key_id()),
            }
            .into());
        }
        let sk = PrivateKey::from_private_key(&X25519, secret.expose())
            .expect("any 32 bytes are an X25519 private key");
        let ctx_bytes = ctx.to_bytes();
        let key = agree(&sk, ephemeral, ephemeral, &public.0, info(ctx), &ctx_bytes)?;
        let mut buf = zeroize::Zeroizing::new(wrapped.clone());
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(&ctx_bytes),
                buf.as_mut_slice(),
            )
            .map_err(|_| RecoveryError::BadSlot)?;
        Ok(Some(
            Key32::from_slice(plain).ok_or(RecoveryError::BadSlot)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ArchiveKind;

    fn ctx() -> ([u8; 16], [u8; 32]) {
        ([7u8; 16], [9u8; 32])
    }

    #[test]
    fn wrap_then_unwrap_with_the_secret() {
        let secret = RecoverySecret::generate();
        let public = secret.public();
        let (id, salt) = ctx();
        let c = SlotContext {
            archive_id: &id,
            salt: &salt,
            kind: ArchiveKind::Secrets,
            binding: None,
        };
        let dek = Key32::random();
        let slot = RecoveryRecipient(public).wrap(&dek, &c).unwrap();
        let got = RecoveryIdentity(secret).unwrap(&slot, &c).unwrap().unwrap();
        assert_eq!(got.expose(), dek.expose());
    }

    #[test]
    fn slot_is_bound_to_its_archive_and_key() {
        let secret = RecoverySecret::generate();
        let (id, salt) = ctx();
        let c = SlotContext {
            archive_id: &id,
            salt: &salt,
            kind: ArchiveKind::System,
            binding: Some([3; 32]),
        };
        let slot = RecoveryRecipient(secret.public())
            .wrap(&Key32::random(), &c)
            .unwrap();
        let other_id = [8u8; 16];
        let c2 = SlotContext {
            archive_id: &other_id,
            salt: &salt,
            kind: ArchiveKind::System,
            binding: Some([4; 32]),
        };
        let mut opener = RecoveryIdentity(secret);
        let e = opener.unwrap(&slot, &c2).err().unwrap();
        assert!(
            e.to_string().starts_with("the recovery slot does not open"),
            "{e}"
        );
        let e = RecoveryIdentity(RecoverySecret::generate())
            .unwrap(&slot, &c)
            .err()
            .unwrap();
        assert!(e.to_string().contains("another recovery key"), "{e}");
    }

    #[test]
    fn public_key_text_round_trips() {
        let pk = RecoverySecret::generate().public();
        assert_eq!(RecoveryPublicKey::parse(&pk.encode()).unwrap(), pk);
        assert!(RecoveryPublicKey::parse("offbox-recovery-v1:zz").is_err());
    }
}
