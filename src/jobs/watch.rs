//! `offbox watch`: notices a lost target between backups (the timer runs it every 5
//! minutes). Cheap by design: no HSM or TPM operation and no archive read; for each
//! configured target it connects through the guard, writes, reads back and deletes a 4 KiB
//! probe file, reads the free space and the directory listing, and applies the capacity
//! rule. The used bytes of the measured path are walked at most once an hour
//! ([`MEASURE_MAX_AGE_SECS`]; the figure is cached in the state file).
//!
//! It reports transitions through [`Notices::condition`] (`target_lost`/`target_recovered`,
//! `capacity_low`/`capacity_ok`, `stale`/`fresh`), retries the queued notifications first,
//! and records what it saw in the state file. It does not take the run lock, so it runs
//! during a long backup.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::capacity::{Capacity, Measured};
use super::notices::{self, capacity_condition, lost_condition, stale_conditions, Notices};
use super::run::exit_code;
use super::state::StateFile;
use super::target::{self as job, now_unix, target_err};
use super::JobError;
use crate::config::Config;
use crate::guard::SelfIdentity;
use crate::targets;

/// How old a cached measurement of the measured path may be for `watch`.
pub(crate) const MEASURE_MAX_AGE_SECS: i64 = 3600;

/// What `watch` saw of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetWatch {
    /// The target name.
    pub target: String,
    /// Whether it was reached and the probe file went through.
    pub reachable: bool,
    /// For a failure: `JobError::kind()`.
    pub error_kind: Option<String>,
    /// For a failure: `temporary` or `permanent`.
    pub retry: Option<String>,
    /// For a failure: the exit code it maps to.
    pub exit_code: Option<i32>,
    /// For a failure: the message.
    pub message: Option<String>,
    /// Connect, and probe, in milliseconds.
    pub connect_ms: f64,
    /// Probe time in milliseconds.
    pub probe_ms: f64,
    /// The capacity figures, when reached.
    pub capacity: Option<Capacity>,
    /// A shortfall or an unknown free space.
    pub warning: Option<String>,
}

/// The summary of a watch.
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    /// Unix seconds at the start.
    pub checked_at: i64,
    /// Every configured target.
    pub targets: Vec<TargetWatch>,
    /// Queued notifications delivered.
    pub queued_delivered: usize,
    /// Warnings not tied to a target (state file).
    pub warnings: Vec<String>,
    /// 0 when every target was reached, else the most severe failure's code (the rule of
    /// [`exit_code`]).
    pub exit_code: i32,
}

/// Watches every configured target; see the module doc.
pub fn watch(cfg: &Config, notices: &mut dyn Notices) -> Result<WatchReport, JobError> {
    let checked_at = now_unix();
    let queued_delivered = notices.flush();
    let state_file = StateFile::new(&cfg.state_dir());
    let state = state_file.read();
    let measured = Measured::cached_or_walk(
        state.measured.as_ref(),
        &cfg.capacity.measured_path,
        checked_at,
        MEASURE_MAX_AGE_SECS,
    );
    let me = SelfIdentity::load();
    let appliance = cfg.appliance_id();
    let mut out = Vec::new();
    for name in cfg.targets.named.keys() {
        let w = watch_one(cfg, name, &me, &appliance, &measured);
        let now = now_unix();
        let lost = w.as_ref().err().filter(|e| notices::is_access_failure(e));
        lost_condition(notices, name, lost, now);
        let is_lost = lost.is_some();
        let mut tw = TargetWatch {
            target: name.clone(),
            reachable: w.is_ok(),
            error_kind: None,
            retry: None,
            exit_code: None,
            message: None,
            connect_ms: 0.0,
            probe_ms: 0.0,
            capacity: None,
            warning: None,
        };
        match w {
            Ok((c, connect, probe)) => {
                capacity_condition(notices, name, &c, now);
                tw.connect_ms = ms(connect);
                tw.probe_ms = ms(probe);
                tw.warning = c.warning();
                tw.capacity = Some(c);
            }
            Err(e) => {
                tw.error_kind = Some(e.kind());
                tw.retry = Some(notices::retry_name(&e));
                tw.exit_code = Some(e.exit_code());
                tw.message = Some(e.to_string());
            }
        }
        let rec = tw.clone();
        let seen = rec.reachable || is_lost;
        state_file.update(|st| {
            if seen {
                st.target_seen(name, rec.reachable, rec.message.clone(), now);
            }
            if let Some(c) = rec.capacity {
                st.targets.entry(name.clone()).or_default().capacity = Some(c);
            }
        })?;
        out.push(tw);
    }
    let m = measured.clone();
    let now = now_unix();
    let state = state_file.update(|st| {
        st.measured = Some(m);
        // The stale clock of a kind starts when it is first scheduled.
        for s in super::due::scheduled(cfg) {
            for t in &s.targets {
                st.kind_mut(s.run_kind.name, t, now);
            }
        }
        st.clone()
    })?;
    stale_conditions(cfg, &state, notices, now);
    Ok(WatchReport {
        checked_at,
        exit_code: exit_code(out.iter().filter_map(|t| t.exit_code)),
        targets: out,
        queued_delivered,
        warnings: state.notes,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Connect, probe, capacity: the figures, the connect time and the probe time.
fn watch_one(
    cfg: &Config,
    name: &str,
    me: &SelfIdentity,
    appliance: &str,
    measured: &Measured,
) -> Result<(Capacity, Duration, Duration), JobError> {
    let t0 = Instant::now();
    let spec = cfg
        .targets
        .resolve(Some(name))
        .map_err(|e| target_err("choosing the target", e))?;
    let mut t =
        targets::connect(&spec, me).map_err(|e| target_err("connecting to the target", e))?;
    let connect = t0.elapsed();
    let t1 = Instant::now();
    job::probe(t.as_mut(), appliance)?;
    let probe = t1.elapsed();
    let c = job::capacity_of(t.as_mut(), appliance, &cfg.capacity, measured)?;
    Ok((c, connect, probe))
}
