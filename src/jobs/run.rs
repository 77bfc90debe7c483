//! `offbox run`: one scheduled pass over every enabled kind of `[schedule.KIND]`.
//!
//! With the appliance's run lock held, for each kind in the fixed order of
//! [`crate::config::schedule::RUN_KINDS`] (secrets first), on each of its targets, when
//! due ([`super::due`]) or forced:
//! 1. connect (through the guard) and apply the capacity rule ([`super::capacity`]): a
//!    shortfall is a warning and the `capacity_low` condition; an archive that clearly
//!    will not fit (the last archive of this kind is larger than the free space) fails
//!    this kind with `target.full` before anything is sent;
//! 2. back up exactly as `backup create --to` does ([`super::publish`]);
//! 3. with `verify_after`, read the new archive back and check its structure and signature
//!    under this appliance's signing keys (keyless: no data key is used);
//! 4. prune this kind on this target to its retention.
//!
//! One failing kind does not stop the others. Every outcome is recorded in the state file
//! ([`super::state`]) and reported through [`Notices`] (see [`super::notices`] for which
//! event each failure raises). The exit code is [`exit_code`] of the failures.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::capacity::{self, Capacity, Measured};
use super::due::{self, scheduled, Scheduled};
use super::lock::RunLock;
use super::notices::{self, capacity_condition, lost_condition, stale_conditions, Notices};
use super::state::{Failure, StateFile, Success};
use super::target::{self as job, now_unix, target_err, Retention};
use super::{signature, JobError};
use crate::config::Config;
use crate::format::ArchiveKind;
use crate::guard::SelfIdentity;
use crate::keys::open_device;
use crate::notify::EventKind;
use crate::progress::Meter;
use crate::targets::{self, Target, TargetError};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run every selected kind now, due or not (`--now`).
    pub force: bool,
    /// Only these kinds, forced (`--kind K`, repeatable); empty: every enabled kind.
    pub kinds: Vec<String>,
}

/// What happened to one kind on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Published (and verified, and pruned).
    Succeeded,
    /// Failed: see the error.
    Failed,
    /// Not due yet: see `next_due`.
    NotDue,
}

/// One kind on one target, as `run --json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    /// The kind (`secrets`, `system`).
    pub kind: &'static str,
    /// The target name.
    pub target: String,
    /// What happened.
    pub outcome: Outcome,
    /// For a failure: `JobError::kind()`.
    pub error_kind: Option<String>,
    /// For a failure: `temporary` or `permanent`.
    pub retry: Option<String>,
    /// For a failure: the exit code it maps to.
    pub exit_code: Option<i32>,
    /// For a failure: the message (it says what to do).
    pub message: Option<String>,
    /// The archive published.
    pub archive: Option<String>,
    /// Archive bytes written.
    pub bytes: Option<u64>,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Whether the read-back verification passed (`None`: not asked).
    pub verified: Option<bool>,
    /// Archives of this kind deleted by the retention.
    pub pruned: Vec<String>,
    /// Unix seconds when the kind is next due.
    pub next_due: i64,
    /// Things the operator should know (capacity, stale temporaries...).
    pub warnings: Vec<String>,
}

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Unix seconds at the start.
    pub started: i64,
    /// Every scheduled kind on every target, in run order.
    pub results: Vec<KindResult>,
    /// Warnings not tied to one kind (state file).
    pub warnings: Vec<String>,
    /// Queued notifications delivered at the start of the run.
    pub queued_delivered: usize,
    /// The process exit code: see [`exit_code`].
    pub exit_code: i32,
}

/// The exit code of a run: 0 when nothing failed, else the most severe failure's code, in
/// this order: 3 (integrity: an archive just written does not verify), 4 (key device),
/// 1 (config, usage, local I/O), 69 (a target failure a retry cannot fix), 75 (try
/// again later).
pub fn exit_code(codes: impl IntoIterator<Item = i32>) -> i32 {
    const ORDER: [i32; 5] = [
        3,
        4,
        1,
        super::error::EXIT_TARGET,
        super::error::EXIT_TEMPFAIL,
    ];
    let codes: Vec<i32> = codes.into_iter().filter(|c| *c != 0).collect();
    ORDER
        .iter()
        .copied()
        .find(|c| codes.contains(c))
        .or(codes.first().copied())
        .unwrap_or(0)
}

