//! Secret value types: the per-archive data key (DEK) and derived keys.
//!
//! These types own key material only. They have no `Debug`, `Clone` or `Copy`, and they
//! zeroize their memory when dropped. Anything that holds a key borrows it from here.

use secrecy::{ExposeSecret, SecretBox};

/// Length in bytes of a data key and of every derived symmetric key.
pub(crate) const KEY_LEN: usize = 32;

/// A 32-byte symmetric secret (a DEK or a key derived from it), zeroized on drop.
pub struct Key32(SecretBox<[u8; KEY_LEN]>);

impl Key32 {
    /// Takes ownership of key bytes, zeroizing the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
        let key = Key32(SecretBox::new(Box::new(*bytes)));
        zeroize::Zeroize::zeroize(bytes);
        key
    }

    /// Copies key bytes out of a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut buf: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self::from_bytes(&mut buf))
    }

    /// A fresh key from the operating system's CSPRNG (through the crypto provider).
    pub fn random() -> Self {
        let mut buf = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
        Self::from_bytes(&mut buf)
    }

    /// Borrows the key bytes. Callers must not copy them into long-lived storage.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

/// The per-archive data encryption key. Never written to disk unwrapped.
pub type Dek = Key32;

/// Fills a buffer with random bytes from the crypto provider.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
    buf
}

/// Draws once from the crypto provider's generator and discards the bytes, so that its
/// seeding on first use (from CPU jitter: tens of milliseconds of CPU in every process) is
/// done now, while something else waits (`backup create --to` does it while its target
/// connects), and not later on a path that something else waits for.
pub(crate) fn seed_generator() {
    let _ = random_bytes::<1>();
}

/// A secret text (a PIN or a password), zeroized on drop. Like [`Key32`] it has no `Debug`,
/// `Clone` or `Copy`: it is borrowed with [`SecretText::expose`] only where it is used.
pub struct SecretText(secrecy::SecretString);

impl SecretText {
    /// Copies the text into an exactly sized, zeroizing allocation. The caller zeroizes its
    /// own buffer.
    pub fn new(text: &str) -> Self {
        SecretText(secrecy::SecretString::from(text))
    }

    /// Borrows the text. Callers must not copy it into long-lived storage.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The text as a `secrecy` string, for APIs that take one (the PKCS#11 login).
    pub(crate) fn into_secret_string(self) -> secrecy::SecretString {
        self.0
    }
}

pub mod source;
