//! `s3://bucket/prefix`: an S3-compatible object store (Ceph RGW, MinIO, SeaweedFS, a cloud
//! bucket), with Object Lock (WORM retention) on every archive when configured.
//!
//! - Client: rusty-s3 signs (SigV4, sans-I/O), ureq sends (blocking); no async runtime.
//!   The endpoint is resolved through the guard and its connected peer checked again
//!   ([`client`], [`connect`]).
//! - Layout: each appliance writes under `prefix/APPLIANCE/` (the injective
//!   [`crate::targets::name::sanitize`] of its id); a name is mapped to its key by the
//!   appliance it carries, so list and prune see plain names as on other targets, and an
//!   object under another appliance's folder that claims to be ours is ignored.
//! - Uploads: multipart, [`upload::PART_SIZE`] parts (10,000 parts at most: about 156 GiB),
//!   one part buffered and one in flight, straight to the final key with the lock headers;
//!   the CompleteMultipartUpload carries `If-None-Match: *` ([`upload`]). A killed run
//!   leaves an upload in progress, which [`Target::list`] shows as a temporary of its
//!   appliance ([`upload_alias`]) and [`Target::delete`] aborts (the cleanup of stale
//!   temporaries under the run lock).
//! - Delete: every version of the key, unless it is still locked
//!   ([`TargetError::Locked`], "locked until …").
//! - Free space: not reported (`None`: the capacity check says "unknown" and invents no
//!   figure), unless `quota_bytes` is configured: then the quota less what is stored under
//!   the URL's prefix.

mod client;
mod connect;
mod download;
mod lock;
mod upload;
mod xml;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use rusty_s3::actions::ListObjectsV2;

use super::temp::TempName;
use super::url::{S3Options, S3Url};
use super::{name, temp_name, ArchiveName, Entry, Target, TargetError, TargetSpec, Upload};
use crate::guard::SelfIdentity;
use crate::secret::source::{read_secret_text, SecretSource};
use client::{Body, Client};
use lock::{BucketLock, Retention};

pub use lock::LockReport;

/// A connected S3 bucket and prefix.
pub(crate) struct S3Target {
    client: Arc<Client>,
    /// `prefix/` or empty.
    prefix: String,
    /// The folder of the appliance that last began an upload (for names that carry none).
    home: Option<String>,
    retention: Option<Retention>,
    quota: Option<u64>,
    bucket_lock: BucketLock,
}

impl S3Target {
    /// Reads the secret key, builds the guarded client, and checks the bucket: it exists,
    /// the credentials work, and it has Object Lock when retention is configured.
    pub fn connect(
        spec: &TargetSpec,
        target: &S3Url,
        me: &SelfIdentity,
    ) -> Result<S3Target, TargetError> {
        let url = target.to_string();
        let opts = spec.s3.as_ref().ok_or_else(|| TargetError::Invalid {
            target: url.clone(),
            why: "an s3:// target needs a [targets.NAME] table with endpoint, access_key_id and secret_key_file; name the table instead of the URL".into(),
        })?;
        let secret = secret_key(&url, opts)?;
        let client = Client::new(
            target,
            opts,
            secret.expose(),
            me,
            Duration::from_secs(spec.timeout_secs),
        )?;
        let retention = Retention::from_options(&url, opts)?;
        let bucket_lock = lock::bucket_lock(&client)?;
        if let Some(r) = &retention {
            bucket_lock.require(&url, r)?;
        }
        let prefix = if target.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", target.prefix)
        };
        Ok(S3Target {
            client: Arc::new(client),
            prefix,
            home: None,
            retention,
            quota: opts.quota_bytes,
            bucket_lock,
        })
    }

    /// The key of `name`: under the folder of the appliance its name carries.
    fn key_of(&self, name: &str) -> Result<String, TargetError> {
        super::check_plain(&self.client.url, name)?;
        let dir = ArchiveName::parse(name)
            .map(|a| a.appliance)
            .or_else(|| TempName::parse(name).map(|t| t.appliance))
            .or_else(|| self.home.clone())
            .ok_or_else(|| TargetError::NotFound {
                target: self.client.url.clone(),
                what: format!("{name} (not an archive name)"),
            })?;
        Ok(format!("{}{dir}/{name}", self.prefix))
    }

    /// The plain name of `key` if it lies where its name says it belongs.
    fn name_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let (dir, name) = key.strip_prefix(&self.prefix)?.split_once('/')?;
        let owner = ArchiveName::parse(name)
            .map(|a| a.appliance)
            .or_else(|| TempName::parse(name).map(|t| t.appliance));
        match owner {
            Some(o) if o == dir => Some(name),
            None if name.starts_with(".offbox-probe.") && self.home.as_deref() == Some(dir) => {
                Some(name)
            }
            _ => None,
        }
    }

    /// What `target check` reports about the bucket's Object Lock.
    pub fn lock_report(&self) -> LockReport {
        self.bucket_lock.report(self.retention.as_ref())
    }
}

