//! The `[schedule.KIND]` tables (what `offbox run` backs up, where, how often, and how many
//! archives it keeps) and the `[capacity]` table (the remote space rule).
//!
//! ```toml
//! [capacity]
//! ratio = 1.5                 # free + own archives on each target >= 1.5 x used bytes of...
//! measured_path = "/var"      # ...this directory tree (its own filesystem only)
//!
//! [schedule.secrets]
//! targets = ["dr-site"]       # default: targets.default, or the only target
//! every_hours = 24            # due when the last success is this old
//! max_age_hours = 48          # "stale" event after this long without a success
//! keep_last = 30              # retention, per kind and target (at least one rule)
//! keep_within_days = 90
//! verify_after = true         # read the new archive back and check its signature
//! ```
//!
//! The kinds `offbox run` knows are data, [`RUN_KINDS`], in the order a run takes them
//! (secrets first, the most valuable). A kind whose feature a build lacks is refused when
//! the config is parsed, with a message naming the feature. Video archives form chains:
//! `[schedule.videos]` takes no keep rule, their retention is `[videos] keep_days`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::format::ArchiveKind;

/// A kind `offbox run` may schedule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunKind {
    /// The name in `[schedule.NAME]` and in reports.
    pub name: &'static str,
    /// The archive kind it makes.
    pub kind: ArchiveKind,
    /// `None` when this build can back it up; else the feature it waits for, for the message.
    pub missing: Option<&'static str>,
}

/// Every kind, in the fixed order of a run: secrets first (the most valuable), then system,
/// then videos.
pub(crate) const RUN_KINDS: &[RunKind] = &[
    RunKind {
        name: "secrets",
        kind: ArchiveKind::Secrets,
        missing: None,
    },
    RunKind {
        name: "system",
        kind: ArchiveKind::System,
        missing: None,
    },
    RunKind {
        name: "videos",
        kind: ArchiveKind::Videos,
        missing: None,
    },
];

/// Default interval between successes of a kind, in hours.
pub(crate) const DEFAULT_EVERY_HOURS: f64 = 24.0;
/// Default capacity ratio: the remote space should be 150% of the measured path.
pub(crate) const DEFAULT_RATIO: f64 = 1.5;
/// Default measured path of the capacity rule.
pub(crate) const DEFAULT_MEASURED_PATH: &str = "/var";
/// Longest interval or maximum age accepted, in hours (one year).
pub(crate) const MAX_HOURS: f64 = 8760.0;

/// `[capacity]`: the remote space rule of `run`, `watch` and `target check`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// Wanted space on a target (its free space plus what this appliance's archives use)
    /// as a multiple of the used bytes under `measured_path`.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    /// The directory tree whose used bytes are measured.
    #[serde(default = "default_measured_path")]
    pub measured_path: PathBuf,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            ratio: DEFAULT_RATIO,
            measured_path: default_measured_path(),
        }
    }
}

fn default_ratio() -> f64 {
    DEFAULT_RATIO
}

fn default_measured_path() -> PathBuf {
    PathBuf::from(DEFAULT_MEASURED_PATH)
}

fn default_true() -> bool {
    true
}

fn default_every() -> f64 {
    DEFAULT_EVERY_HOURS
}

/// One `[schedule.KIND]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSchedule {
    /// `false` keeps the table but skips the kind.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Configured target names (`[targets.NAME]`); empty: the default target.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Due when the last success on a target is this many hours old.
    #[serde(default = "default_every")]
    pub every_hours: f64,
    /// The stale event fires when the last success is older than this; default twice
    /// `every_hours`.
    pub max_age_hours: Option<f64>,
    /// Keep the newest N archives of this kind on each target.
    pub keep_last: Option<usize>,
    /// Keep the archives of this kind younger than N days.
    pub keep_within_days: Option<u64>,
    /// Read each new archive back and verify its structure and signature.
    #[serde(default)]
    pub verify_after: bool,
}

impl KindSchedule {
    /// The maximum age in hours before the stale event.
    pub(crate) fn max_age_hours(&self) -> f64 {
        self.max_age_hours.unwrap_or(self.every_hours * 2.0)
    }
}

/// `[schedule]`: one table per kind, by name.
pub type ScheduleConfig = BTreeMap<String, KindSchedule>;

/// A value that is not allowed: key, value as written, what is allowed.
pub(crate) type Invalid = (String, String, String);

/// Checks the schedule and capacity tables against the kinds this build knows and the
/// configured targets (`targets`, and whether a default target exists).
pub fn validate(
    schedule: &ScheduleConfig,
    capacity: &CapacityConfig,
    targets: &[String],
    has_default: bool,
) -> Result<(), Invalid> {
    let bad = |key: String, value: String, allowed: String| Err((key, value, allowed));
    if !(capacity.ratio.is_finite() && (0.0..=100.0).contains(&capacity.ratio)) {
        return bad(
            "capacity.ratio".into(),
            capacity.ratio.to_string(),
            "it must be 0 (no capacity warnings) to 100; the default is 1.5 (150%)".into(),
        );
    }
    if !capacity.measured_path.is_absolute() {
        return bad(
            "capacity.measured_path".into(),
            format!("{:?}", capacity.measured_path),
            "it must be an absolute path (the default is /var)".into(),
        );
    }
    for (name, k) in schedule {
        validate_kind(name, k, targets, has_default)?;
    }
    Ok(())
}

