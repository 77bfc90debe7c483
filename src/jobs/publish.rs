//! One backup of one kind, from the config: the recovery key check, the payload (the
//! configured sources, or the secrets export), the options, and the stream to a target.
//! `backup create` and `offbox run` both go through here, so that a scheduled archive is
//! made exactly as a manual one.

use std::path::PathBuf;
use std::sync::Arc;

use super::backup::{BackupOptions, BackupSummary, Payload};
use super::lock::RunLock;
use super::target::Published;
use super::{export, JobError};
use crate::config::Config;
use crate::format::ArchiveKind;
use crate::keys::recovery::{RecoveryPublicKey, RecoveryRecipient};
use crate::keys::{Device, KeyError, SlotRecipient};
use crate::payload::exclude::Excludes;
use crate::progress::Meter;
use crate::targets::Target;

/// The recovery public key new archives are wrapped to; refuses to go on without one unless
/// the config accepts that risk explicitly.
pub(crate) fn recovery_key(cfg: &Config) -> Result<Option<RecoveryPublicKey>, JobError> {
    match &cfg.recovery.public_key {
        Some(pk) => Ok(Some(RecoveryPublicKey::parse(pk).map_err(KeyError::from)?)),
        None if cfg.recovery.allow_without_recovery => Ok(None),
        None => Err(JobError::NoRecoveryKey),
    }
}

/// What an archive of `kind` holds: `sources` when given, else the config's (the system
/// sources, or the secrets export command or file).
pub fn payload(cfg: &Config, kind: ArchiveKind, sources: &[PathBuf]) -> Result<Payload, JobError> {
    Ok(match kind {
        ArchiveKind::System | ArchiveKind::Videos => Payload::Tree {
            sources: if sources.is_empty() {
                cfg.backup.sources.clone()
            } else {
                sources.to_vec()
            },
            excludes: Excludes::new(&cfg.backup.exclude),
        },
        ArchiveKind::Secrets => Payload::Stream(export::open(&cfg.secrets, sources)?),
    })
}

/// A backup ready to start: checked recovery key and opened payload.
pub(crate) struct Prepared {
    /// The recovery key, unless the config allows archives without one.
    pub recovery: Option<RecoveryPublicKey>,
    /// The options, payload included.
    pub opts: BackupOptions,
}

/// Checks the recovery key, then opens the payload of `kind` (in this order, so that a
/// missing recovery key never starts the secrets export).
pub(crate) fn prepare(
    cfg: &Config,
    kind: ArchiveKind,
    sources: &[PathBuf],
) -> Result<Prepared, JobError> {
    let recovery = recovery_key(cfg)?;
    let payload = payload(cfg, kind, sources)?;
    Ok(Prepared {
        recovery,
        opts: BackupOptions {
            kind,
            payload,
            appliance_id: cfg.appliance_id(),
            segment_size: cfg.backup.segment_size,
            zstd_level: cfg.backup.zstd_level,
            threads: cfg.backup.threads,
            archive_id: BackupOptions::new_archive_id(),
            chain: None,
            compress: true,
            signing_key: None,
        },
    })
}

impl Prepared {
    /// The custodians besides the device, for [`super::backup::create`].
    pub(crate) fn recipients(&mut self) -> Option<RecoveryRecipient> {
        self.recovery.take().map(RecoveryRecipient)
    }

    /// Streams the archive to `target` and publishes it (see
    /// [`super::target::backup_to`]); `lock` is the held run lock.
    pub(crate) fn publish_to(
        mut self,
        target: &mut dyn Target,
        device: &mut dyn Device,
        meter: Arc<Meter>,
        lock: &RunLock,
    ) -> Result<(BackupSummary, Published), JobError> {
        let mut rec = self.recipients();
        let mut others: Vec<&mut dyn SlotRecipient> = Vec::new();
        if let Some(r) = rec.as_mut() {
            others.push(r);
        }
        super::target::backup_to(target, device, &mut others, self.opts, meter, lock)
    }
}
