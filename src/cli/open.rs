//! The commands that read archives (`verify`, `decrypt`, `restore`, `recover`), and the
//! signing keys each of them trusts.
//!
//! Contents are released, and `verify` exits 0, only when the archive's signature verifies
//! under a trusted key (see `jobs::signature`). The trusted keys are this appliance's own
//! signing keys (every generation its HSM or TPM holds), the `--public-key` files, and the
//! keys recorded in the custodians' share files (checked under the rebuilt recovery key).
//! A restore or a file output is published only after the check. Standard output cannot be
//! taken back, so for `--output -` the archive is first copied to a private, nameless spool
//! file while its structure and signature are checked, and decrypted from there afterwards.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::args::{DecryptArgs, RecoverArgs, RestoreArgs, TrustArgs};
use super::audit::audit;
use super::commands::input;
use super::output::write_output;
use super::prompt::prompt_shares;
use super::report;
use crate::config::Config;
use crate::format::signature::PublicKey;
use crate::harden::harden_process;
use crate::jobs::signature::{verify_keyless, Trust};
use crate::jobs::{open, read, recovery, restore, JobError};
use crate::keys::recovery::RecoveryIdentity;
use crate::keys::{open_device, Device, SlotIdentity};
use crate::payload::unpack::UnpackOptions;
use crate::progress::{Meter, Metered, Ticker, Total};

/// `verify`: keyless (structure and signature), or a full keyed read.
pub fn verify_cmd(
    config_path: &Path,
    archive: &Path,
    from: Option<&str>,
    keyless: bool,
    public_keys: &[PathBuf],
    json: bool,
) -> Result<(), JobError> {
    let mut trust = Trust::new();
    add_files(&mut trust, public_keys)?;
    if keyless {
        // No HSM, TPM or key: with --from, only the config's [targets] section (a URL needs
        // no config at all) and the target's credentials.
        let inp = match from {
            Some(from) => {
                let section = Config::load_targets(config_path, !from.contains("://"))?;
                super::targets::open_remote(&section, from, archive)?
            }
            None => input(archive)?,
        };
        let (meter, ticker) = reading("verify", archive, from.is_some());
        let s = verify_keyless(Metered::new(inp, &meter), &trust);
        drop(ticker);
        report::verified_keyless(&s?, json);
        return Ok(());
    }
    let cfg = Config::load(config_path)?;
    let mut device = open_device(&cfg.keys)?;
    add_device(&mut trust, device.as_mut())?;
    let inp = super::targets::input_from(config_path, from, archive, input)?;
    let (meter, ticker) = reading("verify", archive, from.is_some());
    let mut inp = Metered::new(inp, &meter);
    let head = open::read_head(&mut inp)?;
    trust.precheck(&head.header)?;
    let (reader, _) = open::open_head(head, inp, &mut [device.as_mut() as &mut dyn SlotIdentity])?;
    let s = read::verify(reader, &trust);
    drop(ticker);
    report::verified(&s?, json);
    Ok(())
}

/// `decrypt`: the payload to a new file or standard output.
pub fn decrypt_cmd(config_path: &Path, a: DecryptArgs, json: bool) -> Result<(), JobError> {
    let mut trust = Trust::new();
    add_files(&mut trust, &a.trust.public_keys)?;
    let mut rec = None;
    if !a.shares.is_empty() {
        rec = Some(recovery_opener(&a.shares, &mut trust)?);
    }
    let mut device = match rec {
        Some(_) => Config::load(config_path)
            .ok()
            .and_then(|c| open_device(&c.keys).ok()),
        None => Some(open_device(&Config::load(config_path)?.keys)?),
    };
    if let Some(d) = device.as_mut() {
        add_device(&mut trust, d.as_mut())?;
    }
    accept_forged(&a.trust, &mut trust, &a.archive);
    let (meter, ticker) = reading("decrypt", &a.archive, false);
    let inp: Box<dyn Read + '_> = Box::new(Metered::new(input(&a.archive)?, &meter));
    let mut inp = spool_for(&a.output, inp, &trust)?;
    let head = open::read_head(&mut inp)?;
    precheck_around_open(&trust, rec.is_some(), &head)?;
    let (mut rec_c, indexes) = rec.map_or((None, String::new()), |(r, i)| (Some(r), i));
    let mut cs = custodians(&mut device, rec_c.as_mut());
    let (reader, opened_by) = open::open_head(head, inp, &mut cs)?;
    trust.precheck(reader.header())?;
    if opened_by == "recovery" {
        audit(&format!(
            "decrypt of archive {} ({} of appliance {}) to {} with recovery shares {indexes}",
            reader.header().archive_id_hex(),
            reader.header().kind.name(),
            reader.header().appliance_id,
            a.output.display()
        ));
    }
    let s = write_output(&a.output, a.replace, |w| read::decrypt(reader, w, &trust));
    drop(ticker);
    report::decrypted(&s?, &a.output, json);
    Ok(())
}

