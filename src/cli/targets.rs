//! The target commands and options: `target check|ssh-key|accept-host-key`, `backup list`,
//! `prune`, `backup create --to`, and `restore`/`verify --from`. Arguments and handlers;
//! the work is in `jobs::target` and `targets`.

use std::io::Read;
use std::path::Path;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::guard::SelfIdentity;
use crate::jobs::backup::BackupSummary;
use crate::jobs::capacity::Measured;
use crate::jobs::lock::RunLock;
use crate::jobs::target::{self as job, target_err, Retention};
use crate::jobs::JobError;
use crate::targets::pipeline::Prefetched;
use crate::targets::{self, Target, TargetsConfig};

/// `target` subcommands.
#[derive(Debug, Subcommand)]
pub enum TargetCmd {
    /// Resolve, run the self-target guard, connect, write and delete a probe file, and
    /// report latency and the capacity rule: free space plus this appliance's archives vs
    /// 150% of the used bytes of /var ([capacity] ratio and measured_path).
    Check {
        /// A configured target name or a URL [default: every configured target].
        #[arg(value_name = "NAME|URL")]
        target: Option<String>,
    },
    /// Create this appliance's SSH key pair if missing, and print the public key for the
    /// server's authorized_keys.
    SshKey,
    /// Pin an SSH server's host key. Without --fingerprint, print it and change nothing.
    AcceptHostKey {
        /// A configured target name or an ssh:// URL.
        #[arg(value_name = "NAME|URL")]
        target: String,
        /// The fingerprint you checked on the server (`ssh-keygen -lf KEY.pub`), as
        /// printed by the first failed connection: SHA256:...
        #[arg(long, value_name = "SHA256:...")]
        fingerprint: Option<String>,
    },
}

/// `backup list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// A configured target name or a URL [default: targets.default, or the only target].
    #[arg(long, value_name = "NAME|URL")]
    pub to: Option<String>,
    /// List the archives of this appliance id instead of this appliance's own (a backup
    /// server or an auditor with read-only credentials).
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub appliance: Option<String>,
    /// List the archives of every appliance on the target.
    #[arg(long)]
    pub all: bool,
}

/// `prune` arguments.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// A configured target name or a URL [default: targets.default, or the only target].
    #[arg(long, value_name = "NAME|URL")]
    pub to: Option<String>,
    /// Keep the newest N archives of each kind.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the archives younger than DAYS days.
    #[arg(long, value_name = "DAYS")]
    pub keep_within: Option<u64>,
    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// When another offbox run holds the run lock, wait up to SECS for it, then exit 75.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
}

fn connect(cfg: &Config, what: Option<&str>) -> Result<Box<dyn Target>, JobError> {
    connect_in(&cfg.targets, what)
}

/// Resolves `what` in a `[targets]` section alone, runs the guard and connects.
fn connect_in(section: &TargetsConfig, what: Option<&str>) -> Result<Box<dyn Target>, JobError> {
    let spec = section
        .resolve(what)
        .map_err(|e| target_err("choosing the target", e))?;
    let me = SelfIdentity::load();
    targets::connect(&spec, &me).map_err(|e| target_err("connecting to the target", e))
}

/// Takes the appliance's run lock (`backup create`, `prune`), waiting up to `wait_secs`;
/// exit code 75 when another run still holds it.
pub fn run_lock(cfg: &Config, wait_secs: u64) -> Result<RunLock, JobError> {
    let dir = cfg.state_dir();
    RunLock::acquire(&dir, std::time::Duration::from_secs(wait_secs), |pid| {
        eprintln!(
            "offbox: another offbox run holds the run lock ({}); waiting up to {wait_secs} s",
            pid.map_or("pid unknown".into(), |p| format!("pid {p}"))
        );
    })
}

