//! The streaming upload: a multipart upload under a temporary key, published by
//! [`Upload::commit`] as a server-side copy into the final key.
//!
//! Why two steps: the final name carries the archive id, known only when the archive is
//! complete, and an S3 key is fixed when its multipart upload begins. The temporary upload
//! streams in [`PART_SIZE`] parts (one buffered while the pipeline's writer thread sends,
//! so memory stays constant: 16 MiB here); S3's 10,000-part limit makes the largest archive
//! 10,000 × 16 MiB ≈ 156 GiB. At commit the temporary upload is completed and copied,
//! [`COPY_PART`] at a time (UploadPartCopy, no data through the appliance), into a new
//! multipart upload of the final key that carries the Object Lock headers; its
//! CompleteMultipartUpload sends `If-None-Match: *`, so the archive appears at that moment
//! and never replaces an existing one. The temporary object is then deleted.
//!
//! A dropped upload aborts its multipart uploads; a killed one leaves its upload in
//! progress, listed by [`in_progress`] and aborted by [`abort_all`] on the next run.

use std::io::{self, Write};
use std::sync::Arc;

use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, GetObject, S3Action,
    UploadPart,
};

use super::client::{Body, Client};
use super::lock::{self, Retention};
use super::xml;
use crate::targets::{ArchiveName, Retry, TargetError, Upload};

/// Size of each uploaded part: 16 MiB (the archive may reach 10,000 parts ≈ 156 GiB).
pub(super) const PART_SIZE: usize = 16 << 20;
/// S3's limit on the number of parts of one upload.
const MAX_PARTS: usize = 10_000;
/// Bytes copied server-side per UploadPartCopy at commit.
const COPY_PART: u64 = 1 << 30;

/// An upload in progress under a temporary key.
pub(super) struct S3Upload {
    client: Arc<Client>,
    key: String,
    temp: String,
    prefix: String,
    upload_id: String,
    etags: Vec<String>,
    buf: Vec<u8>,
    size: u64,
    retention: Option<Retention>,
    done: bool,
}

impl S3Upload {
    /// Begins the multipart upload of `key` (the temporary name `temp`).
    pub(super) fn begin(
        client: Arc<Client>,
        prefix: String,
        key: String,
        temp: String,
        retention: Option<Retention>,
    ) -> Result<S3Upload, TargetError> {
        let upload_id = create(&client, &key, &[])?;
        Ok(S3Upload {
            client,
            key,
            temp,
            prefix,
            upload_id,
            etags: Vec::new(),
            buf: Vec::with_capacity(PART_SIZE),
            size: 0,
            retention,
            done: false,
        })
    }

