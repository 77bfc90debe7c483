//! The service commands: `offbox run` (one scheduled pass), `offbox watch` (the cheap
//! check between backups) and `offbox status`. Arguments and reports; the work is in
//! `jobs::run`, `jobs::watch` and `jobs::status`.
//!
//! With `--json`, `run` prints `{"run":{…}}`, `watch` `{"watch":{…}}` and `status`
//! `{"status":{…}}` on standard output; the human lines go to standard error (`run`,
//! `watch`) or standard output (`status`).

use std::path::Path;

use clap::Args;

use crate::config::Config;
use crate::jobs::run::{self, KindResult, Outcome, RunOptions};
use crate::jobs::status::{self, Status};
use crate::jobs::watch;
use crate::jobs::JobError;
use crate::notify::format::rfc3339;
use crate::notify::Notifier;
use crate::targets::Retry;

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Back up every enabled kind now, due or not.
    #[arg(long)]
    pub now: bool,
    /// Back up only this kind, now (secrets, system); repeat it for several.
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// When another offbox run holds the run lock, wait up to SECS for it, then exit 75.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
}

fn notifier(cfg: &Config) -> Notifier {
    Notifier::new(&cfg.notify, &cfg.appliance_id(), &cfg.state_dir())
}

/// `offbox run`.
pub fn run_cmd(config_path: &Path, a: RunArgs, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    // Before anything else: a second run changes nothing, and exits 75 (busy).
    let lock = super::targets::run_lock(&cfg, a.wait)?;
    let mut n = notifier(&cfg);
    let opts = RunOptions {
        force: a.now,
        kinds: a.kinds,
    };
    let report = run::run(&cfg, &lock, &mut n, &opts)?;
    for w in &report.warnings {
        eprintln!("offbox: warning: {w}");
    }
    for r in &report.results {
        print_result(r);
    }
    if json {
        println!("{}", serde_json::json!({ "run": report }));
    }
    if report.results.is_empty() {
        eprintln!("offbox: run: no kind is enabled; add [schedule.KIND] tables to the config (docs/operator-guide.md)");
    }
    let failed: Vec<&KindResult> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    let worst = failed
        .iter()
        .find(|r| r.exit_code == Some(report.exit_code));
    match worst {
        None => Ok(()),
        Some(w) => Err(JobError::Partial {
            summary: format!(
                "run: {} of {} backup(s) failed ({}); see the lines above or `offbox status`",
                failed.len(),
                report.results.len(),
                failed
                    .iter()
                    .map(|r| format!(
                        "{} to {}: {}",
                        r.kind,
                        r.target,
                        r.error_kind.as_deref().unwrap_or("?")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            code: report.exit_code,
            kind: w.error_kind.clone().unwrap_or_default(),
            retry: retry_of(w.retry.as_deref()),
        }),
    }
}

fn retry_of(r: Option<&str>) -> Retry {
    if r == Some("temporary") {
        Retry::Temporary
    } else {
        Retry::Permanent
    }
}

fn print_result(r: &KindResult) {
    for w in &r.warnings {
        eprintln!("offbox: warning: {} to {}: {w}", r.kind, r.target);
    }
    match r.outcome {
        Outcome::NotDue => eprintln!(
            "offbox: {} to {}: not due until {}",
            r.kind,
            r.target,
            rfc3339(r.next_due)
        ),
        Outcome::Succeeded => eprintln!(
            "offbox: {} to {}: published {} ({} bytes, {:.1} s){}{}",
            r.kind,
            r.target,
            r.archive.as_deref().unwrap_or("?"),
            r.bytes.unwrap_or(0),
            r.duration_secs,
            if r.verified == Some(true) {
                ", verified"
            } else {
                ""
            },
            if r.pruned.is_empty() {
                String::new()
            } else {
                format!(", pruned {}", r.pruned.join(" "))
            }
        ),
        Outcome::Failed => eprintln!(
            "offbox: {} to {}: FAILED ({}, retry {}): {}",
            r.kind,
            r.target,
            r.error_kind.as_deref().unwrap_or("?"),
            r.retry.as_deref().unwrap_or("?"),
            r.message.as_deref().unwrap_or("")
        ),
    }
}

/// `offbox watch`.
pub fn watch_cmd(config_path: &Path, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let mut n = notifier(&cfg);
    let report = watch::watch(&cfg, &mut n)?;
    for w in &report.warnings {
        eprintln!("offbox: warning: {w}");
    }
    for t in &report.targets {
        match &t.message {
            None => eprintln!(
                "offbox: target {} reachable: connect={:.1}ms probe={:.1}ms {}",
                t.target,
                t.connect_ms,
                t.probe_ms,
                t.capacity.as_ref().map_or(String::new(), |c| c.figures())
            ),
            Some(m) => eprintln!("offbox: target {} FAILED: {m}", t.target),
        }
        if let Some(w) = &t.warning {
            eprintln!("offbox: warning: target {}: {w}", t.target);
        }
    }
    if json {
        println!("{}", serde_json::json!({ "watch": report }));
    }
    let worst = report
        .targets
        .iter()
        .find(|t| t.exit_code.is_some() && t.exit_code == Some(report.exit_code));
    match worst {
        None => Ok(()),
        Some(w) => Err(JobError::Partial {
            summary: format!(
                "watch: {} of {} target(s) failed; see the lines above or `offbox status`",
                report
                    .targets
                    .iter()
                    .filter(|t| t.message.is_some())
                    .count(),
                report.targets.len()
            ),
            code: report.exit_code,
            kind: w.error_kind.clone().unwrap_or_default(),
            retry: retry_of(w.retry.as_deref()),
        }),
    }
}

/// `offbox status`.
pub fn status_cmd(config_path: &Path, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let s = status::status(&cfg, notifier(&cfg).pending());
    if json {
        println!("{}", serde_json::json!({ "status": s }));
        return Ok(());
    }
    print_status(&s);
    Ok(())
}

fn when(t: Option<i64>) -> String {
    t.map_or("never".into(), rfc3339)
}

fn print_status(s: &Status) {
    for w in &s.warnings {
        eprintln!("offbox: warning: {w}");
    }
    println!("appliance {} at {}", s.appliance, rfc3339(s.now));
    for k in &s.kinds {
        println!(
            "kind {} to {}: last success {}{}; next due {}{}",
            k.kind,
            k.target,
            when(k.last_success.as_ref().map(|x| x.at)),
            k.last_success.as_ref().map_or(String::new(), |x| format!(
                " ({}, {} bytes)",
                x.archive, x.bytes
            )),
            if k.next_due == 0 {
                "at the next run".into()
            } else {
                rfc3339(k.next_due)
            },
            k.stale_since
                .map_or(String::new(), |t| format!("; STALE since {}", rfc3339(t)))
        );
        if let Some(f) = &k.last_failure {
            println!(
                "  {} failure at {}: {} (retry {}): {}",
                if k.failing { "LAST" } else { "earlier" },
                rfc3339(f.at),
                f.error_kind,
                f.retry,
                f.message
            );
        }
    }
    for t in &s.targets {
        println!(
            "target {}: {}{}{}",
            t.target,
            t.state,
            t.since
                .map_or(String::new(), |x| format!(" since {}", rfc3339(x))),
            t.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
        );
        if let Some(c) = &t.capacity {
            println!("  capacity: {}", c.figures());
        }
    }
    for c in &s.notifications.conditions {
        println!(
            "condition {} ({}) since {}: {}",
            c.key,
            c.event,
            rfc3339(c.since),
            c.message
        );
    }
    for q in &s.notifications.queued {
        println!(
            "queued {} for {} since {} ({} attempts): {}",
            q.event,
            q.channel,
            rfc3339(q.queued_at),
            q.attempts,
            q.last_error
        );
    }
}
