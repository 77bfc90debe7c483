//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// offbox: encrypted, hardware-keyed backups that leave the appliance.
#[derive(Debug, Parser)]
#[command(
    name = "offbox",
    version,
    about,
    after_help = "Exit codes:\n  0   success (also a print-only mode: accept-host-key without --fingerprint, keys retire without --yes)\n  1   configuration, or a request offbox refuses (the message names the key or option)\n  2   usage: the command line does not parse (unknown option, missing or conflicting argument)\n  3   archive integrity or signature: do not trust the file\n  4   key: HSM, TPM, PIN, key version, recovery shares\n  69  target failure a retry cannot fix: full, credentials refused, host key, self-target\n  75  try again later: target unreachable or timed out, or another offbox run holds the lock, or selfcheck found offbox degraded\nWith --json, a failure (exit 2 too) also prints {\"error\":{\"kind\",\"retry\",\"hint\",...}} on standard error."
)]
pub struct Cli {
    /// Config file [default: $OFFBOX_CONFIG, else /etc/offbox/offbox.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print a machine-readable JSON summary instead of the confirmation line.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the key-encryption key in the HSM or TPM.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Make backups.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Restore a system or video archive into a new directory.
    Restore(RestoreArgs),
    /// Read a whole archive and check every byte of it; exit 0 only when all checks pass.
    Verify {
        /// The archive file, or - for standard input; with --from, the archive name.
        archive: PathBuf,
        /// Read the archive from this target (configured name or URL).
        #[arg(long, value_name = "NAME|URL")]
        from: Option<String>,
        /// Check structure and signature only, with no HSM, TPM or decryption key (what a
        /// backup server runs). Needs --public-key. With --from, only the config's
        /// [targets] section is read (or none, for a URL).
        #[arg(long, requires = "public_keys")]
        keyless: bool,
        /// Also trust this signing key (PEM, from `offbox keys export-public`, or the
        /// ceremony's signing-keys.pem); repeat it for several. This appliance's own
        /// signing keys are always trusted.
        #[arg(long = "public-key", value_name = "FILE")]
        public_keys: Vec<PathBuf>,
    },
    /// Write the decrypted payload (the tar stream, or the secrets export).
    Decrypt(DecryptArgs),
    /// Break the glass: open an archive with custodian shares alone (no HSM, TPM or config).
    Recover(RecoverArgs),
    /// Recovery key ceremonies.
    #[command(subcommand)]
    Recovery(RecoveryCmd),
    /// Off-box targets: check one, the appliance's SSH key, SSH host key pinning.
    #[command(subcommand)]
    Target(super::targets::TargetCmd),
    /// Delete old archives of this appliance on a target (retention; try --dry-run first).
    Prune(super::targets::PruneArgs),
    /// Notifications (email, syslog to a SIEM, the journal): `notify test`.
    #[command(subcommand)]
    Notify(super::notify::NotifyCmd),
    /// One scheduled pass: back up every due kind of [schedule] (secrets first), verify,
    /// prune; exit 0 only when all succeeded (the timer offbox-run.timer runs it).
    Run(super::service::RunArgs),
    /// Check every target (connect, write probe, capacity) and notify on transitions; no
    /// HSM, TPM or archive read (the timer offbox-watch.timer runs it every 5 minutes).
    Watch,
    /// Per kind: last success and failure, next due time; per target: reachable or lost,
    /// capacity; raised conditions and queued notifications.
    Status,
    /// The boot service's one-shot check: config, key device, PIN file, device access,
    /// recovery key, state directory, each target, the age of each kind's last backup.
    /// Exit 0 ok, 75 degraded (warnings only), else failed (4 key, 1 config, 69 target).
    #[command(after_help = super::selfcheck::EXIT_CODES)]
    Selfcheck,
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions(super::completions::CompletionsArgs),
    /// Internal: run by `ssh` as its ProxyCommand, hands it the connection offbox dialled
    /// through the self-target guard (ProxyUseFdpass).
    #[command(name = "ssh-fdpass", hide = true)]
    SshFdpass {
        /// offbox's hand-off socket.
        socket: PathBuf,
    },
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create the key-encryption key inside the HSM or TPM.
    Init {
        /// Destroy existing key versions first (needs --yes). Archives that depend on them
        /// become unreadable except through their recovery slot.
        #[arg(long)]
        replace: bool,
        /// Really destroy them (with --replace).
        #[arg(long, requires = "replace")]
        yes: bool,
    },
    /// Show the module, the token and the key versions.
    Status,
    /// Create a new key-encryption key version; new archives use it, old ones still open.
    Rotate,
    /// Destroy an old key-encryption key version. Without --yes, only says what it would
    /// make unreadable (this appliance's archives on every configured target whose device
    /// slot uses it) and exits 0.
    Retire {
        /// The version to retire.
        version: u32,
        /// Really destroy it.
        #[arg(long)]
        yes: bool,
    },
    /// Write the archive signing key's public half (PEM SubjectPublicKeyInfo).
    ExportPublic {
        /// A new file, or - for standard output.
        #[arg(long, value_name = "FILE|-")]
        output: PathBuf,
    },
}

