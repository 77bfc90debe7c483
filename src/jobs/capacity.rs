//! The capacity rule: a target should offer at least `capacity.ratio` (default 1.5, i.e.
//! 150%) times the used bytes of `capacity.measured_path` (default /var).
//!
//! Method, and what each figure means:
//! - **measured**: the bytes allocated to the files under the measured path, on its own
//!   filesystem (a `du -sx`-like walk, [`super::target::disk_usage`]); it is walked once per
//!   `run` and at most once an hour by `watch` (the figure is cached in the state file);
//! - **free**: what the target's protocol reports as free for this user; `None` ("unknown")
//!   when the protocol does not report it: never a made-up figure;
//! - **own**: the sum of the sizes of this appliance's archives on the target (from the
//!   listing), since that space is also offbox's to use;
//! - the rule holds when `free + own >= ratio x measured`. A shortfall is a warning and the
//!   `capacity_low` notification, never a failure; an unknown free space is reported as
//!   such and raises nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::CapacityConfig;
use crate::progress::human_bytes;
use crate::targets::{ArchiveName, Entry};

/// The used bytes of the measured path, and when they were measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// The directory tree measured.
    pub path: PathBuf,
    /// Bytes allocated to it, on its own filesystem.
    pub bytes: u64,
    /// Unix seconds of the measurement.
    pub at: i64,
}

impl Measured {
    /// Walks `path` now.
    pub fn walk(path: &Path, now: i64) -> Measured {
        Measured {
            path: path.to_path_buf(),
            bytes: super::target::disk_usage(path),
            at: now,
        }
    }

    /// `cached` when it measured `path` less than `max_age_secs` ago, else a new walk.
    pub(crate) fn cached_or_walk(
        cached: Option<&Measured>,
        path: &Path,
        now: i64,
        max_age_secs: i64,
    ) -> Measured {
        match cached {
            Some(m) if m.path == path && now - m.at < max_age_secs && now >= m.at => m.clone(),
            _ => Measured::walk(path, now),
        }
    }
}

/// The capacity figures of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The measured path.
    pub measured_path: PathBuf,
    /// Its used bytes.
    pub measured_bytes: u64,
    /// The configured ratio.
    pub ratio: f64,
    /// `ratio x measured_bytes`: the space the target should offer.
    pub required_bytes: u64,
    /// Free bytes on the target; `None` when its protocol does not report them.
    pub free_bytes: Option<u64>,
    /// Bytes used by this appliance's archives on the target.
    pub own_bytes: u64,
    /// Whether the rule holds: `Some(false)` is a shortfall, `None` unknown.
    pub ok: Option<bool>,
}

impl Capacity {
    /// Applies the rule to a target's free space and listing.
    pub(crate) fn assess(
        rule: &CapacityConfig,
        measured: &Measured,
        free: Option<u64>,
        listing: &[Entry],
        appliance: &str,
    ) -> Capacity {
        let own_bytes = own_bytes(listing, appliance);
        let required_bytes = (measured.bytes as f64 * rule.ratio).ceil() as u64;
        Capacity {
            measured_path: measured.path.clone(),
            measured_bytes: measured.bytes,
            ratio: rule.ratio,
            required_bytes,
            free_bytes: free,
            own_bytes,
            ok: free.map(|f| f.saturating_add(own_bytes) >= required_bytes),
        }
    }

    /// The warning for a shortfall or an unknown free space, naming what to do; `None`
    /// when the rule holds.
    pub fn warning(&self) -> Option<String> {
        match (self.ok, self.free_bytes) {
            (Some(false), Some(free)) => Some(format!(
                "the target offers {} ({} free + {} of this appliance's archives), less than the recommended {} ({}% of the {} used under {}); add space on the target or lower the retention",
                human_bytes(free.saturating_add(self.own_bytes)),
                human_bytes(free),
                human_bytes(self.own_bytes),
                human_bytes(self.required_bytes),
                (self.ratio * 100.0).round(),
                human_bytes(self.measured_bytes),
                self.measured_path.display()
            )),
            (None, _) => Some(
                "the target does not report its free space (unknown); check it by other means"
                    .into(),
            ),
            _ => None,
        }
    }