/// The temporary name under which `list` shows an upload in progress to the final key
/// `key` of appliance folder `home`: `.offbox-tmp.HOME.` and 16 hex digits of the key's
/// SHA-256. Such an upload has no run id (S3 lists only the key and the start time), so a
/// run that holds the appliance's run lock treats it as stale, as it is: only runs that
/// hold the lock write under final names.
fn upload_alias(home: &str, key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    format!(
        "{}{home}.{}",
        super::TMP_PREFIX,
        data_encoding::HEXLOWER.encode(&d.as_ref()[..8])
    )
}

/// The secret key, from `secret_key_file` or `secret_key_env`, read by the one secret
/// reader (zeroizing, warns when the file is readable by others).
fn secret_key(url: &str, opts: &S3Options) -> Result<crate::secret::SecretText, TargetError> {
    let source = match (&opts.secret_key_file, &opts.secret_key_env) {
        (Some(p), _) => SecretSource::File(p.clone()),
        (None, Some(var)) if std::env::var_os(var).is_some() => SecretSource::Env(var.clone()),
        (None, Some(var)) => {
            return Err(TargetError::Credentials {
                target: url.into(),
                detail: format!("secret_key_env names ${var}, which is not set"),
            })
        }
        (None, None) => {
            return Err(TargetError::Credentials {
                target: url.into(),
                detail: "no secret key: set secret_key_file (or secret_key_env) in [targets.NAME]"
                    .into(),
            })
        }
    };
    read_secret_text(&source, "S3 secret key", "secret_key_file").map_err(|e| {
        TargetError::Credentials {
            target: url.into(),
            detail: e.to_string(),
        }
    })
}

impl Target for S3Target {
    fn url(&self) -> String {
        self.client.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        self.home = Some(name::sanitize(appliance));
        let temp = temp_name(appliance);
        let key = self.key_of(&temp)?;
        let up = upload::S3Upload::begin(
            self.client.clone(),
            self.prefix.clone(),
            key,
            temp,
            None,
            self.retention,
        )?;
        Ok(Box::new(up))
    }

