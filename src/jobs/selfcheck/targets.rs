//! `target.NAME`, one per configured target: it resolves, passes the self-target guard,
//! connects and authenticates, and takes a probe file (written, published, read back and
//! deleted: [`super::super::target::probe`], as `watch` does). Network trouble that a retry
//! may fix (unreachable, timeout) is a warning at boot; a failure a retry cannot fix
//! (credentials, host key, self-target, missing directory, permission, full) fails.
//!
//! The outcome raises or clears the `target_lost` condition shared with `watch`, so a boot
//! reports a lost target once, and not again when `watch` sees the same.

use std::time::Instant;

use super::super::notices::{is_access_failure, lost_condition, Notices};
use super::super::target::{probe, target_err};
use super::super::JobError;
use super::Check;
use crate::config::Config;
use crate::guard::SelfIdentity;
use crate::targets::{self, Retry};

/// One check per configured target, in name order.
pub(super) fn check(cfg: &Config, notices: &mut dyn Notices, now: i64) -> Vec<Check> {
    let me = SelfIdentity::load();
    let appliance = cfg.appliance_id();
    cfg.targets
        .named
        .keys()
        .map(|name| {
            let check_name = format!("target.{name}");
            let outcome = one(cfg, name, &me, &appliance);
            let lost = outcome.as_ref().err().filter(|e| is_access_failure(e));
            lost_condition(notices, name, lost, now);
            match outcome {
                Ok(message) => Check::ok(check_name, message),
                Err(e) if e.retry() == Retry::Temporary => Check::warned(check_name, &e),
                Err(e) => Check::failed(check_name, &e),
            }
        })
        .collect()
}

/// Resolve, guard, connect, probe: what was done, with the times.
fn one(cfg: &Config, name: &str, me: &SelfIdentity, appliance: &str) -> Result<String, JobError> {
    let spec = cfg
        .targets
        .resolve(Some(name))
        .map_err(|e| target_err("choosing the target", e))?;
    let t0 = Instant::now();
    let mut t =
        targets::connect(&spec, me).map_err(|e| target_err("connecting to the target", e))?;
    let connect = t0.elapsed();
    let t1 = Instant::now();
    probe(t.as_mut(), appliance)?;
    Ok(format!(
        "{}: resolved, passed the guard, connected in {:.0} ms; a probe file was written, read back and deleted in {:.0} ms",
        spec.url,
        connect.as_secs_f64() * 1000.0,
        t1.elapsed().as_secs_f64() * 1000.0
    ))
}
