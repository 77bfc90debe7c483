//! `offbox selfcheck`: the boot service's one-shot check. One line per check on standard
//! output (`ok`, `WARN`, `FAIL`, with the hint), then the verdict; `--json` prints
//! `{"selfcheck":{…}}` instead. The checks and the exit code are in `jobs::selfcheck`.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::jobs::selfcheck::{self, CheckStatus, Overall, Report};
use crate::jobs::JobError;
use crate::notify::{Notifier, NotifyConfig};
use crate::targets::Retry;

/// The exit codes, for `offbox selfcheck --help`.
pub const EXIT_CODES: &str = concat!(
    "Exit codes:\n",
    "  0   ok: every check passed\n",
    "  75  degraded: offbox can back up, but a warning needs attention (a target unreachable for now, a stale or never-run kind, a PIN file others may read, a missing state directory)\n",
    "  4   failed: the key device (HSM or TPM unreachable, PIN missing or refused, KEK or signing key missing, device access, a PIN file others may write)\n",
    "  1   failed: the config (unreadable, no target, nothing to back up, no recovery key) or the state directory cannot be written\n",
    "  69  failed: a target refuses for good (credentials, host key, self-target, missing directory, permission, full)\n",
    "  2   usage: the command line does not parse\n",
    "With several failures, the code is the most severe one's: 4, then 1, then 69 (the order of `offbox run`).\n",
    "A failure or degradation is also sent as events (selfcheck_failed or selfcheck_degraded, key_device_failure, target_lost, stale) through [notify]."
);

/// `offbox selfcheck`.
pub fn selfcheck_cmd(config_path: &Path, json: bool) -> Result<(), JobError> {
    let report = match Config::load(config_path) {
        Ok(cfg) => {
            let mut n = Notifier::new(&cfg.notify, &cfg.appliance_id(), &cfg.state_dir());
            selfcheck::selfcheck(&cfg, config_path, &mut n)
        }
        Err(e) => {
            let report = selfcheck::config_unusable(&JobError::Config(e));
            // Without a config only the local journal is known.
            let state_dir: PathBuf = std::env::var_os("OFFBOX_STATE_DIR")
                .filter(|v| !v.is_empty())
                .map_or_else(|| crate::config::DEFAULT_STATE_DIR.into(), PathBuf::from);
            let mut n = Notifier::new(&NotifyConfig::default(), &appliance(), &state_dir);
            selfcheck::summary_event(&report, &mut n);
            report
        }
    };
    if json {
        println!("{}", serde_json::json!({ "selfcheck": report }));
    } else {
        print(&report);
    }
    verdict(&report)
}

/// The host name, for the journal event when the config cannot be read.
fn appliance() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn print(r: &Report) {
    for c in &r.checks {
        println!(
            "{:<4} {}: {}",
            selfcheck::status_word(c.status),
            c.name,
            c.message
        );
        if c.status != CheckStatus::Ok {
            if let Some(h) = &c.hint {
                println!("     do: {h}");
            }
        }
    }
    let problems = r.problems();
    println!(
        "selfcheck: {} ({} checks, {} failed, {} warned) as {}",
        match r.status {
            Overall::Ok => "ok",
            Overall::Degraded => "DEGRADED",
            Overall::Failed => "FAILED",
        },
        r.checks.len(),
        problems
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .count(),
        problems
            .iter()
            .filter(|c| c.status == CheckStatus::Warn)
            .count(),
        r.user
    );
}

/// Ok for exit 0; else the report's exit code, kind and retry class as a
/// [`JobError::Partial`], whose message names the checks that did not pass.
fn verdict(r: &Report) -> Result<(), JobError> {
    let Some(worst) = r.worst() else {
        return Ok(());
    };
    let names: Vec<&str> = r.problems().iter().map(|c| c.name.as_str()).collect();
    Err(JobError::Partial {
        summary: format!(
            "selfcheck: {}: {} (see the lines above)",
            match r.status {
                Overall::Failed => "offbox cannot back up as configured",
                _ => "degraded",
            },
            names.join(", ")
        ),
        code: r.exit_code,
        kind: worst.error_kind.clone().unwrap_or_default(),
        retry: if worst.retry.as_deref() == Some("temporary") {
            Retry::Temporary
        } else {
            Retry::Permanent
        },
    })
}