    /// Sends the buffered bytes as the next part.
    fn send_part(&mut self) -> Result<(), TargetError> {
        let c = &self.client;
        let n = next_part(&c.url, self.etags.len())?;
        let a = UploadPart::new(&c.bucket, c.creds(), &self.key, n, &self.upload_id);
        let resp = c.call(
            &format!("uploading part {n}"),
            a,
            &[],
            Body::Bytes(&self.buf),
        )?;
        let etag = etag_of(c, &resp, "uploading a part")?;
        self.etags.push(etag);
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Completes the temporary upload; returns its version id, if the bucket versions.
    fn complete_temp(&mut self) -> Result<Option<String>, TargetError> {
        if !self.buf.is_empty() || self.etags.is_empty() {
            self.send_part()?;
        }
        let c = &self.client;
        let a = CompleteMultipartUpload::new(
            &c.bucket,
            c.creds(),
            &self.key,
            &self.upload_id,
            self.etags.iter().map(String::as_str),
        );
        let body = a.clone().body();
        let resp = c.call(
            "completing the temporary upload",
            a,
            &[],
            Body::Bytes(body.as_bytes()),
        )?;
        let version = header(&resp, "x-amz-version-id");
        let text = c.text("completing the temporary upload", resp)?;
        // S3 may answer 200 with an error document once the body has started.
        if let Some(code) = xml::first(&text, "Code") {
            return Err(TargetError::Io {
                target: c.url.clone(),
                op: "completing the temporary upload".into(),
                detail: code,
                retry: Retry::Temporary,
            });
        }
        self.done = true;
        Ok(version)
    }

    /// Copies the completed temporary object into `final_key` and completes that upload
    /// with `If-None-Match: *` and the lock headers.
    fn publish(&self, final_key: &str, lock_it: bool) -> Result<(), TargetError> {
        let c = &self.client;
        let headers = match (&self.retention, lock_it) {
            (Some(r), true) => r.headers(),
            _ => Vec::new(),
        };
        let id = create(c, final_key, &headers)?;
        let result = (|| {
            let source = format!("/{}/{}", c.bucket.name(), encode_key(&self.key));
            let mut etags = Vec::new();
            let mut from = 0u64;
            loop {
                let to = (from + COPY_PART).min(self.size).saturating_sub(1);
                let n = etags.len() as u16 + 1;
                let a = UploadPart::new(&c.bucket, c.creds(), final_key, n, &id);
                let mut h = vec![("x-amz-copy-source", source.clone())];
                if self.size > 0 {
                    h.push(("x-amz-copy-source-range", format!("bytes={from}-{to}")));
                }
                let resp = c.call("copying into the final name", a, &h, Body::Empty)?;
                let text = c.text("copying into the final name", resp)?;
                let etag = xml::first(&text, "ETag").ok_or_else(|| TargetError::Io {
                    target: c.url.clone(),
                    op: "copying into the final name".into(),
                    detail: format!("no ETag in the answer: {text}"),
                    retry: Retry::Temporary,
                })?;
                etags.push(etag);
                from = to + 1;
                if from >= self.size {
                    break;
                }
            }
            let a = CompleteMultipartUpload::new(
                &c.bucket,
                c.creds(),
                final_key,
                &id,
                etags.iter().map(String::as_str),
            );
            let body = a.clone().body();
            let resp = c.call(
                "publishing the archive",
                a,
                &[("if-none-match", "*".to_string())],
                Body::Bytes(body.as_bytes()),
            )?;
            let text = c.text("publishing the archive", resp)?;
            match xml::first(&text, "Code") {
                Some(code) if code == "PreconditionFailed" => Err(TargetError::Exists {
                    target: c.url.clone(),
                    name: final_key.into(),
                }),
                Some(code) => Err(TargetError::Io {
                    target: c.url.clone(),
                    op: "publishing the archive".into(),
                    detail: code,
                    retry: Retry::Temporary,
                }),
                None => Ok(()),
            }
        })();
        if let Err(e) = result {
            abort(c, final_key, &id);
            return Err(match e {
                TargetError::Exists { target, .. } => TargetError::Exists {
                    target,
                    name: final_key.rsplit('/').next().unwrap_or(final_key).into(),
                },
                e => e,
            });
        }
        Ok(())
    }
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PART_SIZE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_SIZE {
            self.send_part().map_err(TargetError::into_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        crate::targets::check_plain(&self.client.url, name)?;
        let final_key = match self.key.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        debug_assert!(final_key.starts_with(&self.prefix));
        let version = self.complete_temp()?;
        let published = self.publish(&final_key, ArchiveName::parse(name).is_some());
        // The temporary object goes in any case (it has no retention of its own).
        let _ = lock::delete_version(&self.client, &self.key, version.as_deref());
        published
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if !self.done {
            abort(&self.client, &self.key, &self.upload_id);
        }
    }
}

/// The number of the part after `sent` parts, or "target full" once S3's limit of
/// [`MAX_PARTS`] parts (of [`PART_SIZE`]: the largest archive) is reached.
fn next_part(url: &str, sent: usize) -> Result<u16, TargetError> {
    if sent >= MAX_PARTS {
        return Err(TargetError::NoSpace {
            target: url.into(),
            detail: format!(
                "the archive exceeds S3's limit of {MAX_PARTS} parts of {} MiB, {} GiB; nothing was published. Split the backup into smaller ones (for example one per data set), or use another target for it",
                PART_SIZE >> 20,
                (MAX_PARTS * PART_SIZE) >> 30
            ),
        });
    }
    Ok(sent as u16 + 1)
}

/// CreateMultipartUpload of `key` with `headers`; the upload id.
fn create(c: &Client, key: &str, headers: &[(&str, String)]) -> Result<String, TargetError> {
    let a = CreateMultipartUpload::new(&c.bucket, c.creds(), key);
    let resp = c.call("starting the upload", a, headers, Body::Empty)?;
    let text = c.text("starting the upload", resp)?;
    CreateMultipartUpload::parse_response(&text)
        .map(|r| r.upload_id().to_string())
        .map_err(|e| TargetError::Io {
            target: c.url.clone(),
            op: "starting the upload".into(),
            detail: format!("unreadable answer: {e}"),
            retry: Retry::Temporary,
        })
}

/// Aborts one multipart upload, best effort (a dropped upload has no one to tell).
fn abort(c: &Client, key: &str, id: &str) {
    let a = AbortMultipartUpload::new(&c.bucket, c.creds(), key, id);
    let _ = c.call("aborting the upload", a, &[], Body::Empty);
}

/// (key, upload id) of the multipart uploads in progress under `prefix`.
fn uploads(c: &Client, prefix: &str) -> Result<Vec<(String, String)>, TargetError> {
    let mut out = Vec::new();
    let (mut key_marker, mut id_marker) = (String::new(), String::new());
    loop {
        let mut a = GetObject::new(&c.bucket, c.creds(), "");
        a.query_mut().insert("uploads", "");
        a.query_mut().insert("prefix", prefix.to_string());
        if !key_marker.is_empty() {
            a.query_mut().insert("key-marker", key_marker.clone());
            a.query_mut().insert("upload-id-marker", id_marker.clone());
        }
        let resp = c.call("listing uploads in progress", a, &[], Body::Empty)?;
        let text = c.text("listing uploads in progress", resp)?;
        for u in xml::blocks(&text, "Upload") {
            if let (Some(k), Some(id)) = (xml::first(u, "Key"), xml::first(u, "UploadId")) {
                out.push((k, id));
            }
        }
        if xml::first(&text, "IsTruncated").as_deref() != Some("true") {
            return Ok(out);
        }
        key_marker = xml::first(&text, "NextKeyMarker").unwrap_or_default();
        id_marker = xml::first(&text, "NextUploadIdMarker").unwrap_or_default();
        if key_marker.is_empty() {
            return Ok(out);
        }
    }
}

/// The keys of the multipart uploads in progress under `prefix`.
pub(super) fn in_progress(c: &Client, prefix: &str) -> Result<Vec<String>, TargetError> {
    Ok(uploads(c, prefix)?.into_iter().map(|(k, _)| k).collect())
}

/// Aborts every upload in progress of exactly `key`.
pub(super) fn abort_all(c: &Client, key: &str) -> Result<(), TargetError> {
    for (k, id) in uploads(c, key)? {
        if k == key {
            let a = AbortMultipartUpload::new(&c.bucket, c.creds(), &k, &id);
            match c.call("aborting a stale upload", a, &[], Body::Empty) {
                Ok(_) | Err(TargetError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// A response header as text.
fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn etag_of(
    c: &Client,
    resp: &ureq::http::Response<ureq::Body>,
    op: &str,
) -> Result<String, TargetError> {
    header(resp, "etag").ok_or_else(|| TargetError::Io {
        target: c.url.clone(),
        op: op.into(),
        detail: "no ETag in the answer".into(),
        retry: Retry::Temporary,
    })
}

/// %-encodes a key for `x-amz-copy-source` (unreserved characters and `/` stay).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_limit_is_a_clear_error() {
        assert_eq!(next_part("s3://b", 0).unwrap(), 1);
        assert_eq!(next_part("s3://b", MAX_PARTS - 1).unwrap(), 10_000);
        let e = next_part("s3://b", MAX_PARTS).unwrap_err();
        assert!(matches!(e, TargetError::NoSpace { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("10000 parts of 16 MiB, 156 GiB"), "{text}");
        assert!(text.contains("Split the backup"), "{text}");
    }

    #[test]
    fn copy_source_keys_are_encoded() {
        assert_eq!(
            encode_key("fleet/pam-1/.offbox-tmp.a b"),
            "fleet/pam-1/.offbox-tmp.a%20b"
        );
    }
}