/// Runs one pass; see the module doc. `lock` is the held run lock.
pub fn run(
    cfg: &Config,
    lock: &RunLock,
    notices: &mut dyn Notices,
    opts: &RunOptions,
) -> Result<RunReport, JobError> {
    let started = now_unix();
    let all = scheduled(cfg);
    if let Some(k) = opts
        .kinds
        .iter()
        .find(|k| !all.iter().any(|s| s.run_kind.name == k.as_str()))
    {
        let names: Vec<&str> = all.iter().map(|s| s.run_kind.name).collect();
        return Err(JobError::refused(
            format!("run --kind {k}"),
            super::error::Policy::Usage,
            format!(
                "{k} is not an enabled kind of [schedule] (enabled: {}); add a [schedule.{k}] table (docs/operator-guide.md)",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            ),
        ));
    }
    let queued_delivered = notices.flush();
    let state_file = StateFile::new(&cfg.state_dir());
    let state = state_file.read();
    let mut pass = Pass {
        cfg,
        lock,
        notices,
        me: SelfIdentity::load(),
        appliance: cfg.appliance_id(),
        measured: None,
        state_file: &state_file,
    };
    let mut results = Vec::new();
    for s in &all {
        let forced = opts.force || opts.kinds.iter().any(|k| k == s.run_kind.name);
        for t in &s.targets {
            let next = due::next_due(s.sched, state.kind(s.run_kind.name, t));
            if !forced && now_unix() < next {
                results.push(not_due(s.run_kind.name, t, next));
                continue;
            }
            results.push(pass.kind_to(s, t)?);
        }
    }
    let warnings = state.notes;
    stale_conditions(cfg, &state_file.read(), pass.notices, now_unix());
    Ok(RunReport {
        started,
        exit_code: exit_code(results.iter().filter_map(|r| r.exit_code)),
        results,
        warnings,
        queued_delivered,
    })
}

fn not_due(kind: &'static str, target: &str, next_due: i64) -> KindResult {
    KindResult {
        kind,
        target: target.to_string(),
        outcome: Outcome::NotDue,
        error_kind: None,
        retry: None,
        exit_code: None,
        message: None,
        archive: None,
        bytes: None,
        duration_secs: 0.0,
        verified: None,
        pruned: Vec::new(),
        next_due,
        warnings: Vec::new(),
    }
}

/// What one pass holds while it goes through the kinds.
struct Pass<'a> {
    cfg: &'a Config,
    lock: &'a RunLock,
    notices: &'a mut dyn Notices,
    me: SelfIdentity,
    appliance: String,
    /// Measured once per run, when the first kind is due.
    measured: Option<Measured>,
    state_file: &'a StateFile,
}

/// What a successful backup of one kind left.
struct Done {
    success: Success,
    verified: Option<bool>,
    pruned: Vec<String>,
}

