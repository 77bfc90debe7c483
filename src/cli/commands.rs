//! Running each command: load what it needs, call the job, report.

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command as Process, Stdio};
use std::sync::Arc;

use super::args::*;
use super::report;
use crate::config::Config;
use crate::format::signature::PublicKey;
use crate::format::ArchiveKind;
use crate::harden::harden_process;
use crate::jobs::backup::{self, BackupOptions, Payload};
use crate::jobs::signature::Expected;
use crate::jobs::{open, read, recovery, restore, signature, JobError};
use crate::keys::recovery::{RecoveryCustodian, RecoveryPublicKey};
use crate::keys::{open_device, Device, KeyCustodian, KeyError};
use crate::payload::exclude::Excludes;
use crate::progress::{Meter, Ticker};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), JobError> {
    let json = cli.json;
    let config_path = Config::resolve_path(cli.config.as_deref());
    match cli.command {
        Command::Keys(k) => keys(&config_path, k, json),
        Command::Backup(BackupCmd::Create(a)) => backup_create(&config_path, a, json),
        Command::Restore(a) => restore_cmd(&config_path, a, json),
        Command::Target(t) => super::targets::target_cmd(&config_path, t, json),
        Command::Prune(a) => super::targets::prune_cmd(&config_path, a, json),
        Command::Backup(BackupCmd::List(a)) => super::targets::list_cmd(&config_path, a, json),
        Command::Verify {
            archive,
            from,
            keyless,
            public_key,
        } => {
            let given = public_key.as_deref().map(load_public_key).transpose()?;
            if keyless {
                let key = given.expect("clap requires --public-key with --keyless");
                let s = signature::verify_keyless(input(&archive)?, &key)?;
                report::verified_keyless(&s, json);
                return Ok(());
            }
            let cfg = Config::load(&config_path)?;
            let mut device = open_device(&cfg)?;
            let key = match given {
                Some(key) => Expected {
                    key,
                    explicit: true,
                },
                None => Expected {
                    key: device.signing_key()?,
                    explicit: false,
                },
            };
            let inp = super::targets::input_from(&config_path, from.as_deref(), &archive, input)?;
            let reader = open::open(inp, &mut [device.as_mut() as &mut dyn KeyCustodian])?;
            let s = read::verify(reader, Some(&key))?;
            report::verified(&s, json);
            Ok(())
        }
        Command::Decrypt {
            archive,
            output,
            shares,
            public_key,
        } => {
            let mut recovery = None;
            let mut indexes = String::new();
            if !shares.is_empty() {
                let (r, idx) = recovery_opener(&shares)?;
                recovery = Some(r);
                indexes = idx;
            }
            let mut device = if recovery.is_some() {
                Config::load(&config_path)
                    .ok()
                    .and_then(|c| open_device(&c).ok())
            } else {
                Some(open_device(&Config::load(&config_path)?)?)
            };
            let key = signer_key(public_key.as_deref(), &mut device)?;
            let mut cs = custodians(&mut device, recovery.as_mut());
            let (reader, opened_by) = open::open_by(input(&archive)?, &mut cs)?;
            if opened_by == "recovery" {
                recovery::audit(&format!(
                    "decrypt of archive {} ({} of appliance {}) to {} with recovery shares {indexes}",
                    reader.header().archive_id_hex(),
                    reader.header().kind.name(),
                    reader.header().appliance_id,
                    output.display()
                ));
            }
            let s = write_output(&output, |w| read::decrypt(reader, w, key.as_ref()))?;
            report::decrypted(&s, &output, json);
            Ok(())
        }
        Command::Recover(a) => recover(a, json),
        Command::Recovery(r) => recovery_cmd(&config_path, r, json),
    }
}

