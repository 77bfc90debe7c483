//! `s3://bucket[/prefix]`, and the settings of an S3 target that are not in its URL (the
//! endpoint, the region, the credentials' sources, Object Lock), read from its
//! `[targets.NAME]` table. Parsing only; no I/O.
//!
//! The URL names the bucket and the key prefix; the endpoint is a separate setting, so that
//! the same URL names the same archives whatever the addressing style.

use std::fmt;
use std::path::PathBuf;

use super::{invalid, Parts};
use crate::targets::TargetError;

/// An `s3://` target: a bucket and a key prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Url {
    pub(super) fn parse(p: &Parts) -> Result<S3Url, TargetError> {
        let url = p.url;
        if p.userinfo.is_some() {
            return Err(invalid(
                url,
                "s3 URLs take no user: set access_key_id and secret_key_file in [targets.NAME]",
            ));
        }
        if p.query.is_some() {
            return Err(invalid(
                url,
                "s3 URLs take no options: set them in [targets.NAME]",
            ));
        }
        let bucket = p.hostport.to_string();
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !ok {
            return Err(invalid(
                url,
                format!(
                    "{bucket:?} is not an S3 bucket name (3-63 of a-z 0-9 . -): s3://bucket/prefix"
                ),
            ));
        }
        let prefix = p.path.trim_matches('/').to_string();
        if prefix.split('/').any(|c| c.is_empty() || c == ".") && !prefix.is_empty() {
            return Err(invalid(url, "no empty or . components in the prefix"));
        }
        Ok(S3Url { bucket, prefix })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum LockMode {
    /// Nobody can delete or shorten the retention, not even the bucket owner.
    #[serde(rename = "COMPLIANCE")]
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can delete early.
    #[serde(rename = "GOVERNANCE")]
    Governance,
}

impl LockMode {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// The settings of an S3 target from its `[targets.NAME]` table. No secret here: only
/// where the secret key is read from.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// `https://host[:port]` (or `http://` with `allow_http`).
    pub endpoint: Option<String>,
    /// Region for signing (default `us-east-1`).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host style.
    pub path_style: bool,
    /// Allows a plain-http endpoint (test beds only).
    pub allow_http: bool,
    /// A PEM file of CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// File holding the secret access key.
    pub secret_key_file: Option<PathBuf>,
    /// Environment variable holding the secret access key.
    pub secret_key_env: Option<String>,
    /// Object Lock mode for every archive.
    pub lock_mode: Option<LockMode>,
    /// Retention in days.
    pub retention_days: Option<u64>,
    /// Retention in seconds, for test beds (overrides `retention_days`).
    pub retention_secs: Option<u64>,
    /// Bytes granted under the URL's prefix (all appliances writing there; e.g. the
    /// bucket's quota on the server); free space is reported as this less what is stored.
    pub quota_bytes: Option<u64>,
}

impl S3Options {
    /// The retention in seconds, if any is configured.
    pub fn retention(&self) -> Option<u64> {
        self.retention_secs
            .or(self.retention_days.map(|d| d.saturating_mul(86_400)))
    }
}

#[cfg(test)]
mod tests {
    use crate::targets::TargetUrl;

    #[test]
    fn parses_and_refuses() {
        let u = TargetUrl::parse("s3://offbox-backups/fleet/eu").unwrap();
        assert_eq!(u.to_string(), "s3://offbox-backups/fleet/eu");
        let u = TargetUrl::parse("s3://offbox-backups").unwrap();
        assert_eq!(u.to_string(), "s3://offbox-backups");
        assert_eq!(
            TargetUrl::parse("s3://bkt/a/").unwrap().to_string(),
            "s3://bkt/a"
        );
        for bad in [
            "s3://UPPER/x",
            "s3://ab/x",
            "s3://key@bkt/x",
            "s3://bkt/x?endpoint=y",
            "s3://bkt/a//b",
            "s3://bkt/a/../b",
            "s3://-bkt/x",
        ] {
            assert!(TargetUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
