//! `offbox selfcheck`: the one-shot check the appliance's boot service runs. It says whether
//! offbox can back up at all (failed), can back up but needs attention (degraded), or is
//! healthy (ok), one typed result per check, each with a message that says what is wrong
//! and a hint that says what to do.
//!
//! | check | fails (exit code) | warns (exit 75) |
//! |---|---|---|
//! | `config` | no `[targets.NAME]`; a scheduled kind has nothing to back up (1) | no kind is scheduled |
//! | `state_dir` | cannot be written or created (1) | missing (the first run creates it), corrupt state file |
//! | `videos.sources` (with `[videos] enabled`) | a recording directory cannot be listed (1) | |
//! | `keys.device_access` | a device node, module or token directory the service needs cannot be opened (4) | |
//! | `keys.pin_file` | missing, unreadable, empty, or writable by others (4) | readable by others, foreign owner |
//! | `keys.device`, `keys.kek`, `keys.signing_key` | the HSM or TPM unreachable, PIN refused, KEK or signing key missing (4) | |
//! | `recovery.public_key` | none configured (1), or unparsable (4) | none, with `allow_without_recovery` |
//! | `recovery.signers` | | `signing-keys.pem` beside the config does not list the current signing key |
//! | `target.NAME` | resolves, passes the guard and takes a probe file: a failure a retry cannot fix (69, or 1 for a wrong URL) | network trouble (unreachable, timeout) |
//! | `last_backup.KIND.TARGET` | | no success yet, or the last is older than `max_age_hours` |
//!
//! The exit code: 0 when every check is ok; with a failure, the most severe failure's code
//! in the order of [`super::run::exit_code`] (3, 4, 1, 69, 75); with warnings only, 75
//! (degraded). Each file of this folder owns one group of checks.
//!
//! Events (through [`Notices`], so the `[notify]` channels apply as for `run` and `watch`):
//! `key_device_failure` when a key check failed; the `target_lost`/`target_recovered` and
//! `stale`/`fresh` conditions, shared with `watch` (so a boot repeats nothing already
//! raised); and one `selfcheck_failed` or `selfcheck_degraded` event summing up the checks
//! that did not pass.

mod access;
mod keys;
mod recovery;
mod schedule;
mod setup;
mod targets;

use std::path::Path;

use serde::Serialize;

use super::error::EXIT_TEMPFAIL;
use super::notices::{retry_name, Notices};
use super::target::now_unix;
use super::JobError;
use crate::config::Config;
use crate::notify::{Event, EventKind};

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Nothing to do.
    Ok,
    /// offbox can back up, but this needs attention (the degraded exit code 75).
    Warn,
    /// offbox cannot back up (as this check covers) until this is fixed.
    Fail,
}

/// One check: what it found, and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A stable name: `config`, `keys.pin_file`, `target.NAME`, ...
    pub name: String,
    /// ok, warn or fail.
    pub status: CheckStatus,
    /// What was found; for a warning or failure, what is wrong.
    pub message: String,
    /// What to do (warnings and failures).
    pub hint: Option<String>,
    /// The error kind (`JobError::kind()` where there is one: `key`, `target.unreachable`;
    /// else `config`, `io`, `stale`); none when ok.
    pub error_kind: Option<String>,
    /// `temporary` or `permanent`: whether running it again unchanged may pass; none when ok.
    pub retry: Option<String>,
    /// The exit code this check alone gives (75 for a warning); none when ok.
    pub exit_code: Option<i32>,
}

impl Check {
    /// A passed check.
    pub(crate) fn ok(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Ok,
            message: message.into(),
            hint: None,
            error_kind: None,
            retry: None,
            exit_code: None,
        }
    }

    /// A failure described by a job error: its kind, retry class, exit code and hint.
    pub(crate) fn failed(name: impl Into<String>, e: &JobError) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Fail,
            message: e.to_string(),
            hint: Some(e.hint().to_string()),
            error_kind: Some(e.kind()),
            retry: Some(retry_name(e)),
            exit_code: Some(e.exit_code()),
        }
    }

    /// A warning described by a job error (network trouble): degraded, exit 75.
    pub(crate) fn warned(name: impl Into<String>, e: &JobError) -> Check {
        Check {
            status: CheckStatus::Warn,
            exit_code: Some(EXIT_TEMPFAIL),
            ..Check::failed(name, e)
        }
    }

    /// A failure of `kind` with exit code `exit` that no job error describes.
    pub(crate) fn fail(
        name: impl Into<String>,
        kind: &str,
        exit: i32,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Fail,
            message: message.into(),
            hint: Some(hint.into()),
            error_kind: Some(kind.to_string()),
            retry: Some("permanent".into()),
            exit_code: Some(exit),
        }
    }

    /// A warning of `kind` (degraded, exit 75).
    pub(crate) fn warn(
        name: impl Into<String>,
        kind: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            status: CheckStatus::Warn,
            exit_code: Some(EXIT_TEMPFAIL),
            ..Check::fail(name, kind, EXIT_TEMPFAIL, message, hint)
        }
    }
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every check passed (exit 0).
    Ok,
    /// Warnings only: offbox can back up (exit 75).
    Degraded,
    /// At least one failure: offbox cannot back up, or not everywhere (exit 1, 3, 4 or 69).
    Failed,
}