fn keys(config_path: &Path, cmd: KeysCmd, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let mut device = open_device(&cfg)?;
    match cmd {
        KeysCmd::Init { replace } => {
            let v = device.init(replace)?;
            report::key_created(&v, json);
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
                return Err(JobError::Io {
                    what: format!("retiring key-encryption key version {version}"),
                    err: io::Error::other(format!(
                        "not done: every archive whose device slot uses version {version} could then be opened ONLY through its recovery slot, with the custodians' shares. Check which archives still need it (their `verify` output names the slot), then run again with --yes"
                    )),
                });
            }
            device.retire(version)?;
            report::retired(version, json);
        }
        KeysCmd::ExportPublic { output } => {
            let pem = device.signing_key()?.to_pem();
            write_output(&output, |w| {
                w.write_all(pem.as_bytes())
                    .map_err(|e| JobError::io("writing the public key", e))
            })?;
        }
    }
    Ok(())
}

fn custodians<'a>(
    device: &'a mut Option<Box<dyn Device>>,
    recovery: Option<&'a mut RecoveryCustodian>,
) -> Vec<&'a mut dyn KeyCustodian> {
    let mut v: Vec<&'a mut dyn KeyCustodian> = Vec::new();
    if let Some(d) = device.as_mut() {
        v.push(d.as_mut());
    }
    if let Some(r) = recovery {
        v.push(r);
    }
    v
}

fn backup_create(config_path: &Path, a: CreateArgs, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    // An off-box target is connected (and guarded) before any key or payload is touched.
    let mut target = super::targets::connect_to(&cfg, a.to.as_deref())?;
    if target.is_none() && a.output.as_deref() != Some(Path::new("-")) {
        return Err(JobError::Io {
            what: format!(
                "writing the archive to {}",
                a.output.as_deref().unwrap_or(Path::new("")).display()
            ),
            err: io::Error::new(
                io::ErrorKind::Unsupported,
                "offbox writes archives to standard output (--output -) or to an off-box target, never to a local file: a backup kept on the appliance dies with it",
            ),
        });
    }
    let stdout = io::stdout();
    if target.is_none() && stdout.is_terminal() {
        return Err(JobError::Io {
            what: "writing the archive to standard output".into(),
            err: io::Error::new(
                io::ErrorKind::Unsupported,
                "standard output is a terminal; redirect it to a file or pipe it to a transport",
            ),
        });
    }
    let recovery_pk = match &cfg.recovery.public_key {
        Some(pk) => Some(RecoveryPublicKey::parse(pk).map_err(KeyError::from)?),
        None if cfg.recovery.allow_without_recovery => None,
        None => return Err(JobError::NoRecoveryKey),
    };
    let kind = match a.kind {
        KindArg::System => ArchiveKind::System,
        KindArg::Secrets => ArchiveKind::Secrets,
        KindArg::Videos => ArchiveKind::Videos,
    };
    let payload = match kind {
        ArchiveKind::System | ArchiveKind::Videos => Payload::Tree {
            sources: if a.sources.is_empty() {
                cfg.backup.sources.clone()
            } else {
                a.sources.clone()
            },
            excludes: Excludes::new(&cfg.backup.exclude),
        },
        ArchiveKind::Secrets => Payload::Stream(secrets_source(&cfg, &a.sources)?),
    };
    let mut device = open_device(&cfg)?;
    let mut rec = recovery_pk.map(RecoveryCustodian::for_wrapping);
    let mut others: Vec<&mut dyn KeyCustodian> = Vec::new();
    if let Some(r) = rec.as_mut() {
        others.push(r);
    }
    let meter = Arc::new(Meter::default());
    let ticker = Ticker::start("backup", meter.clone());
    let opts = BackupOptions {
        kind,
        payload,
        appliance_id: cfg.appliance_id(),
        segment_size: cfg.backup.segment_size,
        zstd_level: cfg.backup.zstd_level,
        threads: cfg.backup.threads,
    };
    if let Some(t) = target.as_mut() {
        let r =
            super::targets::backup_to(t.as_mut(), device.as_mut(), &mut others, opts, meter, json);
        drop(ticker);
        return r;
    }
    let out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let result = backup::create(device.as_mut(), &mut others, opts, out, meter);
    drop(ticker);
    let (mut out, summary) = result?;
    out.flush()
        .map_err(|e| JobError::io("writing the archive", e))?;
    report::backed_up(&summary, json);
    Ok(())
}

