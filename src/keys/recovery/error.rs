//! Errors of the recovery key and its shares.

use thiserror::Error;

/// What is wrong with the recovery key, a share, or a recovery slot, and what to do.
#[derive(Debug, Error)]
pub enum RecoveryError {
    /// No recovery public key configured.
    #[error("no recovery public key is configured; run `offbox recovery init` (a key ceremony) or set recovery.public_key")]
    NoPublicKey,
    /// The configured public key does not parse.
    #[error("the recovery public key \"{0}...\" is not valid; copy it again from the ceremony's output (it starts with offbox-recovery-v1:)")]
    BadPublicKey(String),
    /// The recovery key was to be rebuilt from no shares at all.
    #[error("the recovery slot needs the custodians' shares; pass them with --share FILE (or type them at the prompt)")]
    NoShares,
    /// The shares belong to another key.
    #[error("the archive's recovery slot was made for recovery key {archive}, but the shares reconstruct another recovery key ({shares}); bring the shares of the ceremony that made key {archive}")]
    OtherKey {
        /// Key id named by the archive.
        archive: String,
        /// Key id the shares reconstruct.
        shares: String,
    },
    /// The slot failed authentication.
    #[error("the recovery slot does not open: it was altered, or it belongs to another archive; restore from another copy of the archive")]
    BadSlot,
    /// A share is damaged or mistyped.
    #[error("share {which} is damaged or mistyped ({detail}); check it character by character against the custodian's copy")]
    BadShare {
        /// Which share (file name or prompt number).
        which: String,
        /// What failed.
        detail: String,
    },
    /// Shares of different ceremonies mixed.
    #[error("share {which} belongs to recovery key {found}, the others to {expected}; use shares of one ceremony only")]
    MixedShares {
        /// Which share.
        which: String,
        /// Its key id.
        found: String,
        /// The key id of the first share.
        expected: String,
    },
    /// Shares of one recovery key that disagree on the threshold or count.
    #[error("share {which} says {found} shares are needed, but share {first} says {expected}: one of them was altered or mistyped; check both against the custodians' copies")]
    ThresholdMismatch {
        /// The share that differs.
        which: String,
        /// What it says ("M of N").
        found: String,
        /// The first share.
        first: String,
        /// What the first share says.
        expected: String,
    },
    /// Not enough shares.
    #[error("{given} distinct share(s) given, but recovery key {key_id} needs {threshold}; bring more custodians")]
    TooFewShares {
        /// Distinct shares given.
        given: usize,
        /// Threshold M.
        threshold: u8,
        /// The key id.
        key_id: String,
    },
    /// Reconstruction gave a key that does not match the share files' key id.
    #[error("the shares do not reconstruct recovery key {key_id}: at least one share is wrong although its checksum passed; run `offbox recovery verify-shares` with each subset to find it")]
    Mismatch {
        /// The key id the shares claim.
        key_id: String,
    },
    /// The ceremony parameters are not allowed.
    #[error("{0}")]
    BadParameters(String),
}