/// `restore`: a system or video archive into a new directory.
pub fn restore_cmd(config_path: &Path, a: RestoreArgs, json: bool) -> Result<(), JobError> {
    let archive = a.archive.clone().unwrap_or_default();
    let mut trust = Trust::new();
    add_files(&mut trust, &a.trust.public_keys)?;
    let mut rec = None;
    if !a.shares.is_empty() {
        rec = Some(recovery_opener(&a.shares, &mut trust)?);
    }
    // With shares, a missing token or KEK is expected (replacement appliance): skip the device.
    let mut device = match (
        Config::load(config_path).map(|c| open_device(&c.keys)),
        rec.is_some(),
    ) {
        (Ok(Ok(d)), _) => Some(d),
        (Ok(Err(_)) | Err(_), true) => None,
        (Ok(Err(e)), false) => return Err(e.into()),
        (Err(e), false) => return Err(e.into()),
    };
    if let Some(d) = device.as_mut() {
        add_device(&mut trust, d.as_mut())?;
    }
    accept_forged(&a.trust, &mut trust, &archive);
    let (mut rec_c, indexes) = rec.map_or((None, String::new()), |(r, i)| (Some(r), i));
    let with_shares = rec_c.is_some();
    let mut cs = custodians(&mut device, rec_c.as_mut());
    if a.kind.is_some() {
        if with_shares {
            audit(&format!(
                "restore of video point {} to {} with recovery shares {indexes}",
                a.at.as_deref().unwrap_or("(newest)"),
                a.to.display()
            ));
        }
        let opts = crate::jobs::videos::restore::VideoRestoreOptions {
            at: a.at.clone(),
            only: a.only.clone(),
            no_sync: a.no_sync,
        };
        return super::videos::restore_point(
            config_path,
            a.from.as_deref(),
            &opts,
            &a.to,
            &mut cs,
            &trust,
            json,
        );
    }
    let inp = super::targets::input_from(config_path, a.from.as_deref(), &archive, input)?;
    let (meter, ticker) = reading("restore", &archive, a.from.is_some());
    let mut inp = Metered::new(inp, &meter);
    let head = open::read_head(&mut inp)?;
    precheck_around_open(&trust, with_shares, &head)?;
    let (reader, opened_by) = open::open_head(head, inp, &mut cs)?;
    trust.precheck(reader.header())?;
    if opened_by == "recovery" {
        audit(&format!(
            "restore of archive {} ({} of appliance {}) to {} with recovery shares {indexes}",
            reader.header().archive_id_hex(),
            reader.header().kind.name(),
            reader.header().appliance_id,
            a.to.display()
        ));
    }
    let opts = UnpackOptions {
        keep_setuid: a.keep_setid,
        skip_xattrs: a.skip_xattrs.clone(),
        no_sync: a.no_sync,
    };
    let s = restore::restore_with(reader, &a.to, &trust, opts);
    drop(ticker);
    report::restored(&s?, json);
    Ok(())
}