/// What `offbox selfcheck` prints (`--json`: `{"selfcheck":{…}}`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// ok, degraded or failed.
    pub status: Overall,
    /// The process exit code (see the module doc).
    pub exit_code: i32,
    /// Unix seconds at the start.
    pub checked_at: i64,
    /// This appliance (none when the config could not be read).
    pub appliance: Option<String>,
    /// The user the checks ran as (`offbox (uid 998)`): device and file access are checked
    /// for this user.
    pub user: String,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checked_at: i64, appliance: Option<String>, checks: Vec<Check>) -> Report {
        let codes = |s: CheckStatus| -> Vec<i32> {
            checks
                .iter()
                .filter(|c| c.status == s)
                .filter_map(|c| c.exit_code)
                .collect()
        };
        let (status, exit_code) = match (codes(CheckStatus::Fail), codes(CheckStatus::Warn)) {
            (f, _) if !f.is_empty() => (Overall::Failed, super::run::exit_code(f)),
            (_, w) if !w.is_empty() => (Overall::Degraded, EXIT_TEMPFAIL),
            _ => (Overall::Ok, 0),
        };
        Report {
            status,
            exit_code,
            checked_at,
            appliance,
            user: access::current_user(),
            checks,
        }
    }

    /// The checks that did not pass, failures first.
    pub fn problems(&self) -> Vec<&Check> {
        let mut v: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.status != CheckStatus::Ok)
            .collect();
        v.sort_by_key(|c| c.status != CheckStatus::Fail);
        v
    }

    /// The check whose exit code is the report's (the most severe failure, or the first
    /// warning).
    pub fn worst(&self) -> Option<&Check> {
        self.problems()
            .into_iter()
            .find(|c| c.exit_code == Some(self.exit_code))
    }
}

/// Runs every check against `cfg` (read from `config_path`) and sends the events; see the
/// module doc.
pub fn selfcheck(cfg: &Config, config_path: &Path, notices: &mut dyn Notices) -> Report {
    let now = now_unix();
    let mut checks = vec![setup::config(cfg, config_path), setup::state_dir(cfg)];
    checks.extend(setup::videos(cfg));
    let keys = keys::check(&cfg.keys);
    checks.extend(keys.checks);
    checks.extend(recovery::check(cfg, config_path, keys.signing.as_deref()));
    let key_failure = checks
        .iter()
        .find(|c| c.name.starts_with("keys.") && c.status == CheckStatus::Fail);
    if let Some(c) = key_failure {
        notices.emit(Event {
            kind: EventKind::KeyDeviceFailure,
            at: now,
            backup_kind: None,
            target: None,
            archive: None,
            error_kind: c.error_kind.clone(),
            retry: c.retry.clone(),
            message: format!("selfcheck: {}: {}", c.name, c.message),
        });
    }
    checks.extend(targets::check(cfg, notices, now));
    checks.extend(schedule::check(cfg, notices, now));
    let report = Report::new(now, Some(cfg.appliance_id()), checks);
    summary_event(&report, notices);
    report
}

/// The report when the config cannot be read or is invalid: the one `config` check, failed
/// (the other checks need the config). The caller sends [`summary_event`] to the channels
/// it still has (the journal).
pub fn config_unusable(e: &JobError) -> Report {
    Report::new(now_unix(), None, vec![Check::failed("config", e)])
}

/// Sends one `selfcheck_failed` or `selfcheck_degraded` event listing the checks that did not
/// pass; nothing when every check passed.
pub fn summary_event(report: &Report, notices: &mut dyn Notices) {
    let kind = match report.status {
        Overall::Ok => return,
        Overall::Degraded => EventKind::SelfcheckDegraded,
        Overall::Failed => EventKind::SelfcheckFailed,
    };
    let problems = report.problems();
    let worst = report.worst();
    let list: Vec<String> = problems
        .iter()
        .map(|c| format!("{} {}: {}", status_word(c.status), c.name, c.message))
        .collect();
    notices.emit(Event {
        kind,
        at: report.checked_at,
        backup_kind: None,
        target: None,
        archive: None,
        error_kind: worst.and_then(|c| c.error_kind.clone()),
        retry: worst.and_then(|c| c.retry.clone()),
        message: format!(
            "selfcheck {}: {} of {} checks did not pass (exit {}): {}; run `offbox selfcheck` for the hints",
            match report.status {
                Overall::Failed => "FAILED, offbox cannot back up as configured",
                _ => "degraded, offbox can back up but needs attention",
            },
            problems.len(),
            report.checks.len(),
            report.exit_code,
            list.join("; ")
        ),
    });
}

/// `ok`, `WARN`, `FAIL`.
pub fn status_word(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Ok => "ok",
        CheckStatus::Warn => "WARN",
        CheckStatus::Fail => "FAIL",
    }
}

#[cfg(test)]
mod tests;
