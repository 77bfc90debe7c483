//! What `keys retire N` would make unreadable: this appliance's archives on every configured
//! target whose device slot uses key-encryption key version N. Only headers are read (no key
//! is used); after the retirement such an archive opens only through its recovery slot, and
//! one without a recovery slot not at all.

use serde::Serialize;

use super::error::Policy;
use super::open::read_head;
use super::target::{list, target_err};
use super::JobError;
use crate::config::Config;
use crate::format::{Header, KeySlot};
use crate::guard::SelfIdentity;
use crate::keys::Device;
use crate::targets;

/// One archive that needs the version to be retired.
#[derive(Debug, Serialize)]
pub struct Affected {
    /// The target's name in the config.
    pub target: String,
    /// The archive name.
    pub name: String,
    /// Whether it has a recovery slot (then the custodians' shares still open it).
    pub recovery_slot: bool,
}

/// A target whose archives could not be read, and why.
#[derive(Debug, Serialize)]
pub struct Unchecked {
    /// The target's name in the config.
    pub target: String,
    /// The error, with what to do.
    pub error: String,
}

/// The dry run of `keys retire VERSION`.
#[derive(Debug, Serialize)]
pub struct RetirePlan {
    /// The key-encryption key version.
    pub version: u32,
    /// The archives whose device slot uses it.
    pub affected: Vec<Affected>,
    /// The targets checked completely.
    pub checked: Vec<String>,
    /// The targets that could not be checked.
    pub unchecked: Vec<Unchecked>,
}

/// Whether `header` has a device slot of `backend` (`pkcs11`, `tpm`) sealed under `version`.
pub(crate) fn uses_version(header: &Header, backend: &str, version: u32) -> bool {
    header.slots.iter().any(|s| match s {
        KeySlot::Pkcs11 { key_version, .. } | KeySlot::Tpm { key_version, .. } => {
            s.kind_name() == backend && *key_version == version
        }
        _ => false,
    })
}

/// `keys retire VERSION` without `--yes`: refuses what the retirement itself would refuse
/// (a version the device does not hold, the current one), then [`plan`]s it.
pub fn dry_run(
    cfg: &Config,
    device: &mut dyn Device,
    version: u32,
) -> Result<RetirePlan, JobError> {
    let status = device.status()?;
    let versions: Vec<String> = status
        .versions
        .iter()
        .map(|v| v.version.to_string())
        .collect();
    let refuse = |why: String| {
        JobError::refused(
            format!("retiring key-encryption key version {version}"),
            Policy::Usage,
            why,
        )
    };
    match status.versions.iter().find(|v| v.version == version) {
        None => Err(refuse(format!(
            "the {} device holds no version {version} (versions: {}); nothing to retire",
            status.backend,
            if versions.is_empty() { "none".into() } else { versions.join(", ") }
        ))),
        Some(v) if v.current => Err(refuse(format!(
            "version {version} is the current one, which new archives use; run `offbox keys rotate` first"
        ))),
        Some(_) => Ok(plan(cfg, device.name(), version)),
    }
}

/// Reads the header of every archive of this appliance on every configured target and lists
/// those whose `backend` device slot uses `version`. A target that cannot be reached is
/// listed in `unchecked`, never an error: this is a dry run.
pub fn plan(cfg: &Config, backend: &str, version: u32) -> RetirePlan {
    let me = SelfIdentity::load();
    let appliance = cfg.appliance_id();
    let mut plan = RetirePlan {
        version,
        affected: Vec::new(),
        checked: Vec::new(),
        unchecked: Vec::new(),
    };
    for name in cfg.targets.named.keys() {
        match check_target(cfg, &me, name, &appliance, backend, version) {
            Ok(mut found) => {
                plan.affected.append(&mut found);
                plan.checked.push(name.clone());
            }
            Err(e) => plan.unchecked.push(Unchecked {
                target: name.clone(),
                error: e.to_string(),
            }),
        }
    }
    plan
}

fn check_target(
    cfg: &Config,
    me: &SelfIdentity,
    name: &str,
    appliance: &str,
    backend: &str,
    version: u32,
) -> Result<Vec<Affected>, JobError> {
    let spec = cfg
        .targets
        .resolve(Some(name))
        .map_err(|e| target_err("choosing the target", e))?;
    let mut t =
        targets::connect(&spec, me).map_err(|e| target_err("connecting to the target", e))?;
    let (archives, _) = list(t.as_mut(), Some(appliance))?;
    let mut found = Vec::new();
    for a in archives.iter().filter(|a| a.info.is_of(appliance)) {
        let mut r = t
            .open(&a.name)
            .map_err(|e| target_err(&format!("opening {}", a.name), e))?;
        let head = read_head(&mut r)?;
        if uses_version(&head.header, backend, version) {
            found.push(Affected {
                target: name.to_string(),
                name: a.name.clone(),
                recovery_slot: head
                    .header
                    .slots
                    .iter()
                    .any(|s| matches!(s, KeySlot::Recovery { .. })),
            });
        }
    }
    Ok(found)
}
