//! `last_backup.KIND.TARGET`, one per scheduled kind and target: the age of the last
//! successful backup against the kind's schedule, from the service state that `run`
//! records ([`super::super::state`]), with the rules of [`super::super::due`]: a kind is
//! **stale** when its last success (or, before any, the time it was first scheduled) is
//! older than `max_age_hours`. A stale kind, or one that was never backed up, is a warning.
//!
//! The `stale`/`fresh` conditions are those of `run` and `watch`
//! ([`super::super::notices::stale_conditions`]).

use super::super::due::{self, scheduled};
use super::super::notices::{stale_conditions, Notices};
use super::super::state::{KindState, StateFile};
use super::Check;
use crate::config::{Config, KindSchedule};
use crate::notify::format::rfc3339;

/// One check per scheduled kind and target, in run order.
pub(super) fn check(cfg: &Config, notices: &mut dyn Notices, now: i64) -> Vec<Check> {
    let state = StateFile::new(&cfg.state_dir()).read();
    let mut out = Vec::new();
    for s in scheduled(cfg) {
        let kind = s.run_kind.name;
        for t in &s.targets {
            let name = format!("last_backup.{kind}.{t}");
            out.push(match state.kind(kind, t) {
                None => Check::warn(
                    name,
                    "stale",
                    format!("no {kind} backup to {t} has been made yet: the service has not run it since it was scheduled"),
                    format!("run `offbox run --kind {kind}` now (the hourly offbox-run.timer also will), then `offbox status`"),
                ),
                Some(st) => one(kind, t, s.sched, st, now, name),
            });
        }
    }
    stale_conditions(cfg, &state, notices, now);
    out
}

fn one(kind: &str, t: &str, sched: &KindSchedule, st: &KindState, now: i64, name: String) -> Check {
    let limits = format!(
        "every {} h, max_age_hours {}",
        sched.every_hours,
        sched.max_age_hours()
    );
    let failing = match (&st.last_failure, st.failing()) {
        (Some(f), true) => format!(
            "; the last attempt failed at {} ({}, retry {}): {}",
            rfc3339(f.at),
            f.error_kind,
            f.retry,
            f.message
        ),
        _ => String::new(),
    };
    let last = match &st.last_success {
        Some(s) => format!(
            "the last successful {kind} backup to {t} was at {} ({}, {})",
            rfc3339(s.at),
            age(now - s.at),
            s.archive
        ),
        None => format!(
            "no successful {kind} backup to {t} yet since it was scheduled at {}",
            rfc3339(st.first_seen)
        ),
    };
    if due::stale(sched, st, now).is_some() {
        return Check::warn(
            name,
            "stale",
            format!("{last}: older than its maximum age ({limits}){failing}"),
            format!("fix what the last failure names (`offbox status`), then run `offbox run --kind {kind}`"),
        );
    }
    let next = due::next_due(sched, Some(st));
    let next = if next <= now {
        "due now".to_string()
    } else {
        format!("next due {}", rfc3339(next))
    };
    Check::ok(name, format!("{last}; {limits}; {next}{failing}"))
}

/// `3 h 5 min ago`.
fn age(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    if h > 0 {
        format!("{h} h {m} min ago")
    } else {
        format!("{m} min ago")
    }
}
