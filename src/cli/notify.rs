//! `offbox notify test`: one test event through every configured channel (the journal,
//! email, each syslog collector), one line per channel, exit 0 only when every channel
//! delivered.

use std::path::Path;

use clap::Subcommand;

use crate::config::Config;
use crate::jobs::JobError;
use crate::notify::{ChannelResult, Notifier};

/// `notify` subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Send a test event through every configured channel and report each channel's
    /// result; exit 0 only when all delivered. Nothing is queued.
    Test,
}

/// Runs a `notify` subcommand.
pub fn notify_cmd(config_path: &Path, cmd: NotifyCmd, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    match cmd {
        NotifyCmd::Test => {
            let mut n = Notifier::new(&cfg.notify, &cfg.appliance_id(), &cfg.state_dir());
            let results = n.test();
            report(&results, json);
            check(
                &results,
                cfg.notify.email.is_none() && cfg.notify.syslog.is_empty(),
            )
        }
    }
}

fn report(results: &[ChannelResult], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "notify_test": results }));
        return;
    }
    for r in results {
        match &r.error {
            None => println!("{}: delivered", r.channel),
            Some(e) => println!("{}: FAILED: {e}", r.channel),
        }
    }
}

fn check(results: &[ChannelResult], only_journal: bool) -> Result<(), JobError> {
    if only_journal {
        eprintln!("offbox: no [notify.email] or [[notify.syslog]] is configured: only the local journal gets events (see docs/operator-guide.md, Notifications)");
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.delivered())
        .map(|r| {
            format!(
                "{}: {}",
                r.channel,
                r.error.as_deref().unwrap_or("not delivered")
            )
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(JobError::Notify(format!(
        "{} of {} notification channels did not deliver the test event:\n  {}",
        failed.len(),
        results.len(),
        failed.join("\n  ")
    )))
}
