//! The streaming upload: a multipart upload, invisible until CompleteMultipartUpload with
//! `If-None-Match: *` makes it an object, so an archive appears whole or not at all and
//! never replaces an existing one.
//!
//! A backup knows its archive's name before the first byte ([`super::S3Target`]'s
//! `begin_named`), so its upload goes straight to the final key, with the Object Lock
//! headers. It streams in [`PART_SIZE`] parts (one buffered while the pipeline's writer
//! thread sends, so memory stays constant: 16 MiB here); S3's 10,000-part limit makes the
//! largest archive 10,000 × 16 MiB ≈ 156 GiB.
//!
//! An upload begun without its name (the `target check` probe) goes to a temporary key and
//! [`Upload::commit`] copies it server-side ([`COPY_PART`] at a time, UploadPartCopy, no
//! data through the appliance) into a second multipart upload of the final key, completed
//! as above; the temporary object is then deleted.
//!
//! A dropped upload aborts its multipart uploads; a killed one leaves its upload in
//! progress, listed by [`in_progress`] and aborted by [`abort_matching`] on the next run.

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

/// An upload in progress.
pub(super) struct S3Upload {
    client: Arc<Client>,
    /// The key written: the final key when `planned` is set, else a temporary one.
    key: String,
    /// What [`Upload::temp_name`] shows: the name `list` gives this upload while it runs.
    temp: String,
    prefix: String,
    /// The name this upload was begun for (written under its final key), if known.
    planned: Option<String>,
    upload_id: String,
    etags: Vec<String>,
    buf: Vec<u8>,
    size: u64,
    retention: Option<Retention>,
    done: bool,
}

impl S3Upload {
    /// Begins the multipart upload of `key`. With `planned` (the name `key` ends in), the
    /// key is final and carries the lock headers; without, it is the temporary `temp`.
    pub(super) fn begin(
        client: Arc<Client>,
        prefix: String,
        key: String,
        temp: String,
        planned: Option<String>,
        retention: Option<Retention>,
    ) -> Result<S3Upload, TargetError> {
        let headers = match (&planned, &retention) {
            (Some(n), Some(r)) if ArchiveName::parse(n).is_some() => r.headers(),
            _ => Vec::new(),
        };
        let upload_id = create(&client, &key, &headers)?;
        Ok(S3Upload {
            client,
            key,
            temp,
            prefix,
            planned,
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

    /// Sends the last part and completes this upload (`headers`: `If-None-Match: *` for a
    /// final key); returns the version id, if the bucket versions.
    fn complete(
        &mut self,
        op: &str,
        headers: &[(&str, String)],
    ) -> Result<Option<String>, TargetError> {
        if !self.buf.is_empty() || self.etags.is_empty() {
            self.send_part()?;
        }
        let c = &self.client;
        let version = finish(c, &self.key, &self.upload_id, &self.etags, op, headers)?;
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
            finish(c, final_key, &id, &etags, PUBLISHING, &no_overwrite()).map(drop)
        })();
        if let Err(e) = result {
            abort(c, final_key, &id);
            return Err(e);
        }
        Ok(())
    }
}

const PUBLISHING: &str = "publishing the archive";

/// The header that keeps a completion from replacing an existing object.
fn no_overwrite() -> Vec<(&'static str, String)> {
    vec![("if-none-match", "*".to_string())]
}

/// CompleteMultipartUpload of `key`; the version id, if the bucket versions. An object
/// already there (`If-None-Match: *` failed) is [`TargetError::Exists`].
fn finish(
    c: &Client,
    key: &str,
    id: &str,
    etags: &[String],
    op: &str,
    headers: &[(&str, String)],
) -> Result<Option<String>, TargetError> {
    let a = CompleteMultipartUpload::new(
        &c.bucket,
        c.creds(),
        key,
        id,
        etags.iter().map(String::as_str),
    );
    let body = a.clone().body();
    let resp = c.call(op, a, headers, Body::Bytes(body.as_bytes()))?;
    let version = header(&resp, "x-amz-version-id");
    let text = c.text(op, resp)?;
    // S3 may answer 200 with an error document once the body has started.
    match xml::first(&text, "Code") {
        Some(code) if code == "PreconditionFailed" => Err(TargetError::Exists {
            target: c.url.clone(),
            name: key.rsplit('/').next().unwrap_or(key).into(),
        }),
        Some(code) => Err(TargetError::Io {
            target: c.url.clone(),
            op: op.into(),
            detail: code,
            retry: Retry::Temporary,
        }),
        None => Ok(version),
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
        if let Some(planned) = &self.planned {
            if planned != name {
                return Err(TargetError::Invalid {
                    target: self.client.url.clone(),
                    why: format!(
                        "the upload was begun as {planned}, not {name}; nothing was published"
                    ),
                });
            }
            return self.complete(PUBLISHING, &no_overwrite()).map(drop);
        }
        let final_key = match self.key.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        debug_assert!(final_key.starts_with(&self.prefix));
        let version = self.complete("completing the temporary upload", &[])?;
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

/// Aborts every upload in progress under `prefix` whose key `pick` chooses.
pub(super) fn abort_matching(
    c: &Client,
    prefix: &str,
    pick: impl Fn(&str) -> bool,
) -> Result<(), TargetError> {
    for (k, id) in uploads(c, prefix)? {
        if pick(&k) {
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