/// For `backup create --to`: connects (and guards) the target, before any payload is opened.
pub fn connect_to(cfg: &Config, to: Option<&str>) -> Result<Option<Box<dyn Target>>, JobError> {
    to.map(|t| connect(cfg, Some(t))).transpose()
}

/// `backup create --to`: reports what was published.
pub fn report_published(
    (summary, published): (BackupSummary, job::Published),
    json: bool,
) -> Result<(), JobError> {
    if !published.cleaned.is_empty() {
        eprintln!(
            "offbox: removed {} stale temporary file(s) of earlier interrupted uploads",
            published.cleaned.len()
        );
    }
    for c in &published.cleaned {
        eprintln!("offbox: removed the leftover {c} of an earlier interrupted upload");
    }
    for k in &published.kept {
        eprintln!("offbox: kept the temporary {k}: the offbox process that writes it still runs");
    }
    if json {
        let v = serde_json::json!({"backup": summary, "published": published});
        eprintln!("{v}");
    } else {
        super::report::backed_up(&summary, false);
        eprintln!(
            "offbox: published to {} as {}",
            published.target, published.name
        );
    }
    Ok(())
}

/// The archive stream for `restore`/`verify`: the named archive on `--from`, or else the
/// file (or standard input) through `file`.
pub fn input_from(
    config_path: &Path,
    from: Option<&str>,
    archive: &Path,
    file: impl FnOnce(&Path) -> Result<Box<dyn Read>, JobError>,
) -> Result<Box<dyn Read>, JobError> {
    let Some(from) = from else {
        return file(archive);
    };
    let cfg = Config::load(config_path)?;
    open_remote(&cfg.targets, from, archive)
}

/// The archive `archive` (a name) on the target `from` of a `[targets]` section: for
/// `verify --keyless --from`, which needs nothing else of the config.
pub fn open_remote(
    section: &TargetsConfig,
    from: &str,
    archive: &Path,
) -> Result<Box<dyn Read>, JobError> {
    let mut t = connect_in(section, Some(from))?;
    let name = archive.to_string_lossy();
    let reader = t
        .open(&name)
        .map_err(|e| target_err(&format!("opening {name}"), e))?;
    // The next chunks arrive while this one is decrypted and unpacked.
    let ahead =
        Prefetched::new(reader).map_err(|e| JobError::io("starting the download thread", e))?;
    Ok(Box::new(ahead))
}

/// `target ...`.
pub fn target_cmd(config_path: &Path, cmd: TargetCmd, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    match cmd {
        TargetCmd::SshKey => {
            let k = crate::jobs::ssh_keys::ensure_key_pair(&cfg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"identity": k.identity, "public_key": k.public_key, "created": k.created})
                );
            } else {
                eprintln!(
                    "offbox: {} SSH key {}; add this line to ~USER/.ssh/authorized_keys on the server:",
                    if k.created { "created the" } else { "using the existing" },
                    k.identity.display()
                );
                println!("{}", k.public_key);
            }
            Ok(())
        }
        TargetCmd::AcceptHostKey {
            target,
            fingerprint,
        } => accept_host_key(&cfg, &target, fingerprint.as_deref(), json),
        TargetCmd::Check { target } => check_cmd(&cfg, target, json),
    }
}