/// `recover`: break the glass with the custodians' shares alone.
pub fn recover_cmd(a: RecoverArgs, json: bool) -> Result<(), JobError> {
    if a.shares.is_empty() && a.archive == Path::new("-") {
        return Err(JobError::refused(
            "reading the shares",
            crate::jobs::error::Policy::SharesNeedFiles,
            "the archive comes from standard input, so the shares cannot be typed there; pass them with --share FILE",
        ));
    }
    let mut trust = Trust::new();
    add_files(&mut trust, &a.trust.public_keys)?;
    // Read the header first, so that a bad archive fails before custodians type anything.
    let mut inp = input(&a.archive)?;
    let head = open::read_head(&mut inp)?;
    if a.shares.is_empty() {
        // Typed shares carry no signing keys: refuse an archive that cannot pass before
        // custodians type anything.
        let mut early = Trust::new();
        add_files(&mut early, &a.trust.public_keys)?;
        if a.trust.accept_forged {
            early.accept_forged();
        }
        early.precheck(&head.header)?;
    }
    let (mut rec, indexes) = recovery_opener(&a.shares, &mut trust)?;
    accept_forged(&a.trust, &mut trust, &a.archive);
    let header = head.header.clone();
    // The bar starts once the custodians have typed their shares.
    let (meter, ticker) = reading("recover", &a.archive, false);
    let inp = Metered::new(inp, &meter);
    let inp: Box<dyn Read + '_> = match &a.output {
        Some(out) if out == Path::new("-") => {
            let spool = spool_checked(Prefixed::new(&head, inp), &trust)?;
            let mut spool = io::BufReader::with_capacity(1 << 20, spool);
            open::read_head(&mut spool)?;
            Box::new(spool)
        }
        _ => Box::new(inp),
    };
    let (reader, _) = open::open_head(head, inp, &mut [&mut rec as &mut dyn SlotIdentity])?;
    // After the slot opened: wrong shares get their own, clearer error first.
    trust.precheck(&header)?;
    audit(&format!(
        "break-the-glass: archive {} ({} of appliance {}, created {}) opened with recovery shares {indexes}",
        header.archive_id_hex(),
        header.kind.name(),
        header.appliance_id,
        crate::jobs::read::created_rfc3339(header.created_unix)
            .unwrap_or_else(|| format!("unix:{}", header.created_unix))
    ));
    if let Some(dir) = a.to {
        let opts = UnpackOptions {
            keep_setuid: a.keep_setid,
            skip_xattrs: a.skip_xattrs.clone(),
            no_sync: false,
        };
        let s = restore::restore_with(reader, &dir, &trust, opts);
        drop(ticker);
        report::restored(&s?, json);
    } else if let Some(output) = a.output {
        let s = write_output(&output, a.replace, |w| read::decrypt(reader, w, &trust));
        drop(ticker);
        report::decrypted(&s?, &output, json);
    }
    Ok(())
}

/// A progress bar for reading `archive`, drawn on a terminal only: a percentage and an ETA
/// when the archive is a local file (its size is the total), a spinner otherwise. Dropping
/// the ticker clears the bar, so it goes before the summary.
fn reading(label: &'static str, archive: &Path, on_target: bool) -> (Arc<Meter>, Ticker) {
    let meter = Arc::new(Meter::default());
    let ticker = Ticker::start(label, meter.clone(), Total::of_archive(archive, on_target));
    (meter, ticker)
}

/// Without shares, refuses an archive whose signer is not trusted before any key is used.
/// With shares, the check waits until the slot opened (see [`Trust::precheck`] after
/// `open_head`), so that shares of another ceremony, which vouch for other keys, get the
/// clearer "another recovery key" error.
fn precheck_around_open(
    trust: &Trust,
    with_shares: bool,
    head: &crate::stream::head::ArchiveHead,
) -> Result<(), JobError> {
    if with_shares {
        return Ok(());
    }
    trust.precheck(&head.header)
}

fn custodians<'a>(
    device: &'a mut Option<Box<dyn Device>>,
    recovery: Option<&'a mut RecoveryIdentity>,
) -> Vec<&'a mut dyn SlotIdentity> {
    let mut v: Vec<&'a mut dyn SlotIdentity> = Vec::new();
    if let Some(d) = device.as_mut() {
        v.push(d.as_mut());
    }
    if let Some(r) = recovery {
        v.push(r);
    }
    v
}

/// Trusts this appliance's signing keys, every generation its device holds. A device without
/// a signing key (not initialised) adds none.
fn add_device(trust: &mut Trust, device: &mut dyn Device) -> Result<(), JobError> {
    let name = device.name();
    if let Ok(keys) = device.signing_keys() {
        for k in keys {
            trust.add(k, format!("this appliance's {name} signing key"));
        }
    }
    Ok(())
}

