//! Running each command: load what it needs, call the job, report.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::args::*;
use super::output::write_output;
use super::prompt::prompt_shares;
use super::report;
use crate::config::Config;
use crate::format::ArchiveKind;
use crate::harden::{harden_process, no_core_dumps};
use crate::jobs::backup;
use crate::jobs::error::Policy;
use crate::jobs::{publish, recovery, JobError};
use crate::keys::recovery::RecoveryPublicKey;
use crate::keys::{open_device, KeyError, SlotRecipient};
use crate::progress::{Meter, Ticker, Total};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), JobError> {
    // Before anything else: every command may hold a key, a PIN, a password or plaintext
    // (the target commands too: the SMB password, the SSH private key), none of which may
    // end up in a core file.
    if !no_core_dumps() {
        eprintln!("offbox: warning: core dumps could not be turned off");
    }
    let json = cli.json;
    let config_path = Config::resolve_path(cli.config.as_deref());
    match cli.command {
        Command::Keys(k) => keys(&config_path, k, json),
        Command::Backup(BackupCmd::Create(a)) => backup_create(&config_path, a, json),
        Command::Restore(a) => super::open::restore_cmd(&config_path, a, json),
        Command::Target(t) => super::targets::target_cmd(&config_path, t, json),
        Command::Prune(a) => super::targets::prune_cmd(&config_path, a, json),
        Command::Notify(n) => super::notify::notify_cmd(&config_path, n, json),
        Command::Run(a) => super::service::run_cmd(&config_path, a, json),
        Command::Watch => super::service::watch_cmd(&config_path, json),
        Command::Status => super::service::status_cmd(&config_path, json),
        Command::Selfcheck => super::selfcheck::selfcheck_cmd(&config_path, json),
        Command::Completions(a) => super::completions::completions_cmd(a),
        Command::SshFdpass { socket } => ssh_fdpass(&socket),
        Command::Backup(BackupCmd::List(a)) => super::targets::list_cmd(&config_path, a, json),
        Command::Verify {
            archive,
            from,
            keyless,
            public_keys,
        } => super::open::verify_cmd(
            &config_path,
            &archive,
            from.as_deref(),
            keyless,
            &public_keys,
            json,
        ),
        Command::Decrypt(a) => super::open::decrypt_cmd(&config_path, a, json),
        Command::Recover(a) => super::open::recover_cmd(a, json),
        Command::Recovery(r) => recovery_cmd(&config_path, r, json),
    }
}

fn keys(config_path: &Path, cmd: KeysCmd, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let mut device = open_device(&cfg.keys)?;
    match cmd {
        KeysCmd::Init { replace, yes } => {
            if replace && !yes {
                let versions: Vec<String> = device
                    .status()?
                    .versions
                    .iter()
                    .map(|v| v.version.to_string())
                    .collect();
                return Err(JobError::NeedsConfirmation(format!(
                    "`keys init --replace` was not done: it destroys every key-encryption key version ({}) and the private signing key. Every archive made so far could then be opened ONLY through its recovery slot, with the custodians' shares; their signatures still verify (the public signing keys are kept). Afterwards run `offbox recovery rotate`, so that the new shares record the new signing key. Run again with --replace --yes to do it",
                    if versions.is_empty() { "none yet".to_string() } else { versions.join(", ") }
                )));
            }
            let v = device.init(replace)?;
            report::key_created(&v, json);
            if replace {
                eprintln!("offbox: the signing key was replaced; run `offbox recovery rotate` now, so that break the glass trusts the archives signed from now on");
            }
        }
        KeysCmd::Status => {
            let s = device.status()?;
            report::status(&s, &cfg, json);
        }
        KeysCmd::Rotate => {
            let v = device.rotate()?;
            report::key_created(&v, json);
        }
        KeysCmd::Retire { version, yes } => {
            if !yes {
                let plan = crate::jobs::retire::dry_run(&cfg, device.as_mut(), version)?;
                report::retire_plan(&plan, json);
                return Ok(());
            }
            device.retire(version)?;
            report::retired(version, json);
        }
        KeysCmd::ExportPublic { output } => {
            let key = device.signing_key()?;
            let pem = key.to_pem();
            write_output(&output, false, |w| {
                w.write_all(pem.as_bytes())
                    .map_err(|e| JobError::io("writing the public key", e))
            })?;
            let id = crate::format::header::hex(&key.key_id());
            report::exported_public(&id, &output, json);
        }
    }
    Ok(())
}

