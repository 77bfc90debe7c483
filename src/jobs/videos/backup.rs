//! One video run: compare the recordings with the newest restore point (the catalogue, or
//! the target's newest manifest when the catalogue cannot be used), store what is new or
//! changed in one archive that ends with the new point's manifest, publish it, then
//! remember the point. A run killed anywhere publishes nothing and leaves the catalogue as
//! it was; the next run starts from the last published point.

use std::sync::{Arc, Mutex};

use super::catalogue::{self, Catalogue};
use super::{list_points, Point};
use crate::config::videos::MAX_CHAIN_RUNS;
use crate::config::{Config, FullEvery};
use crate::format::{ArchiveKind, Chain};
use crate::jobs::backup::{BackupOptions, BackupSummary, ChainedPayload, Payload, TailWrite};
use crate::jobs::error::Policy;
use crate::jobs::lock::RunLock;
use crate::jobs::signature::Trust;
use crate::jobs::target::{now_unix, Published};
use crate::jobs::{publish, JobError};
use crate::keys::{Device, SlotIdentity, SlotRecipient};
use crate::payload::exclude::Excludes;
use crate::payload::videos::plan::{plan, Plan};
use crate::payload::videos::scan::scan;
use crate::payload::videos::write::{write, Written};
use crate::payload::videos::ArchiveRef;
use crate::payload::Notice;
use crate::progress::Meter;
use crate::targets::{ArchiveName, Target};

/// Options of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct VideoRunOptions {
    /// Hash every unchanged recording and send those whose content differs.
    pub rehash: bool,
    /// Start a new chain whatever `full_every` says.
    pub full: bool,
}

/// What a video run did.
#[derive(Debug, serde::Serialize)]
pub struct VideoSummary {
    /// The archive, as `backup create` reports it.
    #[serde(flatten)]
    pub backup: BackupSummary,
    /// True when this archive starts a chain.
    pub full: bool,
    /// Why a full was written, when it was.
    pub full_reason: Option<String>,
    /// Position in the chain (0 for a full).
    pub chain_seq: u32,
    /// The chain's full (archive id, hex).
    pub base: String,
    /// Recordings in the new restore point.
    pub recordings: u64,
    /// Recordings whose bytes this archive stores.
    pub stored: u64,
    /// Their bytes.
    pub stored_bytes: u64,
    /// Recordings left where an earlier archive holds them.
    pub unchanged: u64,
    /// Recordings of the previous point deleted on the appliance since.
    pub deleted: u64,
    /// New recordings skipped because they are still being written (settle time).
    pub skipped_settling: u64,
    /// Recordings still being written whose previous version stays in the point.
    pub kept_settling: u64,
    /// How the previous point was known: "catalogue", "rebuilt from NAME (why)", or
    /// "none".
    pub catalogue: String,
}

struct VideoPayload {
    plan: Option<Plan>,
    this: ArchiveRef,
    out: Arc<Mutex<Option<Written>>>,
}

impl ChainedPayload for VideoPayload {
    fn write(
        &mut self,
        out: &mut dyn TailWrite,
        meter: &Meter,
    ) -> std::io::Result<(u64, Vec<Notice>)> {
        let plan = self.plan.take().expect("written once");
        let w = write(plan, self.this.clone(), out, meter)?;
        let r = (w.stored + 1, w.notices.clone());
        *self.out.lock().expect("not poisoned") = Some(w);
        Ok(r)
    }
}

/// The previous point, from the catalogue or the target.
struct Previous {
    catalogue: Option<Catalogue>,
    how: String,
    notices: Vec<Notice>,
    device_ops: u32,
}

/// Refuses when the operator has not switched the video backup on.
pub fn check_enabled(cfg: &Config) -> Result<(), JobError> {
    if cfg.videos.enabled {
        return Ok(());
    }
    Err(JobError::refused(
        "backup create --kind videos",
        Policy::Usage,
        "the session video backup is off: it is opt-in (\"Enable sessions file backup?\"). Set [videos] enabled = true and sources = [the recording directories] in the config",
    ))
}