    fn begin_named(&mut self, appliance: &str, name: &str) -> Result<Box<dyn Upload>, TargetError> {
        let home = name::sanitize(appliance);
        self.home = Some(home.clone());
        let key = self.key_of(name)?;
        let up = upload::S3Upload::begin(
            self.client.clone(),
            self.prefix.clone(),
            key.clone(),
            upload_alias(&home, &key),
            Some(name.to_string()),
            self.retention,
        )?;
        Ok(Box::new(up))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let c = &self.client;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut a = ListObjectsV2::new(&c.bucket, c.creds());
            if !self.prefix.is_empty() {
                a.with_prefix(self.prefix.as_str());
            }
            if let Some(t) = &token {
                a.with_continuation_token(t.as_str());
            }
            let resp = c.call("listing the archives", a, &[], Body::Empty)?;
            let text = c.text("listing the archives", resp)?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| TargetError::Io {
                target: c.url.clone(),
                op: "listing the archives".into(),
                detail: format!("unreadable answer: {e}"),
                retry: super::Retry::Permanent,
            })?;
            for o in page.contents {
                if let Some(n) = self.name_of(&o.key) {
                    out.push(Entry {
                        name: n.to_string(),
                        size: o.size,
                    });
                }
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        for key in upload::in_progress(c, &self.prefix)? {
            let Some(n) = self.name_of(&key) else {
                continue;
            };
            // An upload under its final name is not an archive yet: it is shown, like
            // any upload in progress, as a temporary of its appliance.
            let n = match ArchiveName::parse(n) {
                Some(a) => upload_alias(&a.appliance, &key),
                None => n.to_string(),
            };
            if !out.iter().any(|e| e.name == n) {
                out.push(Entry {
                    name: n,
                    size: None,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        let key = self.key_of(name)?;
        Ok(Box::new(download::S3Reader::new(self.client.clone(), key)))
    }

    fn open_at(&mut self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, TargetError> {
        let key = self.key_of(name)?;
        Ok(Box::new(
            download::S3Reader::new(self.client.clone(), key).starting_at(offset),
        ))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        let key = self.key_of(name)?;
        if let Some(t) = TempName::parse(name) {
            // A killed run's temporary is an upload in progress, not (yet) an object: under
            // its temporary key, or under a final name that `list` showed as `name`.
            let folder = format!("{}{}/", self.prefix, t.appliance);
            upload::abort_matching(&self.client, &folder, |k| {
                k == key || upload_alias(&t.appliance, k) == name
            })?;
            return match lock::delete_versions(&self.client, &key, name) {
                Err(TargetError::NotFound { .. }) => Ok(()),
                r => r,
            };
        }
        lock::delete_versions(&self.client, &key, name)
    }

    fn notes(&mut self) -> Vec<String> {
        let r = self.lock_report();
        let lock = match r.bucket_lock {
            Some(true) => "enabled",
            Some(false) => "NOT enabled",
            None => "unknown (these credentials may not read it)",
        };
        vec![
            format!("bucket Object Lock: {lock}"),
            format!(
                "bucket default retention: {}",
                r.bucket_default_retention.as_deref().unwrap_or("none")
            ),
            format!(
                "archive retention: {}",
                r.archive_retention
                    .as_deref()
                    .unwrap_or("none (lock_mode not set)")
            ),
            format!(
                "free space: {}",
                match self.quota {
                    Some(q) => format!("against quota_bytes = {q}"),
                    None => "not reported by S3 (set quota_bytes to have it counted)".into(),
                }
            ),
        ]
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        let Some(quota) = self.quota else {
            return Ok(None);
        };
        // The quota covers everything under the URL's prefix (as a bucket or user quota on
        // the server would), whichever appliance wrote it.
        let used: u64 = self.list()?.iter().filter_map(|e| e.size).sum();
        Ok(Some(quota.saturating_sub(used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::temp::{classify, Leftover};

    #[test]
    fn an_upload_to_a_final_name_is_listed_as_a_stale_temporary_of_its_appliance() {
        let key = "fleet/pam-1/offbox-pam-1-system-20261202T040000Z-0123abcd.obx";
        let alias = upload_alias("pam-1", key);
        assert_eq!(
            alias,
            upload_alias("pam-1", key),
            "the same for every listing"
        );
        assert!(alias.starts_with(".offbox-tmp.pam-1."), "{alias}");
        assert_eq!(alias.len(), ".offbox-tmp.pam-1.".len() + 16, "{alias}");
        assert_ne!(alias, upload_alias("pam-1", &key.replace("0123", "4567")));
        let t = TempName::parse(&alias).unwrap();
        assert_eq!((t.appliance.as_str(), t.run), ("pam-1", None));
        // Under the run lock it is stale whatever runs; another appliance never touches it.
        assert_eq!(classify(&alias, "pam-1", |_| true), Leftover::Stale);
        assert_eq!(classify(&alias, "pam-2", |_| true), Leftover::NotOurs);
    }
}
