//! offbox: encrypted, hardware-keyed, off-box backups for a crypto appliance.
//!
//! Layers, bottom up; a layer uses only the layers before it in this list:
//!
//! - [`format`](mod@format): the archive format (header, key schedule, segments, signature). Pure, no I/O.
//! - [`stream`]: streaming encryption and decryption over `std::io` (`EncryptWriter`, which
//!   must be `finish()`ed, and `DecryptReader`).
//! - [`keys`]: key custody. The key joint is [`keys::SlotRecipient`] (wraps a data key into a
//!   slot) and [`keys::SlotIdentity`] (unwraps one), as age's `Recipient`/`Identity`; a
//!   PKCS#11 token or a TPM 2.0 is both ([`keys::Device`]), the offline recovery key is a
//!   recipient by its public key and an identity by its private key rebuilt from shares. It
//!   owns the `[keys]` section of the config.
//! - [`payload`]: tar packing of the sources with zstd, and staged extraction.
//! - [`guard`]: the self-target guard, which refuses a target that is this appliance.
//! - [`targets`]: where archives go off the box (`file://`, `ssh://`, `smb://`, `nfs://`),
//!   every connection checked by the guard.
//! - [`config`]: the configuration file: parsing, range checks, and the one edit of its text
//!   (recording the recovery public key).
//! - [`notify`]: the events operators hear about (email, syslog/CEF to a SIEM, the
//!   journal), sent on transitions, queued when undeliverable. Beside `jobs`: it owns the
//!   `[notify]` section and uses neither `config` nor `jobs`.
//! - [`jobs`]: backup, open, verify, decrypt, restore, recovery ceremonies and the jobs on
//!   targets; their errors and exit codes. No terminal or syslog I/O.
//! - [`cli`]: the command line: arguments, the wiring of config, devices and files to the
//!   jobs, the share prompt, the audit line, and reports. Private: `main.rs` only calls
//!   [`main`].
//!
//! Beside them, for any layer: [`secret`] (key material types that zeroize and have no `Debug`), [`harden`]
//! (no core dumps, locked memory), [`progress`] (byte counters and the terminal ticker) and
//! [`run_id`] (who wrote a temporary file).
#![forbid(unsafe_code)]

mod cli;
pub mod config;
pub mod format;
pub mod guard;
mod harden;
pub mod jobs;
pub mod keys;
pub mod notify;
pub mod payload;
pub mod progress;
mod run_id;
pub mod secret;
pub mod stream;
pub mod targets;

/// Runs the `offbox` command line (arguments from the process) and returns its exit code.
pub fn main() -> i32 {
    cli::main()
}

/// Writes the manual pages of the command line, `NAME.1` and one page per subcommand, into
/// the existing directory `dir`, and returns their paths. For packaging only: `cargo run
/// --example manpages` (examples/manpages.rs) runs it for packaging/build-deb.sh.
#[doc(hidden)]
pub fn write_manpages(
    dir: &std::path::Path,
    name: &str,
) -> Result<Vec<std::path::PathBuf>, jobs::JobError> {
    cli::completions::write_manpages(dir, name)
}
