//! Jobs on off-box targets: a backup streamed to a target and published only on success,
//! the archive listing, retention (prune), and the target check.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backup::{self, BackupOptions, BackupSummary};
use super::capacity::{Capacity, Measured};
use super::error::Policy;
use super::lock::RunLock;
use super::JobError;
use crate::config::CapacityConfig;
use crate::guard::SelfIdentity;
use crate::keys::{Device, SlotRecipient};
use crate::progress::Meter;
use crate::run_id::RunId;
use crate::targets::pipeline::Pipelined;
use crate::targets::temp::{self, Leftover};
use crate::targets::{self, ArchiveName, Target, TargetError, TargetSpec, Upload};

/// Wraps a target error as a job error (exit code 1; the message says what to do).
pub(crate) fn target_err(what: &str, e: TargetError) -> JobError {
    JobError::target(what, e)
}

/// Now, Unix seconds.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where a backup went.
#[derive(Debug, serde::Serialize)]
pub struct Published {
    /// The target URL.
    pub target: String,
    /// The final archive name.
    pub name: String,
    /// Temporaries of earlier killed runs that were removed first.
    pub cleaned: Vec<String>,
    /// Temporaries of this appliance kept because their run is still alive.
    pub kept: Vec<String>,
}

/// What [`remove_stale_temporaries`] did.
#[derive(Debug, Default)]
pub(crate) struct Cleanup {
    /// Stale temporaries removed.
    pub removed: Vec<String>,
    /// Temporaries of this appliance whose run is still alive, kept.
    pub kept: Vec<String>,
}

/// Removes the temporaries that killed uploads of `appliance` left on `target`. Only with
/// the run lock held (`_held`): then no other backup of this appliance is in progress, and
/// a temporary of it is stale unless its run id names a process alive on this boot (see
/// [`temp::classify`]). Other appliances' files and anything that is not exactly a
/// temporary name are never touched.
pub(crate) fn remove_stale_temporaries(
    target: &mut dyn Target,
    appliance: &str,
    _held: &RunLock,
) -> Result<Cleanup, TargetError> {
    let mut done = Cleanup::default();
    for e in target.list()? {
        match temp::classify(&e.name, appliance, RunId::is_alive) {
            Leftover::NotOurs => {}
            Leftover::Running => done.kept.push(e.name),
            Leftover::Stale => {
                target.delete(&e.name)?;
                done.removed.push(e.name);
            }
        }
    }
    Ok(done)
}

/// Streams one backup to `target` under a temporary name and publishes it under its final
/// name only when [`backup::create`] succeeded and the stream was flushed. On any failure
/// the upload is dropped, which removes the temporary file. The run lock (`lock`) makes the
/// cleanup of earlier runs' leftovers safe.
pub fn backup_to(
    target: &mut dyn Target,
    device: &mut dyn Device,
    others: &mut [&mut dyn SlotRecipient],
    opts: BackupOptions,
    meter: Arc<Meter>,
    lock: &RunLock,
) -> Result<(BackupSummary, Published), JobError> {
    let name = ArchiveName::new(
        &opts.appliance_id,
        opts.kind.name(),
        now_unix(),
        &opts.archive_id_hex(),
    )
    .to_string();
    backup_to_as(target, device, others, opts, meter, lock, name)
}

/// [`backup_to`] under a name chosen by the caller (a video archive's manifest names
/// itself).
pub(crate) fn backup_to_as(
    target: &mut dyn Target,
    device: &mut dyn Device,
    others: &mut [&mut dyn SlotRecipient],
    opts: BackupOptions,
    meter: Arc<Meter>,
    lock: &RunLock,
    name: String,
) -> Result<(BackupSummary, Published), JobError> {
    let appliance = opts.appliance_id.clone();
    let cleanup = remove_stale_temporaries(target, &appliance, lock)
        .map_err(|e| target_err("removing leftovers of earlier uploads", e))?;
    // The name is known before the first byte: the archive id was chosen in advance.
    let upload = target
        .begin_named(&appliance, &name)
        .map_err(|e| target_err("starting the upload", e))?;
    // Packing and encryption go on here while a writer thread sends the previous chunks
    // (or, for an upload with requests of its own in flight, while they travel).
    let out: Box<dyn Upload> = if upload.queues_writes() {
        upload
    } else {
        Box::new(
            Pipelined::new(upload, &target.url())
                .map_err(|e| JobError::io("starting the upload thread", e))?,
        )
    };
    let (upload, summary) = backup::create(device, others, opts, out, meter)?;
    upload
        .commit(&name)
        .map_err(|e| target_err("publishing the archive", e))?;
    Ok((
        summary,
        Published {
            target: target.url(),
            name,
            cleaned: cleanup.removed,
            kept: cleanup.kept,
        },
    ))
}