fn backup_create(config_path: &Path, a: CreateArgs, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    if a.kind == KindArg::Videos {
        return backup_videos(&cfg, a, json);
    }
    if a.rehash || a.full {
        return Err(JobError::refused(
            "backup create",
            Policy::Usage,
            "--rehash and --full apply to --kind videos only",
        ));
    }
    // One backup or prune of this appliance at a time; exit 75 when another run holds it.
    let lock = super::targets::run_lock(&cfg, a.wait)?;
    // An off-box target is connected (and guarded) on a thread of its own while the key
    // device opens and the random generator seeds itself, as `ssh` connects beside offbox
    // in a pipe; its failure is reported
    // before the device's, and the payload (a secrets export runs a command) is opened
    // only once both are ready.
    let mut opened = None;
    let mut target = match a.to.as_deref() {
        None => None,
        Some(to) => {
            let (target, device) = std::thread::scope(|s| {
                let connecting = s.spawn(|| super::targets::connect_to(&cfg, Some(to)));
                let device = open_device(&cfg.keys);
                crate::secret::seed_generator();
                (connecting.join(), device)
            });
            opened = Some(device);
            target.unwrap_or_else(|_| {
                Err(JobError::io(
                    "connecting the target",
                    io::Error::other("the connecting thread panicked"),
                ))
            })?
        }
    };
    if target.is_none() && a.output.as_deref() != Some(Path::new("-")) {
        return Err(JobError::refused(
            format!(
                "writing the archive to {}",
                a.output.as_deref().unwrap_or(Path::new("")).display()
            ),
            Policy::LocalOutput,
            "offbox writes archives to standard output (--output -) or to an off-box target, never to a local file: a backup kept on the appliance dies with it",
        ));
    }
    let stdout = io::stdout();
    if target.is_none() && stdout.is_terminal() {
        return Err(JobError::refused(
            "writing the archive to standard output",
            Policy::TerminalOutput,
            "standard output is a terminal; redirect it to a file or pipe it to a transport",
        ));
    }
    let mut prepared = publish::prepare(&cfg, archive_kind(a.kind), &a.sources)?;
    let mut device = match opened {
        Some(device) => device?,
        None => open_device(&cfg.keys)?,
    };
    let meter = Arc::new(Meter::default());
    let ticker = Ticker::start("backup", meter.clone(), progress_total(&prepared, &a));
    if let Some(t) = target.as_mut() {
        let r = prepared.publish_to(t.as_mut(), device.as_mut(), meter, &lock);
        drop(ticker);
        return super::targets::report_published(r?, json);
    }
    let mut rec = prepared.recipients();
    let mut others: Vec<&mut dyn SlotRecipient> = Vec::new();
    if let Some(r) = rec.as_mut() {
        others.push(r);
    }
    let out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let result = backup::create(device.as_mut(), &mut others, prepared.opts, out, meter);
    drop(ticker);
    let (mut out, summary) = result?;
    out.flush()
        .map_err(|e| JobError::io("writing the archive", e))?;
    report::backed_up(&summary, json);
    Ok(())
}

/// `backup create --kind videos`: to a target only, from the `[videos]` sources only.
fn backup_videos(cfg: &Config, a: CreateArgs, json: bool) -> Result<(), JobError> {
    crate::jobs::videos::backup::check_enabled(cfg)?;
    if a.output.is_some() || !a.sources.is_empty() {
        return Err(JobError::refused(
            "backup create --kind videos",
            Policy::Usage,
            "video backups go to a target (--to NAME|URL, or the default target) and read [videos] sources; --output and --source do not apply: each run builds on the previous one on its target",
        ));
    }
    let lock = super::targets::run_lock(cfg, a.wait)?;
    let opts = crate::jobs::videos::backup::VideoRunOptions {
        rehash: a.rehash,
        full: a.full,
    };
    super::videos::create(cfg, a.to.as_deref(), opts, &lock, json)
}

