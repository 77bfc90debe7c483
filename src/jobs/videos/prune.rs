//! Chain-aware retention of video archives. A restore point is kept when it is the newest
//! or younger than `keep_days`; an archive is deleted only when no kept archive needs any
//! of its bytes: the dependencies recorded in each kept header (authenticated by the
//! signature, read without the recordings or any key) are kept too, and theirs, so no kept
//! manifest ever names a deleted archive. An archive whose header cannot be read or
//! checked is kept and reported, and then nothing is deleted: what it needs is unknown.

use std::collections::{BTreeSet, HashMap};

use super::{list_points, tail, Point};
use crate::jobs::lock::RunLock;
use crate::jobs::signature::Trust;
use crate::jobs::target::target_err;
use crate::jobs::JobError;
use crate::targets::{ArchiveName, Target, TargetError};

/// One deletion and what it drops.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deletion {
    /// The archive.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The restore point that goes with it, RFC 3339.
    pub point: Option<String>,
    /// Whether it started a chain.
    pub full: bool,
}

/// The decision.
#[derive(Debug, Default, serde::Serialize)]
pub struct VideoPrunePlan {
    /// Points kept by the rule (the newest, and those younger than `keep_days`).
    pub keep: Vec<String>,
    /// Archives kept only because a kept point needs their bytes.
    pub needed: Vec<String>,
    /// Archives deleted (or to delete, in a dry run).
    pub delete: Vec<Deletion>,
    /// Archives kept because their header could not be checked, with why.
    pub unreadable: Vec<(String, String)>,
    /// Archives the rule would delete, kept because some header could not be checked: an
    /// unreadable archive's dependencies are unknown, so nothing is deleted blind.
    pub held_back: Vec<String>,
    /// Archives to delete that Object Lock still protects (name, until).
    pub locked: Vec<(String, String)>,
}

/// Plans (and unless `dry_run`, applies) the retention of `appliance`'s video archives.
pub fn prune(
    target: &mut dyn Target,
    appliance: &str,
    trust: &Trust,
    keep_days: u32,
    now: i64,
    dry_run: bool,
    _held: &RunLock,
) -> Result<VideoPrunePlan, JobError> {
    let points = list_points(target, appliance)?;
    let mut plan = VideoPrunePlan::default();
    let mut deps: HashMap<String, Vec<[u8; 16]>> = HashMap::new();
    let mut by_id: HashMap<[u8; 16], String> = HashMap::new();
    let mut full: HashMap<String, bool> = HashMap::new();
    for p in &points {
        match tail::read_header(target, &p.name, p.size, trust) {
            Ok(h) => {
                let c = h.chain.expect("video headers carry a chain");
                by_id.insert(h.archive_id, p.name.clone());
                full.insert(p.name.clone(), c.seq == 0);
                deps.insert(p.name.clone(), c.depends_on);
            }
            Err(e) => plan.unreadable.push((p.name.clone(), e.to_string())),
        }
    }
    let cutoff = now - i64::from(keep_days) * 86_400;
    let mut kept: BTreeSet<String> = points
        .iter()
        .enumerate()
        .filter(|(i, p)| *i + 1 == points.len() || p.created_unix >= cutoff)
        .map(|(_, p)| p.name.clone())
        .collect();
    plan.keep = points
        .iter()
        .filter(|p| kept.contains(&p.name))
        .map(|p| p.name.clone())
        .collect();
    kept.extend(plan.unreadable.iter().map(|(n, _)| n.clone()));
    // Everything a kept archive depends on, transitively.
    let mut todo: Vec<String> = kept.iter().cloned().collect();
    while let Some(n) = todo.pop() {
        for id in deps.get(&n).into_iter().flatten() {
            if let Some(d) = by_id.get(id) {
                if kept.insert(d.clone()) {
                    plan.needed.push(d.clone());
                    todo.push(d.clone());
                }
            }
        }
    }
    for p in &points {
        if kept.contains(&p.name) {
            continue;
        }
        if !ArchiveName::parse(&p.name).is_some_and(|a| a.is_of(appliance)) {
            continue;
        }
        plan.delete
            .push(deletion(p, full.get(&p.name).copied().unwrap_or(false)));
    }
    if !plan.unreadable.is_empty() {
        plan.held_back = std::mem::take(&mut plan.delete)
            .into_iter()
            .map(|d| d.name)
            .collect();
    }
    if !dry_run {
        let mut deleted = Vec::with_capacity(plan.delete.len());
        for d in std::mem::take(&mut plan.delete) {
            match target.delete(&d.name) {
                Ok(()) => deleted.push(d),
                Err(TargetError::Locked { until, .. }) => plan.locked.push((d.name, until)),
                Err(e) => return Err(target_err(&format!("deleting {}", d.name), e)),
            }
        }
        plan.delete = deleted;
    }
    Ok(plan)
}

fn deletion(p: &Point, full: bool) -> Deletion {
    Deletion {
        name: p.name.clone(),
        size: p.size,
        point: crate::jobs::read::created_rfc3339(p.created_unix),
        full,
    }
}
