//! `offbox status`: what an operator or a monitoring probe reads. Built from the config, the
//! state file and the notifier's pending conditions and queue only: it connects to
//! nothing and opens no device.

use serde::Serialize;

use super::capacity::{Capacity, Measured};
use super::due;
use super::state::{Failure, StateFile, Success};
use super::target::now_unix;
use crate::config::Config;
use crate::notify::Pending;

/// One scheduled kind on one target.
#[derive(Debug, Clone, Serialize)]
pub struct KindStatus {
    /// The kind.
    pub kind: &'static str,
    /// The target name.
    pub target: String,
    /// The last success.
    pub last_success: Option<Success>,
    /// The last failure (also when a success followed it).
    pub last_failure: Option<Failure>,
    /// Whether the last attempt failed.
    pub failing: bool,
    /// Unix seconds when it is next due (0: at the next run).
    pub next_due: i64,
    /// Unix seconds since when it is stale, if it is.
    pub stale_since: Option<i64>,
}

/// What was last seen of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The target name.
    pub target: String,
    /// `reachable`, `lost`, or `unknown` (never checked).
    pub state: &'static str,
    /// Unix seconds since when it is in that state.
    pub since: Option<i64>,
    /// Unix seconds of the last check (by `run` or `watch`).
    pub checked_at: Option<i64>,
    /// Why it is lost.
    pub error: Option<String>,
    /// The last capacity figures.
    pub capacity: Option<Capacity>,
}

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This appliance.
    pub appliance: String,
    /// Unix seconds now.
    pub now: i64,
    /// Every enabled kind on every target, in run order.
    pub kinds: Vec<KindStatus>,
    /// Every configured target.
    pub targets: Vec<TargetStatus>,
    /// The last measurement of the capacity rule's path.
    pub measured: Option<Measured>,
    /// Raised conditions and queued notifications.
    pub notifications: Pending,
    /// Problems reading the state file.
    pub warnings: Vec<String>,
}

/// The status of this appliance's service.
pub fn status(cfg: &Config, notifications: Pending) -> Status {
    let state = StateFile::new(&cfg.state_dir()).read();
    let now = now_unix();
    let mut kinds = Vec::new();
    for s in due::scheduled(cfg) {
        for t in &s.targets {
            let st = state.kind(s.run_kind.name, t);
            kinds.push(KindStatus {
                kind: s.run_kind.name,
                target: t.clone(),
                last_success: st.and_then(|k| k.last_success.clone()),
                last_failure: st.and_then(|k| k.last_failure.clone()),
                failing: st.is_some_and(|k| k.failing()),
                next_due: due::next_due(s.sched, st),
                stale_since: st.and_then(|k| due::stale(s.sched, k, now)),
            });
        }
    }
    let targets = cfg
        .targets
        .named
        .keys()
        .map(|name| {
            let t = state.targets.get(name);
            TargetStatus {
                target: name.clone(),
                state: match t {
                    Some(t) if t.checked_at > 0 && t.reachable => "reachable",
                    Some(t) if t.checked_at > 0 => "lost",
                    _ => "unknown",
                },
                since: t.filter(|t| t.checked_at > 0).map(|t| t.since),
                checked_at: t.filter(|t| t.checked_at > 0).map(|t| t.checked_at),
                error: t.and_then(|t| t.error.clone()),
                capacity: t.and_then(|t| t.capacity.clone()),
            }
        })
        .collect();
    Status {
        appliance: cfg.appliance_id(),
        now,
        kinds,
        targets,
        measured: state.measured,
        notifications,
        warnings: state.notes,
    }
}