/// Checks one `[schedule.NAME]` table.
fn validate_kind(
    name: &str,
    k: &KindSchedule,
    targets: &[String],
    has_default: bool,
) -> Result<(), Invalid> {
    let bad = |key: String, value: String, allowed: String| Err((key, value, allowed));
    let key = |field: &str| format!("schedule.{name}.{field}");
    let Some(known) = RUN_KINDS.iter().find(|r| r.name == name) else {
        let names: Vec<&str> = RUN_KINDS.iter().map(|r| r.name).collect();
        return bad(
            format!("schedule.{name}"),
            "a table".into(),
            format!("the kinds are {}", names.join(", ")),
        );
    };
    if let (Some(feature), true) = (known.missing, k.enabled) {
        return bad(
            format!("schedule.{name}"),
            "a table".into(),
            format!("{name} backups need {feature}, which this offbox does not have yet; remove the table or set enabled = false"),
        );
    }
    check_hours(&key("every_hours"), k.every_hours)?;
    if let Some(m) = k.max_age_hours {
        check_hours(&key("max_age_hours"), m)?;
        if m < k.every_hours {
            return bad(
                key("max_age_hours"),
                m.to_string(),
                format!(
                    "it must be at least every_hours ({}), or the kind is stale between two good runs",
                    k.every_hours
                ),
            );
        }
    }
    if known.kind == ArchiveKind::Videos {
        if k.keep_last.is_some() || k.keep_within_days.is_some() {
            return bad(
                key(if k.keep_last.is_some() { "keep_last" } else { "keep_within_days" }),
                "a value".into(),
                "video archives form chains: their retention is [videos] keep_days, which keeps whatever a kept restore point needs; remove this key".into(),
            );
        }
    } else if k.keep_last.is_none() && k.keep_within_days.is_none() {
        return bad(
            key("keep_last"),
            "(not set)".into(),
            "give a retention rule: keep_last = N and/or keep_within_days = N (a service that never prunes fills its target)".into(),
        );
    }
    if k.keep_last == Some(0) {
        return bad(key("keep_last"), "0".into(), "it must be at least 1".into());
    }
    if k.targets.is_empty() && !has_default {
        return bad(
            key("targets"),
            "(not set)".into(),
            "name the targets, e.g. targets = [\"dr-site\"], or set targets.default".into(),
        );
    }
    if let Some(t) = k.targets.iter().find(|t| !targets.contains(t)) {
        return bad(
            key("targets"),
            format!("{t:?}"),
            format!(
                "each entry must name a [targets.NAME] table (configured: {})",
                if targets.is_empty() {
                    "none".into()
                } else {
                    targets.join(", ")
                }
            ),
        );
    }
    Ok(())
}

fn check_hours(key: &str, h: f64) -> Result<(), Invalid> {
    if h.is_finite() && h > 0.0 && h <= MAX_HOURS {
        return Ok(());
    }
    Err((
        key.to_string(),
        h.to_string(),
        format!("it must be more than 0 and at most {MAX_HOURS} hours; fractions are allowed"),
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "[keys]\nbackend = \"tpm\"\n[keys.tpm]\ntcti = \"device:/dev/tpmrm0\"\n[targets.nas]\nurl = \"ssh://u@h/p\"\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_schedule_parses_with_defaults() {
        let c = parse("[schedule.system]\nkeep_last = 2\n").unwrap();
        let s = &c.schedule["system"];
        assert!(s.enabled && !s.verify_after && s.targets.is_empty());
        assert_eq!((s.every_hours, s.max_age_hours()), (24.0, 48.0));
        assert_eq!(c.capacity.ratio, 1.5);
        assert_eq!(c.capacity.measured_path, Path::new("/var"));
    }

    #[test]
    fn wrong_values_name_their_key() {
        let cases = [
            ("[schedule.system]\nkeep_last = 2\nevery_hours = 0", "schedule.system.every_hours = 0 is not allowed"),
            ("[schedule.system]\nkeep_last = 2\nmax_age_hours = 1", "schedule.system.max_age_hours = 1 is not allowed; it must be at least every_hours (24)"),
            ("[schedule.system]\nevery_hours = 2", "schedule.system.keep_last = (not set) is not allowed; give a retention rule"),
            ("[schedule.system]\nkeep_last = 0", "schedule.system.keep_last = 0 is not allowed"),
            ("[schedule.secrets]\nkeep_last = 1\ntargets = [\"dr\"]", "schedule.secrets.targets = \"dr\" is not allowed; each entry must name a [targets.NAME] table (configured: nas)"),
            ("[schedule.photos]\nkeep_last = 1", "schedule.photos = a table is not allowed; the kinds are secrets, system, videos"),
            ("[schedule.videos]\nkeep_last = 1", "schedule.videos.keep_last = a value is not allowed; video archives form chains"),
            ("[capacity]\nratio = -1", "capacity.ratio = -1 is not allowed"),
            ("[capacity]\nmeasured_path = \"var\"", "capacity.measured_path = \"var\" is not allowed"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = parse("[schedule.system]\nkeep_last = 1\nevry_hours = 2").unwrap_err();
        assert!(
            e.contains("unknown field `evry_hours`") && e.contains("[schedule.system]"),
            "{e}"
        );
        // Videos keep by [videos] keep_days, and need the video backup switched on.
        let e = parse("[schedule.videos]\nevery_hours = 24").unwrap_err();
        assert!(
            e.contains("[schedule.videos] needs the video backup switched on"),
            "{e}"
        );
        parse("[schedule.videos]\nevery_hours = 24\n[videos]\nenabled = true\nsources = [\"/r\"]")
            .unwrap();
    }

    #[test]
    fn without_a_default_target_the_targets_are_required() {
        let two = "[targets.dr]\nurl = \"ssh://u@h/q\"\n[schedule.system]\nkeep_last = 1\n";
        let e = parse(two).unwrap_err();
        assert!(
            e.contains("schedule.system.targets = (not set) is not allowed"),
            "{e}"
        );
        parse(&format!("{two}targets = [\"dr\"]\n")).unwrap();
    }
}