/// What the progress bar counts to: the sources of a tree (walked by the bar), the size of
/// a secrets export read from one file; a command's output is not known in advance.
fn progress_total(prepared: &publish::Prepared, a: &CreateArgs) -> Total {
    match (&prepared.opts.payload, a.sources.as_slice()) {
        (backup::Payload::Tree { sources, excludes }, _) => {
            let excludes = excludes.clone();
            Total::Walk(sources.clone(), Box::new(move |p| excludes.matches(p)))
        }
        (backup::Payload::Stream(_), [file]) => match std::fs::metadata(file) {
            Ok(m) if m.is_file() => Total::Bytes(m.len()),
            _ => Total::Unknown,
        },
        (backup::Payload::Stream(_) | backup::Payload::Chained(_), _) => Total::Unknown,
    }
}

/// The archive kind of `--kind`.
fn archive_kind(k: KindArg) -> ArchiveKind {
    match k {
        KindArg::System => ArchiveKind::System,
        KindArg::Secrets => ArchiveKind::Secrets,
        KindArg::Videos => ArchiveKind::Videos,
    }
}

fn recovery_cmd(config_path: &Path, cmd: RecoveryCmd, json: bool) -> Result<(), JobError> {
    match cmd {
        RecoveryCmd::Init(c) => ceremony(config_path, c, false, json),
        RecoveryCmd::Rotate(c) => ceremony(config_path, c, true, json),
        RecoveryCmd::VerifyShares { shares } => {
            harden_process();
            let shares = if shares.is_empty() {
                prompt_shares()?
            } else {
                shares
                    .iter()
                    .map(|f| recovery::read_share_file(f))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let secret = recovery::rebuild(&shares)?;
            let key_id = crate::format::header::hex(&secret.public().key_id());
            drop(secret);
            report::shares_ok(&key_id, &recovery::share_indexes(&shares), json);
            Ok(())
        }
    }
}

fn ceremony(config_path: &Path, c: CeremonyArgs, rotate: bool, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let old = cfg
        .recovery
        .public_key
        .as_deref()
        .map(RecoveryPublicKey::parse)
        .transpose()
        .map_err(KeyError::from)?;
    if old.is_some() && !rotate {
        return Err(JobError::refused(
            "recovery init",
            Policy::AlreadyConfigured,
            "the config already has a recovery public key; use `offbox recovery rotate` to replace it",
        ));
    }
    if old.is_none() && rotate {
        return Err(KeyError::from(crate::keys::recovery::RecoveryError::NoPublicKey).into());
    }
    // The shares record the appliance's signing keys, so that break the glass on a bare
    // machine can tell its archives from forged ones: the device must be initialised first.
    let signing_keys = open_device(&cfg.keys)
        .and_then(|mut d| d.signing_keys())
        .map_err(|e| JobError::CeremonyNeedsSigningKey(e.to_string()))?;
    let h = harden_process();
    let result = recovery::ceremony(&c.out, c.count, c.threshold, &signing_keys)?;
    let new = RecoveryPublicKey::parse(&result.public_key).map_err(KeyError::from)?;
    crate::config::record_public_key(config_path, &new, old.as_ref())?;
    report::ceremony(&result, old.as_ref(), &h, config_path, json);
    Ok(())
}

/// The archive file, or standard input for `-`.
pub(super) fn input(path: &Path) -> Result<Box<dyn Read>, JobError> {
    if path == Path::new("-") {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = File::open(path).map_err(|err| JobError::Io {
        what: format!("opening archive {}", path.display()),
        err,
    })?;
    // A small buffer for the header's few reads: the segment reads (1 MiB) are larger than
    // it and bypass it, where a buffer of a segment's size would copy every byte once more.
    Ok(Box::new(io::BufReader::with_capacity(64 << 10, f)))
}

/// `offbox ssh-fdpass SOCKET` (started by `ssh`, never by hand).
fn ssh_fdpass(socket: &std::path::Path) -> Result<(), JobError> {
    #[cfg(feature = "target-ssh")]
    return crate::targets::ssh::fdpass_relay(socket)
        .map_err(|e| JobError::io("handing the connection to ssh", e));
    #[cfg(not(feature = "target-ssh"))]
    return Err(JobError::io(
        "handing the connection to ssh",
        std::io::Error::other(format!(
            "this build has no ssh target ({})",
            socket.display()
        )),
    ));
}