/// `target check [NAME|URL]`: the one target given, else every configured target. One
/// target's failure is the command's error (printed once, by `main`); with several, each
/// failure gets its line (or JSON object) and the error names the failed targets, with the
/// exit code, kind and retry class of the most severe (as `watch`).
fn check_cmd(cfg: &Config, target: Option<String>, json: bool) -> Result<(), JobError> {
    let names: Vec<String> = match target {
        Some(t) => vec![t],
        None if cfg.targets.named.is_empty() => {
            return Err(target_err(
                "target check",
                targets::TargetError::Invalid {
                    target: "(none given)".into(),
                    why: "no [targets.NAME] in the config; give a URL".into(),
                },
            ))
        }
        None => cfg.targets.named.keys().cloned().collect(),
    };
    let me = SelfIdentity::load();
    let appliance = cfg.appliance_id();
    let measured = Measured::walk(&cfg.capacity.measured_path, job::now_unix());
    let single = names.len() == 1;
    let mut failed: Vec<(String, JobError)> = Vec::new();
    for n in &names {
        let r = cfg
            .targets
            .resolve(Some(n))
            .map_err(|e| target_err("choosing the target", e))
            .and_then(|spec| job::check(&spec, &me, &appliance, &cfg.capacity, &measured));
        match r {
            Ok(rep) => {
                if json {
                    println!("{}", serde_json::to_string(&rep).expect("serializes"));
                } else {
                    println!(
                        "offbox: target {} OK: url={} connect={:.1}ms probe={:.1}ms {}",
                        rep.target,
                        rep.url,
                        rep.connect_ms,
                        rep.probe_ms,
                        rep.capacity.figures(),
                    );
                    for note in &rep.notes {
                        println!("offbox: target {}: {note}", rep.target);
                    }
                }
                if let Some(w) = &rep.warning {
                    eprintln!("offbox: warning: target {}: {w}", rep.target);
                }
            }
            Err(e) if single => return Err(e),
            Err(e) => {
                if json {
                    let report = crate::jobs::error_kind::ErrorReport::of(&e);
                    println!("{}", serde_json::json!({"target": n, "error": report}));
                } else {
                    eprintln!("offbox: target {n} FAILED: {e}");
                }
                failed.push((n.clone(), e));
            }
        }
    }
    let code = crate::jobs::run::exit_code(failed.iter().map(|(_, e)| e.exit_code()));
    let Some((_, worst)) = failed.iter().find(|(_, e)| e.exit_code() == code) else {
        return Ok(());
    };
    Err(JobError::Partial {
        summary: format!(
            "target check: {} of {} target(s) failed ({}); see the lines above",
            failed.len(),
            names.len(),
            failed
                .iter()
                .map(|(n, e)| format!("{n}: {}", e.kind()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        code,
        kind: worst.kind(),
        retry: worst.retry(),
    })
}

fn accept_host_key(
    cfg: &Config,
    target: &str,
    fingerprint: Option<&str>,
    json: bool,
) -> Result<(), JobError> {
    use crate::jobs::ssh_keys::HostKeyStatus;
    let me = SelfIdentity::load();
    let k = crate::jobs::ssh_keys::accept_host_key(cfg, target, fingerprint, &me)?;
    if json {
        println!("{}", serde_json::to_string(&k).expect("serializes"));
        return Ok(());
    }
    let kh = k.known_hosts.display();
    let (host, fp, kt) = (&k.host, &k.fingerprint, &k.key_type);
    match k.status {
        HostKeyStatus::Pinned => {
            eprintln!("offbox: host key of {host} pinned: {fp} in {kh}")
        }
        HostKeyStatus::AlreadyPinned => {
            eprintln!("offbox: host key of {host} already pinned: {fp} in {kh}")
        }
        HostKeyStatus::NotPinned => println!(
            "offbox: {host} presents {kt} {fp}; it is not pinned yet, and nothing was changed. Compare it with `ssh-keygen -lf` of that key on the server, then pin it with: offbox target accept-host-key {target} --fingerprint {fp}"
        ),
        HostKeyStatus::AnotherKeyPinned => println!(
            "offbox: {host} presents {kt} {fp}, but {kh} pins ANOTHER key for it; nothing was changed. This may be an attack. If the server was reinstalled, check the new key on the server, remove its line from {kh}, then run: offbox target accept-host-key {target} --fingerprint {fp}"
        ),
    }
    Ok(())
}

/// `backup list`.
pub fn list_cmd(config_path: &Path, a: ListArgs, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let mut t = connect(&cfg, a.to.as_deref())?;
    let own = cfg.appliance_id();
    let only = match (a.all, &a.appliance) {
        (true, _) => None,
        (false, Some(id)) => Some(id.as_str()),
        (false, None) => Some(own.as_str()),
    };
    let (archives, temps) = job::list(t.as_mut(), only)?;
    // The video chains of this appliance, read from their authenticated headers.
    let videos = only == Some(own.as_str()) && archives.iter().any(|a| a.info.kind == "videos");
    if json {
        let chains = if videos {
            chains_or_warn(&cfg, t.as_mut(), true)
        } else {
            None
        };
        println!(
            "{}",
            serde_json::json!({"target": t.url(), "appliance": only, "archives": archives, "temporaries": temps, "video_chains": chains})
        );
        return Ok(());
    }
    for a in &archives {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            a.name,
            a.info.kind,
            crate::targets::name::utc_stamp(a.info.created_unix),
            a.size.map_or("?".into(), |s| s.to_string()),
            a.info.appliance
        );
    }
    if videos {
        chains_or_warn(&cfg, t.as_mut(), false);
    }
    eprintln!(
        "offbox: {} archive(s) {} on {}{}",
        archives.len(),
        match only {
            Some(id) if id == own => format!("of this appliance ({id})"),
            Some(id) => format!("of appliance {id}"),
            None => "of every appliance".into(),
        },
        t.url(),
        if temps > 0 {
            format!("; {temps} temporary file(s): uploads in progress, or leftovers that the next backup of their appliance removes")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The video chains for `backup list`, or a warning when they cannot be read (no key
/// device here: the archive list stands on its own).
fn chains_or_warn(cfg: &Config, t: &mut dyn Target, json: bool) -> Option<serde_json::Value> {
    match super::videos::list_chains(cfg, t, json) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("offbox: warning: the video chains are not shown: {e}");
            None
        }
    }
}

/// `prune`.
pub fn prune_cmd(config_path: &Path, a: PruneArgs, json: bool) -> Result<(), JobError> {
    let cfg = Config::load(config_path)?;
    let lock = run_lock(&cfg, a.wait)?;
    let mut t = connect(&cfg, a.to.as_deref())?;
    let plan = job::prune(
        t.as_mut(),
        &cfg.appliance_id(),
        Retention {
            keep_last: a.keep_last,
            keep_within_days: a.keep_within,
        },
        a.dry_run,
        &lock,
    )?;
    let (listed, _) = job::list(t.as_mut(), Some(&cfg.appliance_id()))?;
    let videos = if listed.iter().any(|l| l.info.kind == "videos") {
        Some(super::videos::prune_videos(
            &cfg,
            t.as_mut(),
            a.keep_within,
            a.dry_run,
            &lock,
        )?)
    } else {
        None
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"target": t.url(), "dry_run": a.dry_run, "plan": plan, "videos": videos})
        );
        return Ok(());
    }
    if let Some(v) = &videos {
        super::videos::print_prune(v, a.dry_run);
    }
    for n in &plan.delete {
        println!(
            "{}\t{n}",
            if a.dry_run { "would delete" } else { "deleted" }
        );
    }
    for n in &plan.keep {
        println!("keep\t{n}");
    }
    for (n, until) in &plan.locked {
        println!("locked\t{n}\tuntil {until}");
    }
    let (vk, vd) = videos.as_ref().map_or((0, 0), |v| {
        (
            v.keep.len() + v.needed.len() + v.unreadable.len() + v.held_back.len() + v.locked.len(),
            v.delete.len(),
        )
    });
    eprintln!(
        "offbox: prune{} on {}: {} kept, {} {}{}",
        if a.dry_run { " (dry run)" } else { "" },
        t.url(),
        plan.keep.len() + vk,
        plan.delete.len() + vd,
        if a.dry_run { "to delete" } else { "deleted" },
        if plan.locked.is_empty() {
            String::new()
        } else {
            format!(", {} locked (Object Lock) and kept", plan.locked.len())
        }
    );
    Ok(())
}
