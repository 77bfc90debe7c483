//! The video backup's commands: `backup create --kind videos`, `restore --kind videos`,
//! and the video parts of `backup list` and `prune` (chains and chain-aware retention).

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::jobs::lock::RunLock;
use crate::jobs::signature::Trust;
use crate::jobs::target::now_unix;
use crate::jobs::videos::backup::{self, VideoRunOptions};
use crate::jobs::videos::prune::VideoPrunePlan;
use crate::jobs::videos::restore::{self, VideoRestoreOptions, VideoRestoreSummary};
use crate::jobs::videos::{list as chains, prune};
use crate::jobs::JobError;
use crate::keys::{open_device, Device, SlotIdentity};
use crate::progress::{human_bytes, Meter, Ticker, Total};
use crate::targets::Target;

/// `backup create --kind videos`: one incremental run to the target.
pub fn create(
    cfg: &Config,
    to: Option<&str>,
    opts: VideoRunOptions,
    lock: &RunLock,
    json: bool,
) -> Result<(), JobError> {
    backup::check_enabled(cfg)?;
    let spec = cfg
        .targets
        .resolve(to)
        .map_err(|e| crate::jobs::target::target_err("choosing the target", e))?;
    let mut target = super::targets::connect_to(cfg, Some(&spec.label))?.expect("a target");
    let mut device = open_device(&cfg.keys)?;
    let meter = Arc::new(Meter::default());
    let ticker = Ticker::start("videos", meter.clone(), Total::Unknown);
    let r = backup::run(
        cfg,
        target.as_mut(),
        &spec.label,
        device.as_mut(),
        meter,
        lock,
        opts,
    );
    drop(ticker);
    let (s, published) = r?;
    for n in &s.backup.notices {
        eprintln!("offbox: warning: {n}");
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"summary": s, "target": published.target, "name": published.name})
        );
        return Ok(());
    }
    eprintln!(
        "offbox: video backup complete: {} {} of chain {} ({}): {} recording(s), {} stored ({}), {} unchanged, {} deleted since, {} skipped (still being written{}), archive {} out, {} device operations, catalogue: {}",
        if s.full { "full" } else { "increment" },
        s.chain_seq,
        &s.base[..8],
        s.full_reason.as_deref().unwrap_or("continues the chain"),
        s.recordings,
        s.stored,
        human_bytes(s.stored_bytes),
        s.unchanged,
        s.deleted,
        s.skipped_settling,
        if s.kept_settling > 0 {
            format!("; {} more keep their previous version", s.kept_settling)
        } else {
            String::new()
        },
        human_bytes(s.backup.bytes_out),
        s.backup.device_operations,
        s.catalogue
    );
    eprintln!(
        "offbox: published to {} as {}",
        published.target, published.name
    );
    Ok(())
}

/// `restore --kind videos --from TARGET [--at] [--only] --to DIR`.
pub fn restore_point(
    cfg_path: &Path,
    from: Option<&str>,
    opts: &VideoRestoreOptions,
    to: &Path,
    custodians: &mut [&mut dyn SlotIdentity],
    trust: &Trust,
    json: bool,
) -> Result<(), JobError> {
    let cfg = Config::load(cfg_path)?;
    let mut t = connect(&cfg, from)?;
    let s = restore::restore(t.as_mut(), &cfg.appliance_id(), custodians, trust, opts, to)?;
    report_restore(&s, json);
    Ok(())
}

fn connect(cfg: &Config, what: Option<&str>) -> Result<Box<dyn Target>, JobError> {
    let spec = cfg
        .targets
        .resolve(what)
        .map_err(|e| crate::jobs::target::target_err("choosing the target", e))?;
    let me = crate::guard::SelfIdentity::load();
    crate::targets::connect(&spec, &me)
        .map_err(|e| crate::jobs::target::target_err("connecting to the target", e))
}

fn report_restore(s: &VideoRestoreSummary, json: bool) {
    if json {
        println!("{}", serde_json::json!(s));
        return;
    }
    for (a, status) in &s.archives {
        eprintln!("offbox: read {a}: signature {status}");
    }
    println!(
        "offbox: restore complete: videos point {} ({}): {} recording(s), {} from {} archive(s) to {}",
        s.point,
        s.created.as_deref().unwrap_or("?"),
        s.recordings,
        human_bytes(s.bytes),
        s.archives.len(),
        s.destination.display()
    );
}

/// The trust of the list and prune of this appliance's own chains: its signing keys.
pub fn own_trust(device: &mut dyn Device) -> Trust {
    let mut trust = Trust::new();
    if let Ok(keys) = device.signing_keys() {
        for k in keys {
            trust.add(k, "this appliance's signing key");
        }
    }
    trust
}

/// The chains part of `backup list` (own appliance): printed, or returned for `--json`.
pub fn list_chains(
    cfg: &Config,
    t: &mut dyn Target,
    json: bool,
) -> Result<Option<serde_json::Value>, JobError> {
    let mut device = open_device(&cfg.keys)?;
    let trust = own_trust(device.as_mut());
    let (chains, bad) = chains::chains(t, &cfg.appliance_id(), &trust)?;
    if json {
        return Ok(Some(
            serde_json::json!({"chains": chains, "unreadable": bad}),
        ));
    }
    for c in &chains {
        println!(
            "video chain {} ({} archive(s), {}):",
            &c.base[..8],
            c.links.len(),
            human_bytes(c.bytes)
        );
        for l in &c.links {
            println!(
                "  {}\t{}\t{}\t{}",
                if l.seq == 0 {
                    "full".to_string()
                } else {
                    format!("+{}", l.seq)
                },
                l.created.as_deref().unwrap_or("?"),
                human_bytes(l.size),
                l.name
            );
        }
    }
    for (n, why) in &bad {
        eprintln!("offbox: warning: {n}: header not checked: {why}");
    }
    Ok(None)
}

/// The video part of `prune`: chain-aware, `keep_days` from `--keep-within` or the
/// config's `[videos] keep_days`.
pub fn prune_videos(
    cfg: &Config,
    t: &mut dyn Target,
    keep_within: Option<u64>,
    dry_run: bool,
    lock: &RunLock,
) -> Result<VideoPrunePlan, JobError> {
    let mut device = open_device(&cfg.keys)?;
    let trust = own_trust(device.as_mut());
    let days = keep_within.map_or(cfg.videos.keep_days, |d| d.min(u64::from(u32::MAX)) as u32);
    prune::prune(
        t,
        &cfg.appliance_id(),
        &trust,
        days,
        now_unix(),
        dry_run,
        lock,
    )
}

/// Prints a video prune plan.
pub fn print_prune(plan: &VideoPrunePlan, dry_run: bool) {
    for d in &plan.delete {
        println!(
            "{}\t{}\t(video {} of {}, {}: its restore point goes; no kept point needs its bytes)",
            if dry_run { "would delete" } else { "deleted" },
            d.name,
            if d.full { "full" } else { "increment" },
            d.point.as_deref().unwrap_or("?"),
            human_bytes(d.size)
        );
    }
    for n in &plan.keep {
        println!("keep\t{n}");
    }
    for n in &plan.needed {
        println!("keep\t{n}\t(a kept video restore point needs its bytes)");
    }
    for (n, why) in &plan.unreadable {
        println!("keep\t{n}\t(header not checked: {why})");
    }
    for n in &plan.held_back {
        println!("keep\t{n}\t(held back: a video header could not be checked, so what it needs is unknown; fix or remove that archive)");
    }
    for (n, until) in &plan.locked {
        println!("locked\t{n}\tuntil {until}");
    }
}