/// One archive on a target.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    /// File name.
    pub name: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// What the name says.
    #[serde(flatten)]
    pub info: ArchiveName,
}

/// The archives on a target, oldest first, and the number of temporaries (uploads in
/// progress or leftovers): those of appliance `only`, or of every appliance for `None`.
pub fn list(target: &mut dyn Target, only: Option<&str>) -> Result<(Vec<Listed>, usize), JobError> {
    let entries = target
        .list()
        .map_err(|e| target_err("listing the target", e))?;
    let temps = entries
        .iter()
        .filter(|e| match only {
            Some(a) => temp::is_temp_of(&e.name, a),
            None => e.name.starts_with(targets::TMP_PREFIX),
        })
        .count();
    let mut out: Vec<Listed> = entries
        .into_iter()
        .filter_map(|e| {
            let info = ArchiveName::parse(&e.name)?;
            if only.is_some_and(|a| !info.is_of(a)) {
                return None;
            }
            Some(Listed {
                info,
                name: e.name,
                size: e.size,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.info.created_unix, &a.name).cmp(&(b.info.created_unix, &b.name)));
    Ok((out, temps))
}

/// Retention rules. An archive is kept when any rule keeps it; the newest archive of each
/// kind is always kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Keep the newest N archives of each kind.
    pub keep_last: Option<usize>,
    /// Keep archives younger than this many days.
    pub keep_within_days: Option<u64>,
}

/// A retention decision.
#[derive(Debug, Default, serde::Serialize)]
pub struct PrunePlan {
    /// Archives kept.
    pub keep: Vec<String>,
    /// Archives deleted (or to delete, in a dry run).
    pub delete: Vec<String>,
    /// Archives the plan would delete but that are still under Object Lock, kept (name,
    /// retain-until date).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<(String, String)>,
}

/// Decides which of `appliance`'s archives to delete. Other appliances' archives are never
/// touched.
pub(crate) fn plan_prune(
    archives: &[Listed],
    appliance: &str,
    rules: Retention,
    now: i64,
) -> Result<PrunePlan, JobError> {
    if rules.keep_last.is_none() && rules.keep_within_days.is_none() {
        return Err(JobError::refused(
            "prune",
            Policy::Usage,
            "give a retention rule: --keep-last N and/or --keep-within DAYS (and try --dry-run first)",
        ));
    }
    let mut plan = PrunePlan::default();
    let mut mine: Vec<&Listed> = archives
        .iter()
        .filter(|a| a.info.is_of(appliance))
        .collect();
    // Newest first, per kind.
    mine.sort_by(|a, b| {
        (&a.info.kind, std::cmp::Reverse(a.info.created_unix))
            .cmp(&(&b.info.kind, std::cmp::Reverse(b.info.created_unix)))
    });
    let mut rank = 0usize;
    let mut last_kind: Option<&str> = None;
    for a in mine {
        if last_kind != Some(a.info.kind.as_str()) {
            rank = 0;
            last_kind = Some(a.info.kind.as_str());
        }
        let by_count = rules.keep_last.is_some_and(|n| rank < n);
        let by_age = rules
            .keep_within_days
            .is_some_and(|d| now - a.info.created_unix < (d as i64) * 86_400);
        if rank == 0 || by_count || by_age {
            plan.keep.push(a.name.clone());
        } else {
            plan.delete.push(a.name.clone());
        }
        rank += 1;
    }
    Ok(plan)
}

/// Applies a plan (unless `dry_run`), with the run lock held (`_held`), so that no backup
/// of this appliance publishes while the plan is made. A name is deleted only when it
/// parses as exactly an archive name of `appliance` (checked again right before deleting).
pub fn prune(
    target: &mut dyn Target,
    appliance: &str,
    rules: Retention,
    dry_run: bool,
    held: &RunLock,
) -> Result<PrunePlan, JobError> {
    prune_kind(target, appliance, None, rules, dry_run, held)
}

/// [`prune`] of the archives of one `kind` only (`None`: every kind), so that each kind of
/// a scheduled run keeps its own retention on a shared target.
pub(crate) fn prune_kind(
    target: &mut dyn Target,
    appliance: &str,
    kind: Option<&str>,
    rules: Retention,
    dry_run: bool,
    _held: &RunLock,
) -> Result<PrunePlan, JobError> {
    let (mut archives, _) = list(target, Some(appliance))?;
    // Video archives form chains: only `videos::prune` deletes them, keeping what kept
    // restore points need.
    archives.retain(|a| a.info.kind != "videos" && kind.is_none_or(|k| a.info.kind == k));
    let mut plan = plan_prune(&archives, appliance, rules, now_unix())?;
    if let Some(bad) = plan
        .delete
        .iter()
        .find(|n| !ArchiveName::parse(n).is_some_and(|a| a.is_of(appliance)))
    {
        return Err(JobError::Io {
            what: "prune".into(),
            err: std::io::Error::other(format!(
                "refusing to delete {bad}: it is not exactly an archive name of this appliance; nothing was deleted. Please report this as a bug"
            )),
        });
    }
    if !dry_run {
        let mut deleted = Vec::with_capacity(plan.delete.len());
        for name in std::mem::take(&mut plan.delete) {
            match target.delete(&name) {
                Ok(()) => deleted.push(name),
                // Still under retention: kept and reported, not an error.
                Err(TargetError::Locked { until, .. }) => plan.locked.push((name, until)),
                Err(e) => return Err(target_err(&format!("deleting {name}"), e)),
            }
        }
        plan.delete = deleted;
    }
    Ok(plan)
}

/// `target check` results.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    /// The target as named.
    pub target: String,
    /// Its URL.
    pub url: String,
    /// Time to resolve, guard, connect and authenticate, in milliseconds.
    pub connect_ms: f64,
    /// Time to write, publish, read back and delete a probe file, in milliseconds.
    pub probe_ms: f64,
    /// Free bytes on the target, when the protocol tells it.
    pub free_bytes: Option<u64>,
    /// The capacity rule's figures (see [`super::capacity`]).
    pub capacity: Capacity,
    /// A shortfall, or an unknown free space.
    pub warning: Option<String>,
    /// Facts the target reports (an S3 bucket's Object Lock).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Bytes allocated under `dir`, on its own filesystem only.
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = root.dev();
    let mut total = root.blocks() * 512;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            total += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Resolves, guards, connects, writes/publishes/reads back/deletes a probe, and applies the
/// capacity rule (`rule`, with the path's usage `measured`).
pub fn check(
    spec: &TargetSpec,
    me: &SelfIdentity,
    appliance: &str,
    rule: &CapacityConfig,
    measured: &Measured,
) -> Result<CheckReport, JobError> {
    let t0 = Instant::now();
    let mut target =
        targets::connect(spec, me).map_err(|e| target_err("connecting to the target", e))?;
    let connect = t0.elapsed();
    let t1 = Instant::now();
    probe(target.as_mut(), appliance)?;
    let probe_t = t1.elapsed();
    let capacity = capacity_of(target.as_mut(), appliance, rule, measured)?;
    let notes = target.notes();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(CheckReport {
        target: spec.label.clone(),
        url: spec.url.to_string(),
        connect_ms: ms(connect),
        probe_ms: ms(probe_t),
        free_bytes: capacity.free_bytes,
        warning: capacity.warning(),
        capacity,
        notes,
    })
}

/// The capacity figures of a connected target: its free space and this appliance's
/// archives (a listing; no archive is read).
pub(crate) fn capacity_of(
    target: &mut dyn Target,
    appliance: &str,
    rule: &CapacityConfig,
    measured: &Measured,
) -> Result<Capacity, JobError> {
    let free = target
        .free_space()
        .map_err(|e| target_err("reading the free space", e))?;
    let listing = target
        .list()
        .map_err(|e| target_err("listing the target", e))?;
    Ok(Capacity::assess(rule, measured, free, &listing, appliance))
}

/// Writes, publishes, reads back and deletes a 4 KiB probe file: the directory is
/// writable and reads back what was written.
pub fn probe(target: &mut dyn Target, appliance: &str) -> Result<(), JobError> {
    let probe = format!(
        ".offbox-probe.{}",
        data_encoding::HEXLOWER.encode(&crate::secret::random_bytes::<8>())
    );
    let data = crate::secret::random_bytes::<4096>();
    let mut up = target
        .begin(appliance)
        .map_err(|e| target_err("writing a probe file", e))?;
    up.write_all(&data)
        .map_err(|e| JobError::io("writing a probe file", e))?;
    up.commit(&probe)
        .map_err(|e| target_err("publishing a probe file", e))?;
    let mut back = Vec::new();
    let read = target
        .open(&probe)
        .map_err(|e| target_err("reading the probe file back", e))
        .and_then(|mut r| {
            r.read_to_end(&mut back)
                .map_err(|e| JobError::io("reading the probe file back", e))
        });
    let deleted = target
        .delete(&probe)
        .map_err(|e| target_err("deleting the probe file", e));
    read?;
    deleted?;
    if back != data {
        return Err(JobError::Io {
            what: "reading the probe file back".into(),
            err: std::io::Error::other("the probe file came back different"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