/// The secrets payload: `--source FILE`, else the export command, else the configured file.
fn secrets_source(cfg: &Config, sources: &[PathBuf]) -> Result<Box<dyn Read>, JobError> {
    let file = match sources {
        [one] => Some(one.clone()),
        [] => None,
        _ => {
            return Err(JobError::Export(
                "a secrets backup takes one --source FILE (or the export command)".into(),
            ))
        }
    };
    if file.is_none() && !cfg.secrets.export_command.is_empty() {
        let argv = &cfg.secrets.export_command;
        let mut child = Process::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| JobError::Export(format!("cannot start {}: {e}", argv[0])))?;
        let stdout = child.stdout.take().expect("piped stdout");
        return Ok(Box::new(ExportReader {
            child,
            stdout,
            name: argv[0].clone(),
        }));
    }
    let Some(path) = file.or_else(|| cfg.secrets.file.clone()) else {
        return Err(JobError::Export(
            "no source: set secrets.export_command or secrets.file, or pass --source FILE".into(),
        ));
    };
    let f = File::open(&path)
        .map_err(|e| JobError::Export(format!("cannot open {}: {e}", path.display())))?;
    Ok(Box::new(f))
}

/// Streams an export command's output, and turns its failure into a read error so that the
/// archive is never finished over a failed export.
struct ExportReader {
    child: Child,
    stdout: ChildStdout,
    name: String,
}

impl Read for ExportReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let status = self.child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "the export command {} failed ({status}); the archive was not finished",
                    self.name
                )));
            }
        }
        Ok(n)
    }
}

fn restore_cmd(config_path: &Path, a: RestoreArgs, json: bool) -> Result<(), JobError> {
    let mut rec = None;
    let mut indexes = String::new();
    if !a.shares.is_empty() {
        let (r, idx) = recovery_opener(&a.shares)?;
        rec = Some(r);
        indexes = idx;
    }
    // With shares, a missing token or KEK is expected (replacement appliance): skip the device.
    let mut device = match (
        Config::load(config_path).map(|c| open_device(&c)),
        rec.is_some(),
    ) {
        (Ok(Ok(d)), _) => Some(d),
        (Ok(Err(_)) | Err(_), true) => None,
        (Ok(Err(e)), false) => return Err(e.into()),
        (Err(e), false) => return Err(e.into()),
    };
    let key = signer_key(a.public_key.as_deref(), &mut device)?;
    let mut cs = custodians(&mut device, rec.as_mut());
    let inp = super::targets::input_from(config_path, a.from.as_deref(), &a.archive, input)?;
    let (reader, opened_by) = open::open_by(inp, &mut cs)?;
    if opened_by == "recovery" {
        recovery::audit(&format!(
            "restore of archive {} ({} of appliance {}) to {} with recovery shares {indexes}",
            reader.header().archive_id_hex(),
            reader.header().kind.name(),
            reader.header().appliance_id,
            a.to.display()
        ));
    }
    let s = restore::restore(reader, &a.to, key.as_ref())?;
    report::restored(&s, json);
    Ok(())
}

/// The key to check signatures with: the given file, else the device's signing key.
fn signer_key(
    file: Option<&Path>,
    device: &mut Option<Box<dyn Device>>,
) -> Result<Option<Expected>, JobError> {
    if let Some(f) = file {
        return Ok(Some(Expected {
            key: load_public_key(f)?,
            explicit: true,
        }));
    }
    Ok(device
        .as_mut()
        .and_then(|d| d.signing_key().ok())
        .map(|key| Expected {
            key,
            explicit: false,
        }))
}

fn load_public_key(path: &Path) -> Result<PublicKey, JobError> {
    let bytes = fs::read(path).map_err(|err| JobError::Io {
        what: format!("reading public key {}", path.display()),
        err,
    })?;
    PublicKey::from_pem_or_der(&bytes).map_err(|e| JobError::Signature(e.to_string()))
}

fn recovery_opener(files: &[PathBuf]) -> Result<(RecoveryCustodian, String), JobError> {
    harden_process();
    let shares = if files.is_empty() {
        recovery::prompt_shares()?
    } else {
        files
            .iter()
            .map(|f| recovery::read_share_file(f))
            .collect::<Result<Vec<_>, _>>()?
    };
    let secret = recovery::rebuild(&shares)?;
    Ok((
        RecoveryCustodian::for_opening(secret),
        recovery::share_indexes(&shares),
    ))
}