impl Pass<'_> {
    /// One kind to one target: runs it, records it, reports it.
    fn kind_to(&mut self, s: &Scheduled<'_>, target: &str) -> Result<KindResult, JobError> {
        let kind = s.run_kind.name;
        let t0 = Instant::now();
        let started = now_unix();
        let mut warnings = Vec::new();
        let result = self.attempt(s, target, &mut warnings);
        let now = now_unix();
        let mut r = not_due(kind, target, 0);
        r.duration_secs = t0.elapsed().as_secs_f64();
        r.warnings = warnings;
        match result {
            Ok(done) => {
                r.outcome = Outcome::Succeeded;
                r.archive = Some(done.success.archive.clone());
                r.bytes = Some(done.success.bytes);
                r.verified = done.verified;
                r.pruned = done.pruned;
                let mut ev = notices::event(
                    EventKind::BackupSucceeded,
                    now,
                    Some(kind),
                    target,
                    format!(
                        "the {kind} backup to {target} succeeded: {} ({} bytes)",
                        done.success.archive, done.success.bytes
                    ),
                );
                ev.archive = Some(done.success.archive.clone());
                self.notices.emit(ev);
                let success = done.success;
                self.state_file.update(|st| {
                    st.kind_mut(kind, target, started)
                        .succeeded(started, success)
                })?;
            }
            Err(e) => {
                r.outcome = Outcome::Failed;
                r.error_kind = Some(e.kind());
                r.retry = Some(notices::retry_name(&e));
                r.exit_code = Some(e.exit_code());
                r.message = Some(e.to_string());
                self.notices
                    .emit(notices::failure_event(&e, now, kind, target));
                let failure = Failure {
                    at: now,
                    error_kind: e.kind(),
                    retry: notices::retry_name(&e),
                    message: e.to_string(),
                };
                self.state_file
                    .update(|st| st.kind_mut(kind, target, started).failed(started, failure))?;
            }
        }
        let state = self.state_file.read();
        r.next_due = due::next_due(s.sched, state.kind(kind, target));
        Ok(r)
    }

    /// Connects, checks the space, backs up, verifies, prunes.
    fn attempt(
        &mut self,
        s: &Scheduled<'_>,
        target: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Done, JobError> {
        let kind = s.run_kind.name;
        let mut t = self.connect(target)?;
        let measured = self
            .measured
            .get_or_insert_with(|| Measured::walk(&self.cfg.capacity.measured_path, now_unix()))
            .clone();
        let cap = self.capacity(t.as_mut(), target, &measured, warnings);
        let expected = self
            .state_file
            .read()
            .kind(kind, target)
            .and_then(|k| k.last_success.as_ref().map(|s| s.bytes));
        if let Some(why) = capacity::will_not_fit(expected, cap.and_then(|c| c.free_bytes), kind) {
            return Err(target_err(
                "checking the space before sending",
                TargetError::NoSpace {
                    target: t.url(),
                    detail: why,
                },
            ));
        }
        let mut device = open_device(&self.cfg.keys)?;
        let t0 = Instant::now();
        let meter = Arc::new(Meter::default());
        let (summary, published) = if s.run_kind.kind == ArchiveKind::Videos {
            let (v, p) = super::videos::backup::run(
                self.cfg,
                t.as_mut(),
                target,
                device.as_mut(),
                meter,
                self.lock,
                Default::default(),
            )?;
            (v.backup, p)
        } else {
            let prepared = super::publish::prepare(self.cfg, s.run_kind.kind, &[])?;
            prepared.publish_to(t.as_mut(), device.as_mut(), meter, self.lock)?
        };
        let duration_secs = t0.elapsed().as_secs_f64();
        warnings.extend(
            published
                .cleaned
                .iter()
                .map(|c| format!("removed the leftover {c} of an earlier interrupted upload")),
        );
        let verified = if s.sched.verify_after {
            verify(t.as_mut(), &published.name, device.as_mut())?;
            Some(true)
        } else {
            None
        };
        let rules = Retention {
            keep_last: s.sched.keep_last,
            keep_within_days: s.sched.keep_within_days,
        };
        let pruned = if s.run_kind.kind == ArchiveKind::Videos {
            // Chains: [videos] keep_days, and whatever kept points need.
            let mut trust = signature::Trust::new();
            for k in device.signing_keys()? {
                trust.add(k, "this appliance's signing key");
            }
            super::videos::prune::prune(
                t.as_mut(),
                &self.appliance,
                &trust,
                self.cfg.videos.keep_days,
                now_unix(),
                false,
                self.lock,
            )?
            .delete
            .into_iter()
            .map(|d| d.name)
            .collect()
        } else {
            job::prune_kind(
                t.as_mut(),
                &self.appliance,
                Some(kind),
                rules,
                false,
                self.lock,
            )?
            .delete
        };
        Ok(Done {
            success: Success {
                at: now_unix(),
                archive: published.name,
                bytes: summary.bytes_out,
                duration_secs,
            },
            verified,
            pruned,
        })
    }

    /// Connects to `target`, and reports the `target_lost` condition either way.
    fn connect(&mut self, target: &str) -> Result<Box<dyn Target>, JobError> {
        let r = self
            .cfg
            .targets
            .resolve(Some(target))
            .and_then(|spec| targets::connect(&spec, &self.me))
            .map_err(|e| target_err("connecting to the target", e));
        let lost = r.as_ref().err().filter(|e| notices::is_access_failure(e));
        lost_condition(self.notices, target, lost, now_unix());
        // Other failures (a config mistake, a transport not built) say nothing about the
        // target itself.
        let seen = match &r {
            Ok(_) => Some((true, None)),
            Err(e) if notices::is_access_failure(e) => Some((false, Some(e.to_string()))),
            Err(_) => None,
        };
        if let Some((reachable, error)) = seen {
            self.state_file
                .update(|st| st.target_seen(target, reachable, error, now_unix()))?;
        }
        r
    }

    /// The capacity figures, recorded and reported; a failure to read them is a warning.
    fn capacity(
        &mut self,
        t: &mut dyn Target,
        target: &str,
        measured: &Measured,
        warnings: &mut Vec<String>,
    ) -> Option<Capacity> {
        match job::capacity_of(t, &self.appliance, &self.cfg.capacity, measured) {
            Ok(c) => {
                if let Some(w) = c.warning() {
                    warnings.push(w);
                }
                capacity_condition(self.notices, target, &c, now_unix());
                let rec = c.clone();
                let m = measured.clone();
                if let Err(e) = self.state_file.update(|st| {
                    st.targets.entry(target.into()).or_default().capacity = Some(rec);
                    st.measured = Some(m);
                }) {
                    warnings.push(e.to_string());
                }
                Some(c)
            }
            Err(e) => {
                warnings.push(format!("the capacity could not be checked: {e}"));
                None
            }
        }
    }
}

