//! When a kind is due on a target, and when it is stale.
//!
//! The timer runs `offbox run` often (hourly, `systemd/offbox-run.timer`); each run backs up
//! the kinds that are **due**:
//! - never succeeded on that target: due now;
//! - else due when the last success is `every_hours` old, less [`SLACK_SECS`] (so that an
//!   hourly timer does not push a daily backup an hour later every day);
//! - after a failure that a retry may fix (`retry = temporary`: unreachable, timeout,
//!   busy): due again at the next run; after one that a retry cannot fix (full, key,
//!   credentials, config): due again only one interval after that failure, so that a
//!   permanent failure is not repeated (and notified) every hour. Once fixed, force it
//!   with `offbox run --now` or `--kind KIND`.
//!
//! [`scheduled`] lists the enabled kinds of the config in run order, with their targets.
//!
//! A kind is **stale** on a target when its last success (or, before any, the first time it
//! was scheduled) is older than `max_age_hours`.

use crate::config::schedule::{RunKind, RUN_KINDS};
use crate::config::{Config, KindSchedule};

use super::state::KindState;

/// Tolerance of the interval, in seconds: a kind whose last success is 15 minutes short of
/// its interval is due at this run rather than at the next one.
pub(crate) const SLACK_SECS: i64 = 15 * 60;

fn hours(h: f64) -> i64 {
    (h * 3600.0).round() as i64
}

/// Unix seconds from which the kind is due (0: due now, never ran).
pub fn next_due(sched: &KindSchedule, state: Option<&KindState>) -> i64 {
    let every = hours(sched.every_hours);
    let Some(st) = state else { return 0 };
    let base = st
        .last_success
        .as_ref()
        .map_or(0, |s| s.at + every - SLACK_SECS);
    match &st.last_failure {
        Some(f) if st.failing() && f.retry == "permanent" => base.max(f.at + every - SLACK_SECS),
        _ => base,
    }
}

/// Whether the kind is stale at `now`, and since when its clock runs.
pub fn stale(sched: &KindSchedule, state: &KindState, now: i64) -> Option<i64> {
    let since = state
        .last_success
        .as_ref()
        .map_or(state.first_seen, |s| s.at);
    (now - since > hours(sched.max_age_hours())).then_some(since)
}

/// One scheduled kind: its table and its target names.
pub(crate) struct Scheduled<'a> {
    /// The kind.
    pub run_kind: RunKind,
    /// Its `[schedule.KIND]` table.
    pub sched: &'a KindSchedule,
    /// Its targets (the default target when the table names none).
    pub targets: Vec<String>,
}

/// The enabled kinds of the config, in run order.
pub(crate) fn scheduled(cfg: &Config) -> Vec<Scheduled<'_>> {
    let default = cfg.targets.default.clone().or_else(|| {
        (cfg.targets.named.len() == 1)
            .then(|| cfg.targets.named.keys().next().cloned())
            .flatten()
    });
    RUN_KINDS
        .iter()
        .filter_map(|rk| {
            let sched = cfg.schedule.get(rk.name).filter(|s| s.enabled)?;
            let targets = if sched.targets.is_empty() {
                default.iter().cloned().collect()
            } else {
                sched.targets.clone()
            };
            Some(Scheduled {
                run_kind: *rk,
                sched,
                targets,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::state::{Failure, Success};

    fn sched() -> KindSchedule {
        toml::from_str("every_hours = 24\nkeep_last = 2").unwrap()
    }

    fn ok(at: i64) -> Option<Success> {
        Some(Success {
            at,
            archive: "a".into(),
            bytes: 1,
            duration_secs: 1.0,
        })
    }

    fn failed(at: i64, retry: &str) -> Option<Failure> {
        Some(Failure {
            at,
            error_kind: "x".into(),
            retry: retry.into(),
            message: String::new(),
        })
    }

    #[test]
    fn due_after_the_interval_less_the_slack_and_retries_by_class() {
        let s = sched();
        let day = 86_400;
        assert_eq!(next_due(&s, None), 0);
        let mut st = KindState {
            first_seen: 0,
            last_attempt: Some(1000),
            last_success: ok(1000),
            last_failure: None,
            failures_in_a_row: 0,
        };
        assert_eq!(next_due(&s, Some(&st)), 1000 + day - SLACK_SECS);
        st.failures_in_a_row = 1;
        st.last_failure = failed(5000, "temporary");
        assert_eq!(next_due(&s, Some(&st)), 1000 + day - SLACK_SECS);
        st.last_failure = failed(day + 2000, "temporary");
        assert!(
            next_due(&s, Some(&st)) < day + 2000,
            "retried at the next run"
        );
        st.last_failure = failed(day + 2000, "permanent");
        assert_eq!(next_due(&s, Some(&st)), 2 * day + 2000 - SLACK_SECS);
        st.last_success = None;
        st.last_failure = failed(100, "permanent");
        assert_eq!(next_due(&s, Some(&st)), 100 + day - SLACK_SECS);
    }

    #[test]
    fn stale_after_the_maximum_age() {
        let s = sched();
        let st = KindState {
            first_seen: 0,
            ..KindState::default()
        };
        assert_eq!(stale(&s, &st, 48 * 3600), None);
        assert_eq!(stale(&s, &st, 48 * 3600 + 1), Some(0));
        let st = KindState {
            first_seen: 0,
            last_success: ok(100),
            ..KindState::default()
        };
        assert_eq!(stale(&s, &st, 48 * 3600 + 1), None);
    }
}