fn recover(a: RecoverArgs, json: bool) -> Result<(), JobError> {
    if a.shares.is_empty() && a.archive == Path::new("-") {
        return Err(JobError::Io {
            what: "reading the shares".into(),
            err: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the archive comes from standard input, so the shares cannot be typed there; pass them with --share FILE",
            ),
        });
    }
    // Read the header first, so that a bad archive fails before custodians type anything.
    let mut inp = input(&a.archive)?;
    let head = open::read_head(&mut inp)?;
    let (mut rec, indexes) = recovery_opener(&a.shares)?;
    let header = head.header.clone();
    let (reader, _) = open::open_head(head, inp, &mut [&mut rec as &mut dyn KeyCustodian])?;
    recovery::audit(&format!(
        "break-the-glass: archive {} ({} of appliance {}, created {}) opened with recovery shares {indexes}",
        header.archive_id_hex(),
        header.kind.name(),
        header.appliance_id,
        header.created_unix
    ));
    let key = a
        .public_key
        .as_deref()
        .map(load_public_key)
        .transpose()?
        .map(|key| Expected {
            key,
            explicit: true,
        });
    if let Some(dir) = a.to {
        let s = restore::restore(reader, &dir, key.as_ref())?;
        report::restored(&s, json);
    } else if let Some(output) = a.output {
        let s = write_output(&output, |w| read::decrypt(reader, w, key.as_ref()))?;
        report::decrypted(&s, &output, json);
    }
    Ok(())
}

fn recovery_cmd(config_path: &Path, cmd: RecoveryCmd, json: bool) -> Result<(), JobError> {
    match cmd {
        RecoveryCmd::Init(c) => ceremony(config_path, c, false, json),
        RecoveryCmd::Rotate(c) => ceremony(config_path, c, true, json),
        RecoveryCmd::VerifyShares { shares } => {
            harden_process();
            let shares = if shares.is_empty() {
                recovery::prompt_shares()?
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
        return Err(JobError::Io {
            what: "recovery init".into(),
            err: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the config already has a recovery public key; use `offbox recovery rotate` to replace it",
            ),
        });
    }
    if old.is_none() && rotate {
        return Err(KeyError::from(crate::keys::recovery::RecoveryError::NoPublicKey).into());
    }
    let h = harden_process();
    let result = recovery::ceremony(&c.out, c.count, c.threshold)?;
    let new = RecoveryPublicKey::parse(&result.public_key).map_err(KeyError::from)?;
    recovery::record_public_key(config_path, &new, old.as_ref())?;
    report::ceremony(&result, old.as_ref(), &h, config_path, json);
    Ok(())
}

fn input(path: &Path) -> Result<Box<dyn Read>, JobError> {
    if path == Path::new("-") {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = File::open(path).map_err(|err| JobError::Io {
        what: format!("opening archive {}", path.display()),
        err,
    })?;
    Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
}

/// Writes to stdout, or to a new file through a temporary name that is renamed only on
/// success and removed on failure.
fn write_output<T>(
    output: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<T, JobError>,
) -> Result<T, JobError> {
    if output == Path::new("-") {
        let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
        let v = f(&mut out)?;
        out.flush()
            .map_err(|e| JobError::io("writing standard output", e))?;
        return Ok(v);
    }
    if output.exists() {
        return Err(JobError::Io {
            what: format!("writing {}", output.display()),
            err: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the file exists; give a new name",
            ),
        });
    }
    let tmp = PathBuf::from(format!("{}.offbox-partial", output.display()));
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|err| JobError::Io {
            what: format!("creating {}", tmp.display()),
            err,
        })?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let result = f(&mut w).and_then(|v| {
        let file = w
            .into_inner()
            .map_err(|e| JobError::io("writing the output", e.into_error()))?;
        file.sync_all()
            .map_err(|e| JobError::io("writing the output", e))?;
        Ok(v)
    });
    match result {
        Ok(v) => {
            fs::rename(&tmp, output).map_err(|e| JobError::io("publishing the output", e))?;
            Ok(v)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}