/// Runs one video backup to `target` (configured as `target_name`), the run lock held.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &Config,
    target: &mut dyn Target,
    target_name: &str,
    device: &mut dyn Device,
    meter: Arc<Meter>,
    lock: &RunLock,
    opts: VideoRunOptions,
) -> Result<(VideoSummary, Published), JobError> {
    check_enabled(cfg)?;
    let v = &cfg.videos;
    let mut prepared = publish::prepare(cfg, ArchiveKind::Videos, &[])?;
    let appliance = cfg.appliance_id();
    // One device operation for every signing key, current first: the current one signs,
    // all of them are trusted when the previous point is read back from the target.
    let keys = device.signing_keys()?;
    let signing_key = match keys.first() {
        Some(k) => k.clone(),
        None => device.signing_key()?,
    };
    let mut trust = Trust::new();
    for k in keys {
        trust.add(k, "this appliance's signing key");
    }
    let points = list_points(target, &appliance)?;
    let cat_path = catalogue::path(&cfg.state_dir(), target_name);
    let prev = previous(&cat_path, target, &points, device, &trust);
    // Points are ordered by the time in their names, to the second: a run in the same
    // second as the newest point takes the next second, so the order stays the chain's.
    let now = now_unix().max(points.last().map_or(i64::MIN, |p| p.created_unix + 1));
    let full_reason = match (&prev.catalogue, opts.full) {
        (_, true) => Some("--full was given".to_string()),
        (None, _) => Some("there is no earlier restore point to build on".into()),
        (Some(c), _) => chain_full(c, &points, v.full_every, now),
    };
    let scanned = scan(&v.sources, &Excludes::new(&v.exclude)).map_err(|e| JobError::Io {
        what: "finding the recordings".into(),
        err: std::io::Error::other(e.to_string()),
    })?;
    let present = |a: &ArchiveRef| points.iter().any(|p| p.name == a.name);
    // The previous manifest is moved into the plan, not copied: with 100,000 recordings it
    // is the largest thing a run holds.
    let (old, parent) = match (&full_reason, prev.catalogue) {
        (None, Some(c)) => {
            let parent = (c.chain.base, c.manifest.archive_id, c.chain.seq);
            (Some(c.manifest), Some(parent))
        }
        _ => (None, None),
    };
    let settle_before = now - v.settle_secs as i64;
    let mut p = plan(scanned, old, &present, settle_before, opts.rehash);
    p.notices.extend(prev.notices);
    let id = BackupOptions::new_archive_id();
    let chain = match parent {
        Some((base, parent, seq)) => Chain {
            base,
            parent: Some(parent),
            seq: seq + 1,
            depends_on: p.depends_on(),
        },
        _ => Chain {
            base: id,
            parent: None,
            seq: 0,
            depends_on: Vec::new(),
        },
    };
    let name = ArchiveName::new(&appliance, "videos", now, &hex(&id)).to_string();
    let counts = (p.settling_new, p.settling_kept, p.deleted);
    let out = Arc::new(Mutex::new(None));
    let payload = VideoPayload {
        plan: Some(p),
        this: ArchiveRef {
            id,
            name: name.clone(),
        },
        out: out.clone(),
    };
    prepared.opts.archive_id = id;
    prepared.opts.chain = Some(chain.clone());
    prepared.opts.compress = v.compress;
    prepared.opts.signing_key = Some(signing_key);
    prepared.opts.payload = Payload::Chained(Box::new(payload));
    let mut rec = prepared.recipients();
    let mut others: Vec<&mut dyn SlotRecipient> = Vec::new();
    if let Some(r) = rec.as_mut() {
        others.push(r);
    }
    let (mut backup, published) = crate::jobs::target::backup_to_as(
        target,
        device,
        &mut others,
        prepared.opts,
        meter,
        lock,
        name.clone(),
    )?;
    backup.device_operations += 1 + prev.device_ops;
    let written = out
        .lock()
        .expect("not poisoned")
        .take()
        .expect("the payload was written");
    let new_cat = Catalogue {
        target: target.url(),
        archive_name: name,
        chain: chain.clone(),
        manifest: written.manifest,
    };
    if let Err(e) = catalogue::save(&cat_path, &new_cat) {
        backup.notices.push(Notice {
            path: cat_path.display().to_string(),
            what: format!(
                "the catalogue could not be saved ({e}); the next run rebuilds it from the target"
            ),
        });
    }
    let recordings = new_cat.manifest.records.len() as u64;
    Ok((
        VideoSummary {
            backup,
            full: chain.seq == 0,
            full_reason,
            chain_seq: chain.seq,
            base: hex(&chain.base),
            recordings,
            stored: written.stored,
            stored_bytes: written.stored_bytes,
            unchanged: recordings - written.stored,
            deleted: counts.2,
            skipped_settling: counts.0,
            kept_settling: counts.1,
            catalogue: prev.how,
        },
        published,
    ))
}

