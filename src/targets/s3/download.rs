//! Reading an archive: ranged GETs of [`RANGE`] bytes, each streamed as it arrives, so a
//! restore or a verify from the target holds no more than a read buffer, and a long
//! download is a series of bounded requests rather than one connection held for hours.

use std::io::{self, Read};
use std::sync::Arc;

use rusty_s3::actions::GetObject;

use super::client::{Body, Client};
use crate::targets::TargetError;

/// Bytes asked for per GET.
const RANGE: u64 = 64 << 20;

/// A streamed reader of one object.
pub(super) struct S3Reader {
    client: Arc<Client>,
    key: String,
    /// Next byte to ask for.
    offset: u64,
    /// The object's size, once known.
    size: Option<u64>,
    body: Option<ureq::BodyReader<'static>>,
}

impl S3Reader {
    pub(super) fn new(client: Arc<Client>, key: String) -> S3Reader {
        S3Reader {
            client,
            key,
            offset: 0,
            size: None,
            body: None,
        }
    }

    /// Starts reading at byte `offset` (a ranged GET from there).
    pub(super) fn starting_at(mut self, offset: u64) -> S3Reader {
        self.offset = offset;
        self
    }

    /// Starts the GET of the next range; `false` at the end of the object.
    fn next_range(&mut self) -> Result<bool, TargetError> {
        if self.size.is_some_and(|s| self.offset >= s) {
            return Ok(false);
        }
        let c = &self.client;
        let a = GetObject::new(&c.bucket, c.creds(), &self.key);
        let range = format!("bytes={}-{}", self.offset, self.offset + RANGE - 1);
        let name = self.key.rsplit('/').next().unwrap_or(&self.key);
        let resp = match c.call(
            &format!("archive {name}"),
            a,
            &[("range", range)],
            Body::Empty,
        ) {
            Ok(r) => r,
            // An empty object has no range to give.
            Err(TargetError::Io { detail, .. })
                if detail.starts_with("HTTP 416") && self.offset == 0 =>
            {
                self.size = Some(0);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let total = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok());
        self.size = match (total, resp.status().as_u16()) {
            (Some(t), _) => Some(t),
            // A server that ignored the range sent the whole object.
            (None, 200) => resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            _ => None,
        };
        self.body = Some(resp.into_body().into_reader());
        Ok(true)
    }
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(body) = &mut self.body {
                let n = body.read(buf).map_err(|e| {
                    TargetError::from_io(&self.client.url, "reading the archive", &e).into_io()
                })?;
                if n > 0 {
                    self.offset += n as u64;
                    return Ok(n);
                }
                self.body = None;
                if self.size.is_none_or(|s| self.offset >= s) {
                    return Ok(0);
                }
            }
            if !self.next_range().map_err(TargetError::into_io)? {
                return Ok(0);
            }
        }
    }
}
