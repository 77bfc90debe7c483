//! offbox: encrypted, hardware-keyed, off-box backups for a crypto appliance.
//!
//! Layers, bottom up: [`format`] (pure archive format), [`stream`] (streaming encryption over
//! `std::io`), [`keys`] (key custody: PKCS#11, TPM, offline recovery), [`payload`] (tar and
//! zstd packing), then [`jobs`] (backup, restore, verify) and the CLI in `main.rs`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod format;
pub mod guard;
pub mod harden;
pub mod jobs;
pub mod keys;
pub mod payload;
pub mod progress;
pub mod run_id;
pub mod secret;
pub mod stream;
pub mod targets;