/// Archive kinds on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Data, settings, software and access records.
    System,
    /// The vault's confidential export (break the glass).
    Secrets,
    /// Session recordings.
    Videos,
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Create an archive and stream it out.
    Create(CreateArgs),
    /// List the archives on a target.
    List(super::targets::ListArgs),
}

/// `backup create` arguments.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What to back up.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// A source path; repeat it to give several. Overrides the config's sources.
    #[arg(long = "source", value_name = "PATH")]
    pub sources: Vec<PathBuf>,
    /// - streams the archive to standard output.
    #[arg(
        long,
        value_name = "-",
        required_unless_present = "to",
        conflicts_with = "to"
    )]
    pub output: Option<PathBuf>,
    /// Stream the archive to this off-box target (configured name or URL); it is published
    /// under its final name only when complete.
    #[arg(long, value_name = "NAME|URL")]
    pub to: Option<String>,
    /// When another offbox run holds the run lock, wait up to SECS for it, then exit 75.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
    /// Videos: hash every recording whose metadata is unchanged, and send those whose
    /// content differs (slow; for a suspected silent change).
    #[arg(long)]
    pub rehash: bool,
    /// Videos: start a new chain with a full, whatever [videos] full_every says.
    #[arg(long)]
    pub full: bool,
}

/// The options every command that releases an archive's contents shares.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Also trust this signing key (PEM, from `offbox keys export-public`, or the
    /// ceremony's signing-keys.pem); repeat it for several. This appliance's own signing
    /// keys, and the keys recorded in the given share files, are always trusted.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// DANGEROUS: release the contents even when the signature cannot be verified (unsigned,
    /// signed by an unknown key, or a wrong signature). Anyone who knows one data key or the
    /// recovery public key can forge such an archive. Only for an archive whose signing key
    /// is truly lost; every use is audited.
    #[arg(long = "accept-unverified-may-be-forged")]
    pub accept_forged: bool,
}

/// `decrypt` arguments.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The archive file, or - for standard input.
    pub archive: PathBuf,
    /// Where to write: a new file, or - for standard output (the archive is then checked
    /// completely, signature included, before the first byte is written).
    #[arg(long, value_name = "FILE|-")]
    pub output: PathBuf,
    /// Open through the recovery slot with these custodian share files.
    #[arg(long = "share", value_name = "FILE")]
    pub shares: Vec<PathBuf>,
    /// Signature trust.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Replace FILE if it exists (without it, an existing file is never overwritten).
    #[arg(long, alias = "force")]
    pub replace: bool,
}