/// Trusts the keys of `--public-key` files (PEM, one or several keys per file, or DER).
fn add_files(trust: &mut Trust, files: &[PathBuf]) -> Result<(), JobError> {
    for f in files {
        for key in load_public_keys(f)? {
            trust.add(key, format!("--public-key {}", f.display()));
        }
    }
    Ok(())
}

/// Reads every public key of a PEM file (several `BEGIN PUBLIC KEY` blocks allowed) or one DER.
pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, JobError> {
    crate::jobs::signature::load_public_keys(path)
}

/// Rebuilds the recovery key from share files (or typed shares), and trusts the signing keys
/// the shares vouch for.
fn recovery_opener(
    files: &[PathBuf],
    trust: &mut Trust,
) -> Result<(RecoveryIdentity, String), JobError> {
    harden_process();
    let shares = if files.is_empty() {
        prompt_shares()?
    } else {
        files
            .iter()
            .map(|f| recovery::read_share_file(f))
            .collect::<Result<Vec<_>, _>>()?
    };
    let secret = recovery::rebuild(&shares)?;
    for k in recovery::vouched_signers(&secret, &shares)? {
        trust.add(k, "the custodians' shares");
    }
    Ok((RecoveryIdentity(secret), recovery::share_indexes(&shares)))
}

/// Applies `--accept-unverified-may-be-forged`, loudly and audited.
fn accept_forged(a: &TrustArgs, trust: &mut Trust, archive: &Path) {
    if !a.accept_forged {
        return;
    }
    trust.accept_forged();
    audit(&format!(
        "{} is opened with --accept-unverified-may-be-forged: its contents are released even if its signature cannot be verified, and MAY BE FORGED (trusted keys: {})",
        archive.display(),
        trust.key_ids().join(", ")
    ));
}

/// For standard output, a checked spool of the archive; otherwise the input as it is.
fn spool_for<'a>(
    output: &Path,
    inp: Box<dyn Read + 'a>,
    trust: &Trust,
) -> Result<Box<dyn Read + 'a>, JobError> {
    if output != Path::new("-") {
        return Ok(inp);
    }
    Ok(Box::new(io::BufReader::with_capacity(
        1 << 20,
        spool_checked(inp, trust)?,
    )))
}

/// Copies the archive into a nameless file in the temporary directory (mode 0600, gone when
/// closed) while checking its structure and signature against `trust`; returns the spool,
/// rewound, only when the check passed. The spool holds ciphertext only.
fn spool_checked(inp: impl Read, trust: &Trust) -> Result<File, JobError> {
    let dir = std::env::temp_dir();
    let mut spool = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_TMPFILE.bits())
        .open(&dir)
        .map_err(|err| JobError::Io {
            what: format!(
                "creating a spool file in {} (standard output is written only after the whole archive was checked; set TMPDIR to a directory with room for the archive)",
                dir.display()
            ),
            err,
        })?;
    let writer = spool
        .try_clone()
        .map_err(|e| JobError::io("opening the spool file", e))?;
    let mut tee = Tee {
        inner: inp,
        copy: io::BufWriter::with_capacity(1 << 20, writer),
        err: None,
    };
    let checked = verify_keyless(&mut tee, trust);
    let Tee { copy, err, .. } = tee;
    if let Some(err) = err {
        return Err(JobError::io("writing the spool file", err));
    }
    copy.into_inner()
        .map_err(|e| JobError::io("writing the spool file", e.into_error()))?;
    let summary = checked?;
    if summary.signature.to_string().starts_with("NOT VERIFIED") {
        eprintln!("offbox: warning: {}", summary.signature);
    }
    spool
        .rewind()
        .map_err(|e| JobError::io("rewinding the spool file", e))?;
    Ok(spool)
}

/// Reads through, keeping a copy of every byte read.
struct Tee<R, W: Write> {
    inner: R,
    copy: W,
    err: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let msg = e.to_string();
            self.err = Some(e);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

/// The header block already read, followed by the rest of the input.
struct Prefixed<R> {
    head: io::Cursor<Vec<u8>>,
    rest: R,
}

impl<R> Prefixed<R> {
    fn new(head: &crate::stream::head::ArchiveHead, rest: R) -> Self {
        let mut bytes = head.encoded.clone();
        bytes.extend_from_slice(&head.mac);
        Prefixed {
            head: io::Cursor::new(bytes),
            rest,
        }
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.rest.read(buf)
    }
}