/// Why the next archive must start a new chain, if it must.
fn chain_full(c: &Catalogue, points: &[Point], every: FullEvery, now: i64) -> Option<String> {
    if c.chain.seq + 1 >= MAX_CHAIN_RUNS {
        return Some(format!(
            "the chain has {MAX_CHAIN_RUNS} archives, the most a chain may have"
        ));
    }
    match every {
        FullEvery::Runs(n) if c.chain.seq + 1 >= n => Some(format!(
            "the chain has {} archives (videos.full_every = {n})",
            c.chain.seq + 1
        )),
        FullEvery::Days(d) => match points.iter().find(|p| p.id_prefix_matches(&c.chain.base)) {
            None => Some("the chain's full is no longer on the target".into()),
            Some(b) if now - b.created_unix >= i64::from(d) * 86_400 => Some(format!(
                "the chain's full is older than {d} days (videos.full_every = \"{d}d\")"
            )),
            Some(_) => None,
        },
        FullEvery::Runs(_) => None,
    }
}

/// The previous point: the catalogue when it names the newest archive on the target, else
/// that archive's manifest (one device operation), else none (the run is a full).
fn previous(
    cat_path: &std::path::Path,
    target: &mut dyn Target,
    points: &[Point],
    device: &mut dyn Device,
    trust: &Trust,
) -> Previous {
    let mut notices = Vec::new();
    let Some(newest) = points.last() else {
        return Previous {
            catalogue: None,
            how: "none: no video archive on the target".into(),
            notices,
            device_ops: 0,
        };
    };
    let why = match catalogue::load(cat_path) {
        Ok(Some(c)) if c.archive_name == newest.name && c.target == target.url() => {
            return Previous {
                catalogue: Some(c),
                how: "catalogue".into(),
                notices,
                device_ops: 0,
            }
        }
        Ok(Some(c)) => format!(
            "the catalogue names {}, the target's newest point is {}",
            c.archive_name, newest.name
        ),
        Ok(None) => "there is no catalogue".into(),
        Err(why) => format!("the catalogue {why}"),
    };
    let r = super::tail::read_manifest(
        target,
        &newest.name,
        newest.size,
        &mut [device as &mut dyn SlotIdentity],
        trust,
    );
    match r {
        Ok((h, manifest)) => Previous {
            catalogue: Some(Catalogue {
                target: target.url(),
                archive_name: newest.name.clone(),
                chain: h.chain.expect("video headers carry a chain"),
                manifest,
            }),
            how: format!("rebuilt from {} ({why})", newest.name),
            notices,
            device_ops: 1,
        },
        Err(e) => {
            notices.push(Notice {
                path: newest.name.clone(),
                what: format!("the newest restore point cannot be used ({e}); this run is a full"),
            });
            Previous {
                catalogue: None,
                how: format!("none: {} is not usable ({why})", newest.name),
                notices,
                device_ops: 1,
            }
        }
    }
}

/// Lowercase hex.
fn hex(b: &[u8]) -> String {
    crate::format::header::hex(b)
}
