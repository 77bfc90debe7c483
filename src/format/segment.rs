//! Body segments: STREAM-style chunked AEAD (AES-256-GCM).
//!
//! Segment `i` is sealed with nonce `prefix (7) || i (u32 BE) || last (1)`, where `last` is 1
//! for the final segment and 0 otherwise, and with the header MAC as associated data.
//! Reordered, dropped, duplicated or appended segments therefore fail to open, and so does a
//! stream cut at a segment boundary (its new last segment was sealed with `last = 0`).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, Tag};

use super::{FormatError, TAG_LEN};

/// The 12-byte nonce of segment `counter`.
pub(crate) fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts `buf` in place and appends the 16-byte tag.
pub fn seal(
    key: &LessSafeKey,
    prefix: &[u8; 7],
    counter: u32,
    last: bool,
    aad: &[u8],
    buf: &mut Vec<u8>,
) {
    let n = Nonce::assume_unique_for_key(nonce(prefix, counter, last));
    let tag: Tag = key
        .seal_in_place_separate_tag(n, Aad::from(aad), buf.as_mut_slice())
        .expect("AES-GCM sealing of at most 16 MiB cannot fail");
    buf.extend_from_slice(tag.as_ref());
}

/// Checks and decrypts one sealed segment (ciphertext then tag) in place, returning the
/// plaintext length. Nothing of `buf` may be used when this fails.
pub fn open(
    key: &LessSafeKey,
    prefix: &[u8; 7],
    counter: u32,
    last: bool,
    aad: &[u8],
    buf: &mut [u8],
) -> Result<usize, FormatError> {
    if buf.len() < TAG_LEN {
        return Err(FormatError::Truncated(u64::from(counter)));
    }
    let n = Nonce::assume_unique_for_key(nonce(prefix, counter, last));
    key.open_in_place(n, Aad::from(aad), buf)
        .map(|p| p.len())
        .map_err(|_| FormatError::SegmentAuth(u64::from(counter)))
}
