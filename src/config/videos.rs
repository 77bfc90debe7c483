//! The `[videos]` table: the opt-in, incremental backup of session recordings.
//!
//! ```toml
//! [videos]
//! enabled = true                         # "Enable sessions file backup?" (default false)
//! sources = ["/var/lib/pam/recordings"]  # the recording directories (absolute)
//! exclude = ["*.part"]                   # patterns, as [backup] exclude
//! settle_secs = 300                      # younger files are still being recorded
//! full_every = 30                        # a new full after 30 runs, or "14d": 14 days
//! keep_days = 90                         # restore points kept by prune
//! compress = false                       # recordings are compressed video already
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// Default settle time, in seconds.
pub(crate) const DEFAULT_SETTLE_SECS: u64 = 300;
/// Default chain length, in runs.
pub(crate) const DEFAULT_FULL_EVERY_RUNS: u32 = 30;
/// The longest chain: a full after this many archives whatever `full_every` says, so that a
/// header's dependency list stays small.
pub(crate) const MAX_CHAIN_RUNS: u32 = 1000;
/// Default retention of restore points, in days.
pub(crate) const DEFAULT_KEEP_DAYS: u32 = 90;

/// When a run writes a new full instead of an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullEvery {
    /// After this many archives in the chain (the full counts).
    Runs(u32),
    /// When the chain's full is this many days old.
    Days(u32),
}

impl<'de> Deserialize<'de> for FullEvery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "videos.full_every must be a number of runs from 1 to 1000 (full_every = 30) or days as \"14d\" (1d to 3650d)",
            )
        };
        match Raw::deserialize(d)? {
            Raw::N(n) if (1..=MAX_CHAIN_RUNS as i64).contains(&n) => Ok(FullEvery::Runs(n as u32)),
            Raw::S(s) => match s.strip_suffix('d').and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if (1..=3650).contains(&n) => Ok(FullEvery::Days(n)),
                _ => Err(bad()),
            },
            Raw::N(_) => Err(bad()),
        }
    }
}

fn default_settle() -> u64 {
    DEFAULT_SETTLE_SECS
}
fn default_full_every() -> FullEvery {
    FullEvery::Runs(DEFAULT_FULL_EVERY_RUNS)
}
fn default_keep_days() -> u32 {
    DEFAULT_KEEP_DAYS
}

/// `[videos]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideosConfig {
    /// The operator's opt-in; nothing is backed up while false.
    #[serde(default)]
    pub enabled: bool,
    /// The recording directories, absolute.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// Exclude patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files modified less than this many seconds ago are skipped (still being recorded).
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// The chain length.
    #[serde(default = "default_full_every")]
    pub full_every: FullEvery,
    /// Restore points younger than this are kept by prune (the newest always is).
    #[serde(default = "default_keep_days")]
    pub keep_days: u32,
    /// Compress the recordings with zstd (off: they are compressed video already).
    #[serde(default)]
    pub compress: bool,
}

impl Default for VideosConfig {
    fn default() -> Self {
        VideosConfig {
            enabled: false,
            sources: Vec::new(),
            exclude: Vec::new(),
            settle_secs: DEFAULT_SETTLE_SECS,
            full_every: default_full_every(),
            keep_days: DEFAULT_KEEP_DAYS,
            compress: false,
        }
    }
}

impl VideosConfig {
    /// The checks of an enabled table: sources given, absolute, no overlap with nothing.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.sources.is_empty() {
            return Err("videos.enabled = true needs videos.sources: the recording directories (absolute paths)".into());
        }
        if let Some(p) = self.sources.iter().find(|p| !p.is_absolute()) {
            return Err(format!(
                "videos.sources: {} is not an absolute path",
                p.display()
            ));
        }
        if self.settle_secs > 7 * 86_400 {
            return Err("videos.settle_secs must be at most 604800 (7 days)".into());
        }
        if self.keep_days == 0 {
            return Err("videos.keep_days must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<VideosConfig, String> {
        let v: VideosConfig = toml::from_str(s).map_err(|e| e.message().to_string())?;
        v.validate()?;
        Ok(v)
    }

    #[test]
    fn defaults_and_values() {
        let v = parse("").unwrap();
        assert!(!v.enabled);
        assert_eq!(v.full_every, FullEvery::Runs(30));
        assert_eq!(v.settle_secs, 300);
        let v = parse("enabled = true\nsources = [\"/r\"]\nfull_every = \"14d\"").unwrap();
        assert_eq!(v.full_every, FullEvery::Days(14));
        assert_eq!(
            parse("full_every = 7").unwrap().full_every,
            FullEvery::Runs(7)
        );
        for bad in [
            "full_every = 0",
            "full_every = \"14\"",
            "full_every = \"0d\"",
        ] {
            assert!(
                parse(bad)
                    .unwrap_err()
                    .contains("videos.full_every must be"),
                "{bad}"
            );
        }
        assert!(parse("enabled = true")
            .unwrap_err()
            .contains("needs videos.sources"));
        assert!(parse("enabled = true\nsources = [\"r\"]")
            .unwrap_err()
            .contains("not an absolute path"));
        assert!(parse("enable = true").is_err());
    }
}