/// Reads `name` back from the target and checks its structure and signature under this
/// appliance's signing keys (no data key is used).
fn verify(
    t: &mut dyn Target,
    name: &str,
    device: &mut dyn crate::keys::Device,
) -> Result<(), JobError> {
    let mut trust = signature::Trust::new();
    for k in device.signing_keys()? {
        trust.add(k, "this appliance's signing key");
    }
    let reader = t
        .open(name)
        .map_err(|e| target_err(&format!("reading {name} back"), e))?;
    let ahead = targets::pipeline::Prefetched::new(reader)
        .map_err(|e| JobError::io("starting the download thread", e))?;
    signature::verify_keyless(ahead, &trust)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_severe_failure_sets_the_exit_code() {
        assert_eq!(exit_code([]), 0);
        assert_eq!(exit_code([0, 0]), 0);
        assert_eq!(exit_code([75, 69]), 69);
        assert_eq!(exit_code([75, 1, 69]), 1);
        assert_eq!(exit_code([75, 4, 3]), 3);
        assert_eq!(exit_code([75, 4]), 4);
        assert_eq!(exit_code([75]), 75);
    }

    #[test]
    fn kinds_run_secrets_first_on_their_targets() {
        let text = "[keys]\nbackend = \"tpm\"\n[keys.tpm]\ntcti = \"device:/dev/tpmrm0\"\n[targets.a]\nurl = \"ssh://u@h/p\"\n[targets.b]\nurl = \"ssh://u@h/q\"\n[targets]\ndefault = \"b\"\n[schedule.system]\nkeep_last = 2\n[schedule.secrets]\ntargets = [\"a\", \"b\"]\nkeep_within_days = 9\n";
        let cfg = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let s = scheduled(&cfg);
        let got: Vec<(&str, Vec<String>)> = s
            .iter()
            .map(|s| (s.run_kind.name, s.targets.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("secrets", vec!["a".to_string(), "b".to_string()]),
                ("system", vec!["b".to_string()])
            ]
        );
    }
}
