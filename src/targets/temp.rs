//! Temporary upload names, and which of them are stale.
//!
//! A name is `.offbox-tmp.<appliance>.<run>.<random>`: `<appliance>` is the injective
//! [`name::sanitize`] of the appliance id (it has no dots), `<run>` the [`RunId`] of the run
//! that writes it (`<pid>-<boot>`), `<random>` 16 hex digits. Names of earlier versions,
//! `.offbox-tmp.<appliance>.<random>`, are still recognized; their run is unknown.
//!
//! Staleness is only ever decided for this appliance's temporaries, and only by a caller
//! that holds the appliance's run lock (`jobs::lock`): then no other backup or prune of
//! this appliance is in progress, so every temporary of it is a leftover of a killed run,
//! except one whose run is still alive on this boot (a `target check` probe, which takes no
//! lock), which is kept.

use super::name;
use crate::run_id::RunId;

/// Prefix of temporary upload names.
pub const TMP_PREFIX: &str = ".offbox-tmp.";

/// Hex digits of the random part.
const RANDOM_LEN: usize = 16;

/// A parsed temporary name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TempName {
    /// The appliance part (sanitized).
    pub appliance: String,
    /// The run that writes it; `None` for names of earlier versions.
    pub run: Option<RunId>,
}

/// A fresh temporary name for `appliance`, carrying this process's run id.
pub fn temp_name(appliance: &str) -> String {
    let r = crate::secret::random_bytes::<{ RANDOM_LEN / 2 }>();
    format!(
        "{TMP_PREFIX}{}.{}.{}",
        name::sanitize(appliance),
        RunId::current(),
        data_encoding::HEXLOWER.encode(&r)
    )
}

impl TempName {
    /// Parses a temporary name; `None` for anything else.
    pub fn parse(file: &str) -> Option<TempName> {
        let parts: Vec<&str> = file.strip_prefix(TMP_PREFIX)?.split('.').collect();
        let (app, run, random) = match parts.as_slice() {
            [app, random] => (*app, None, *random),
            [app, run, random] => (*app, Some(RunId::parse(run)?), *random),
            _ => return None,
        };
        let hex = |c: u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
        if app.is_empty() || random.len() != RANDOM_LEN || !random.bytes().all(hex) {
            return None;
        }
        Some(TempName {
            appliance: app.to_string(),
            run,
        })
    }

    /// Whether this temporary belongs to `appliance`.
    pub(crate) fn is_of(&self, appliance: &str) -> bool {
        self.appliance == name::sanitize(appliance)
    }
}

/// Whether `file` is a temporary of `appliance` (not of another appliance sharing the
/// target directory).
pub fn is_temp_of(file: &str, appliance: &str) -> bool {
    TempName::parse(file).is_some_and(|t| t.is_of(appliance))
}

/// What to do with one file during cleanup, for a caller that holds `appliance`'s run lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// Not a temporary of this appliance: never touched.
    NotOurs,
    /// A temporary of a run that is still alive: kept.
    Running,
    /// A temporary of a dead run: remove it.
    Stale,
}

/// Classifies `file`; `alive` tells whether a run is still in progress.
pub(crate) fn classify(file: &str, appliance: &str, alive: impl Fn(&RunId) -> bool) -> Leftover {
    match TempName::parse(file) {
        Some(t) if t.is_of(appliance) => match &t.run {
            Some(run) if alive(run) => Leftover::Running,
            _ => Leftover::Stale,
        },
        _ => Leftover::NotOurs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_classify() {
        let mine = temp_name("pam01");
        let t = TempName::parse(&mine).unwrap();
        assert_eq!(t.run, Some(RunId::current()));
        assert!(t.is_of("pam01") && !t.is_of("pam02"));
        // "pam.prod" and "pam_prod" do not own each other's temporaries.
        let dot = temp_name("pam.prod");
        assert!(is_temp_of(&dot, "pam.prod") && !is_temp_of(&dot, "pam_prod"));
        assert!(!is_temp_of(&temp_name("pam_prod"), "pam.prod"));
        let legacy = ".offbox-tmp.pam01.0123456789abcdef";
        assert_eq!(TempName::parse(legacy).unwrap().run, None);
        let dead = ".offbox-tmp.pam01.4711-a880fd02.0123456789abcdef";
        let alive = |r: &RunId| r.pid != 4711;
        assert_eq!(classify(&mine, "pam01", alive), Leftover::Running);
        assert_eq!(classify(dead, "pam01", alive), Leftover::Stale);
        assert_eq!(classify(legacy, "pam01", alive), Leftover::Stale);
        for other in [
            ".offbox-tmp.pam02.4711-a880fd02.0123456789abcdef",
            ".offbox-tmp.pam01-b.4711-a880fd02.0123456789abcdef",
            ".offbox-tmp.pam01.4711-a880fd02.0123456789abcdef.x",
            ".offbox-tmp.pam01.4711.0123456789abcdef",
            ".offbox-tmp.pam01.0123456789ABCDEF",
            ".offbox-tmp.pam01.0123",
            ".offbox-probe.0123456789abcdef",
            "offbox-pam01-system-20261118T110640Z-0123abcd.obx",
        ] {
            assert_eq!(
                classify(other, "pam01", alive),
                Leftover::NotOurs,
                "{other}"
            );
        }
    }
}