/// `restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive file, or - for standard input; with --from, the archive name. Not with
    /// --kind videos, which restores a point (--at).
    #[arg(required_unless_present = "kind", conflicts_with = "kind")]
    pub archive: Option<PathBuf>,
    /// `videos`: restore a point of the incremental video backup from --from: every
    /// recording present at that run, from the archives that hold them.
    #[arg(long, value_enum, requires = "from")]
    pub kind: Option<VideoKindArg>,
    /// Videos: the point, as an archive name, an archive id prefix, or a time
    /// (2026-12-01T10:00:00Z, 2026-12-01, Unix seconds): the newest point at or before it
    /// [default: the newest point].
    #[arg(long, value_name = "TIME|ARCHIVE", requires = "kind")]
    pub at: Option<String>,
    /// Videos: restore only the recordings matching this pattern (`/dir` for a directory
    /// and what is below, `*.mp4` for a name); repeat it for several.
    #[arg(long, value_name = "GLOB", requires = "kind")]
    pub only: Vec<String>,
    /// Read the archive from this target (configured name or URL).
    #[arg(long, value_name = "NAME|URL")]
    pub from: Option<String>,
    /// The new directory to restore into (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Custodian share files: open through the recovery slot when the device slot cannot be
    /// opened (disaster restore on a replacement appliance).
    #[arg(long = "share", value_name = "FILE")]
    pub shares: Vec<PathBuf>,
    /// Keep setuid and setgid bits on restored files (default: strip them and say so, as
    /// `tar --no-same-permissions` does).
    #[arg(long)]
    pub keep_setid: bool,
    /// Do not restore the extended attributes of this namespace (`security`, `trusted`,
    /// `user`) or this attribute (`security.selinux`, for SELinux labels onto a host with
    /// another policy); repeat it for several. Everything else stored (ACLs, file
    /// capabilities, labels) is restored.
    #[arg(long = "skip-xattrs", value_name = "NS")]
    pub skip_xattrs: Vec<String>,
    /// Publish the restored tree without syncing it to disk first (faster; a power cut
    /// soon after may lose part of it). For scratch restores and benchmarks.
    #[arg(long)]
    pub no_sync: bool,
    /// Signature trust.
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// The kinds `restore --kind` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoKindArg {
    /// Session recordings (incremental).
    Videos,
}

/// `recover` arguments.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The archive file, or - for standard input.
    pub archive: PathBuf,
    /// Custodian share files. Without any, shares are read from standard input, one per
    /// line (typed at a prompt with echo off on a terminal).
    #[arg(long = "share", value_name = "FILE")]
    pub shares: Vec<PathBuf>,
    /// Write the payload here (a new file, or - for standard output).
    #[arg(
        long,
        value_name = "FILE|-",
        conflicts_with = "to",
        required_unless_present = "to"
    )]
    pub output: Option<PathBuf>,
    /// Restore a system or video archive into this new directory.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Replace the --output FILE if it exists (without it, it is never overwritten).
    #[arg(long, alias = "force", conflicts_with = "to")]
    pub replace: bool,
    /// Keep setuid and setgid bits on restored files (default: strip them and say so, as
    /// `tar --no-same-permissions` does).
    #[arg(long, requires = "to")]
    pub keep_setid: bool,
    /// Do not restore the extended attributes of this namespace (`security`, `trusted`,
    /// `user`) or this attribute (`security.selinux`); repeat it for several.
    #[arg(long = "skip-xattrs", value_name = "NS", requires = "to")]
    pub skip_xattrs: Vec<String>,
    /// Signature trust.
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `recovery` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecoveryCmd {
    /// Key ceremony: create the recovery key, split it into share files, record the public
    /// key in the config.
    Init(CeremonyArgs),
    /// Drill: check that the given shares rebuild the recovery key, writing nothing.
    VerifyShares {
        /// Share files (without any, read typed shares from standard input).
        #[arg(long = "share", value_name = "FILE")]
        shares: Vec<PathBuf>,
    },
    /// Replace the recovery key with a new one and new shares.
    Rotate(CeremonyArgs),
}

/// Ceremony parameters.
#[derive(Debug, Args)]
pub struct CeremonyArgs {
    /// Number of custodians (N).
    #[arg(long = "shares", value_name = "N")]
    pub count: u32,
    /// Shares needed to rebuild the key (M), at least 2.
    #[arg(long, value_name = "M")]
    pub threshold: u32,
    /// A new directory for the share files.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}