    /// One line of figures for reports:
    /// `free=… recommended=… (150% of /var usage …) own=…`.
    pub fn figures(&self) -> String {
        format!(
            "free={} recommended={} ({}% of {} usage {}) own={}",
            self.free_bytes.map_or("unknown".into(), human_bytes),
            human_bytes(self.required_bytes),
            (self.ratio * 100.0).round(),
            self.measured_path.display(),
            human_bytes(self.measured_bytes),
            human_bytes(self.own_bytes),
        )
    }
}

/// The bytes of `appliance`'s archives in a listing (entries of unknown size count 0).
pub(crate) fn own_bytes(listing: &[Entry], appliance: &str) -> u64 {
    listing
        .iter()
        .filter(|e| ArchiveName::parse(&e.name).is_some_and(|a| a.is_of(appliance)))
        .filter_map(|e| e.size)
        .sum()
}

/// Whether an archive of `expected` bytes clearly does not fit in `free` bytes: `Some`
/// with the reason when it does not, `None` when it fits or either figure is unknown.
pub(crate) fn will_not_fit(expected: Option<u64>, free: Option<u64>, kind: &str) -> Option<String> {
    let (expected, free) = (expected?, free?);
    (expected > free).then(|| {
        format!(
            "the last {kind} archive was {}, and the target has only {} free; nothing was sent. Free space on the target or lower the retention, then run `offbox run --kind {kind}`",
            human_bytes(expected),
            human_bytes(free)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: Option<u64>) -> Entry {
        Entry {
            name: name.into(),
            size,
        }
    }

    #[test]
    fn the_rule_counts_free_space_and_own_archives() {
        let rule = CapacityConfig::default();
        let m = Measured {
            path: "/var".into(),
            bytes: 1000,
            at: 0,
        };
        let mine = crate::targets::ArchiveName::new("a1", "system", 1, "0123456789abcdef");
        let theirs = crate::targets::ArchiveName::new("b2", "system", 1, "0123456789abcdef");
        let listing = vec![
            entry(&mine.to_string(), Some(600)),
            entry(&theirs.to_string(), Some(5000)),
            entry(".offbox-tmp.a1.x.y", Some(7000)),
        ];
        let c = Capacity::assess(&rule, &m, Some(899), &listing, "a1");
        assert_eq!(
            (c.required_bytes, c.own_bytes, c.ok),
            (1500, 600, Some(false))
        );
        let w = c.warning().unwrap();
        assert!(w.contains("less than the recommended"), "{w}");
        assert!(w.contains("150%") && w.contains("/var"), "{w}");
        let c = Capacity::assess(&rule, &m, Some(900), &listing, "a1");
        assert_eq!((c.ok, c.warning()), (Some(true), None));
        let c = Capacity::assess(&rule, &m, None, &listing, "a1");
        assert_eq!(c.ok, None);
        assert!(c.warning().unwrap().contains("unknown"));
        assert!(
            c.figures().starts_with("free=unknown recommended="),
            "{}",
            c.figures()
        );
    }

    #[test]
    fn a_clear_misfit_is_named_and_unknowns_pass() {
        assert!(will_not_fit(Some(10), Some(9), "system")
            .unwrap()
            .contains("offbox run --kind system"));
        assert_eq!(will_not_fit(Some(9), Some(9), "system"), None);
        assert_eq!(will_not_fit(None, Some(1), "system"), None);
        assert_eq!(will_not_fit(Some(1), None, "system"), None);
    }

    #[test]
    fn the_measurement_is_cached_for_its_path_and_age() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), vec![1u8; 8192]).unwrap();
        let old = Measured {
            path: d.path().into(),
            bytes: 1,
            at: 100,
        };
        assert_eq!(
            Measured::cached_or_walk(Some(&old), d.path(), 150, 3600).bytes,
            1
        );
        let fresh = Measured::cached_or_walk(Some(&old), d.path(), 4000, 3600);
        assert!(fresh.bytes >= 8192, "{fresh:?}");
        let other = Measured::cached_or_walk(Some(&old), Path::new("/nonexistent"), 150, 3600);
        assert_eq!(other.bytes, 0);
    }
}
