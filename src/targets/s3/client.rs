//! The HTTP side of the S3 target: a blocking ureq agent whose resolver is the self-target
//! guard, requests signed by rusty-s3 (SigV4 presigned URLs; every header we send is
//! signed), and the mapping of S3 answers to [`TargetError`]s.
//!
//! Guard, twice as for every transport: ureq's resolver is [`net::resolve`] (the
//! endpoint's name and every address it resolves to are checked before any connection),
//! and ureq's TCP connector is [`GuardedTcp`], which connects only to those addresses and
//! checks the connected socket's peer again before TLS or HTTP. Proxies and redirects are
//! off, so no request leaves for another host.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use ureq::http::{self, Uri};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, NextTimeout, RustlsConnector};

use super::connect::GuardedTcp;
use super::xml;
use crate::guard::SelfIdentity;
use crate::targets::net;
use crate::targets::url::{S3Options, S3Url};
use crate::targets::{Retry, TargetError};

/// How long a signed request stays valid.
const SIGN_TTL: Duration = Duration::from_secs(3600);
/// Tries of a request the server answered with 500 or 503 (waits 0.5, 1, 2, 4, 8 s).
const ATTEMPTS: u32 = 6;

/// The resolver that is the guard.
#[derive(Debug)]
struct GuardResolver {
    me: SelfIdentity,
    target: String,
}

impl Resolver for GuardResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _: &ureq::config::Config,
        _: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let addrs: Vec<SocketAddr> = net::resolve(&self.me, &self.target, host, port)
            .map_err(|e| ureq::Error::Io(e.into_io()))?;
        let mut out = self.empty();
        for a in addrs.into_iter().take(16) {
            out.push(a);
        }
        Ok(out)
    }
}

/// A request body.
pub(super) enum Body<'a> {
    /// None.
    Empty,
    /// These bytes.
    Bytes(&'a [u8]),
}

/// A signed, guarded S3 client for one bucket.
pub(super) struct Client {
    agent: ureq::Agent,
    pub(super) bucket: Bucket,
    creds: Credentials,
    /// The target URL, for messages.
    pub(super) url: String,
    /// The access key id, for messages.
    key_id: String,
    /// What certificates are checked against ("ca_file /etc/…", "the system's roots").
    trust: String,
    timeout: Duration,
}

impl Client {
    /// Builds the client: endpoint checks (https unless `allow_http`), TLS roots (the
    /// system's, or `ca_file`), the guard as resolver.
    pub(super) fn new(
        url: &S3Url,
        opts: &S3Options,
        secret: &str,
        me: &SelfIdentity,
        timeout: Duration,
    ) -> Result<Client, TargetError> {
        let target = url.to_string();
        let invalid = |why: String| TargetError::Invalid {
            target: target.clone(),
            why,
        };
        let endpoint = opts.endpoint.as_deref().ok_or_else(|| {
            invalid(
                "no endpoint: set endpoint = \"https://s3.example.net\" in [targets.NAME]".into(),
            )
        })?;
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| invalid(format!("endpoint {endpoint:?}: {e}")))?;
        match endpoint.scheme() {
            "https" => {}
            "http" if opts.allow_http => {}
            "http" => return Err(invalid("the endpoint is plain http, which exposes the requests to anyone on the path: use https (set allow_http = true only for a test bed)".into())),
            s => return Err(invalid(format!("endpoint scheme {s}: use https://"))),
        }
        let key_id = opts
            .access_key_id
            .clone()
            .ok_or_else(|| invalid("no access_key_id in [targets.NAME]".into()))?;
        // Virtual-host style puts the bucket in the host name (bucket.endpoint-host), which
        // needs a DNS name that the server (and its certificate) answers for.
        let style = match (opts.path_style, endpoint.host()) {
            (true, _) => UrlStyle::Path,
            (false, Some(url::Host::Domain(_))) => UrlStyle::VirtualHost,
            (false, _) => return Err(invalid(format!(
                "the endpoint {endpoint} is an IP address, and virtual-host addressing (the default) needs a DNS name under which the server answers for {}.HOST; set path_style = true",
                url.bucket
            ))),
        };
        let region = opts.region.clone().unwrap_or_else(|| "us-east-1".into());
        let bucket = Bucket::new(endpoint, style, url.bucket.clone(), region).map_err(|e| {
            invalid(format!(
                "{e} (virtual-host addressing needs a DNS name as endpoint; set path_style = true otherwise)"
            ))
        })?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .tls_config(tls_config(&target, opts)?)
            .build();
        let resolver = GuardResolver {
            me: me.clone(),
            target: target.clone(),
        };
        let connector = ()
            .chain(GuardedTcp {
                me: me.clone(),
                target: target.clone(),
                timeout,
            })
            .chain(RustlsConnector::default());
        Ok(Client {
            agent: ureq::Agent::with_parts(config, connector, resolver),
            bucket,
            creds: Credentials::new(key_id.clone(), secret.to_string()),
            url: target,
            key_id,
            trust: match &opts.ca_file {
                Some(p) => format!("ca_file {}", p.display()),
                None => "the system's CA roots (no ca_file set)".into(),
            },
            timeout,
        })
    }

    /// The credentials, for building actions.
    pub(super) fn creds(&self) -> Option<&Credentials> {
        Some(&self.creds)
    }

    /// Signs `action` with `headers` (sent as signed), sends it, and returns the response
    /// when its status is 2xx; any other status becomes the matching [`TargetError`].
    pub(super) fn call<'a, A: S3Action<'a>>(
        &self,
        op: &str,
        mut action: A,
        headers: &[(&'a str, String)],
        body: Body<'_>,
    ) -> Result<http::Response<ureq::Body>, TargetError> {
        for (k, v) in headers {
            action.headers_mut().insert(*k, v.clone());
        }
        let signed = action.sign(SIGN_TTL);
        let method = match A::METHOD {
            rusty_s3::Method::Head => http::Method::HEAD,
            rusty_s3::Method::Get => http::Method::GET,
            rusty_s3::Method::Post => http::Method::POST,
            rusty_s3::Method::Put => http::Method::PUT,
            rusty_s3::Method::Delete => http::Method::DELETE,
        };
        let mut attempt = 1;
        loop {
            let mut req = http::Request::builder()
                .method(method.clone())
                .uri(signed.as_str());
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let resp = match body {
                Body::Empty => self.agent.run(req.body(()).map_err(|e| self.io(op, e))?),
                Body::Bytes(b) => self.agent.run(req.body(b).map_err(|e| self.io(op, e))?),
            }
            .map_err(|e| self.transport_error(op, e))?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(resp);
            }
            // The server said it failed (500 InternalError, 503 SlowDown): the request did
            // not take effect, so sending it again is safe; S3 clients are expected to.
            if matches!(status, 500 | 503) && attempt < ATTEMPTS {
                drop(resp);
                std::thread::sleep(Duration::from_millis(250 << attempt));
                attempt += 1;
                continue;
            }
            return Err(self.status_error(op, resp));
        }
    }

    /// Reads a small response body (XML) to a string.
    pub(super) fn text(
        &self,
        op: &str,
        resp: http::Response<ureq::Body>,
    ) -> Result<String, TargetError> {
        let mut s = String::new();
        resp.into_body()
            .into_reader()
            .take(16 << 20)
            .read_to_string(&mut s)
            .map_err(|e| TargetError::from_io(&self.url, op, &e))?;
        Ok(s)
    }

    fn io(&self, op: &str, e: impl std::fmt::Display) -> TargetError {
        TargetError::Io {
            target: self.url.clone(),
            op: op.into(),
            detail: e.to_string(),
            retry: Retry::Permanent,
        }
    }

    /// A failure below HTTP: the guard's refusal, a timeout, no connection, TLS.
    pub(super) fn transport_error(&self, op: &str, e: ureq::Error) -> TargetError {
        let target = self.url.clone();
        match e {
            ureq::Error::Io(io) => {
                if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    return self.tls_error(op, tls, tls_retry(tls));
                }
                if TargetError::find(&io).is_some() {
                    if let Some(inner) = io.into_inner() {
                        if let Ok(t) = inner.downcast::<TargetError>() {
                            return *t;
                        }
                    }
                    return self.io(op, "guard refusal");
                }
                TargetError::from_io(&target, op, &io)
            }
            ureq::Error::Timeout(_) => TargetError::Timeout {
                target,
                op: op.into(),
                secs: self.timeout.as_secs(),
            },
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TargetError::Unreachable {
                target,
                detail: format!("{op}: {e}"),
            },
            ureq::Error::Rustls(tls) => self.tls_error(op, &tls, tls_retry(&tls)),
            ureq::Error::Tls(_) => self.tls_error(op, &e, Retry::Permanent),
            e => TargetError::Io {
                target,
                op: op.into(),
                detail: e.to_string(),
                retry: Retry::Temporary,
            },
        }
    }

    /// A TLS failure (an untrusted or wrong certificate, a failed handshake), naming the
    /// roots the certificate was checked against.
    fn tls_error(&self, op: &str, e: &dyn std::fmt::Display, retry: Retry) -> TargetError {
        TargetError::Io {
            target: self.url.clone(),
            op: op.into(),
            detail: format!(
                "TLS: {e}; the endpoint's certificate was checked against {}: set ca_file to the CA that signed the endpoint's certificate (PEM), and check that the certificate names the endpoint's host",
                self.trust
            ),
            retry,
        }
    }

    /// An S3 error answer: its status and `<Code>` decide the kind.
    fn status_error(&self, op: &str, resp: http::Response<ureq::Body>) -> TargetError {
        let status = resp.status().as_u16();
        let body = self.text(op, resp).unwrap_or_default();
        let code = xml::first(&body, "Code").unwrap_or_default();
        let message = xml::first(&body, "Message").unwrap_or_default();
        let detail = format!("HTTP {status} {code} {message}").trim().to_string();
        let target = self.url.clone();
        match (status, code.as_str()) {
            (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken") => {
                TargetError::Auth {
                    target,
                    user: self.key_id.clone(),
                    detail,
                    hint: "check access_key_id and the secret key in secret_key_file (or secret_key_env)".into(),
                }
            }
            (_, "NoSuchBucket") => TargetError::NoDirectory {
                target,
                dir: format!("bucket {}", self.bucket.name()),
                create: "create the bucket with Object Lock enabled (docs/targets.md)".into(),
            },
            (404, _) => TargetError::NotFound {
                target,
                what: format!("{op} ({detail})"),
            },
            (412, _) => TargetError::Exists {
                target,
                name: op.into(),
            },
            (403, _) => TargetError::Permission {
                target,
                op: op.into(),
                detail: format!("{detail}; the key's policy must allow this action, and a locked archive cannot be deleted or overwritten before its retention ends"),
            },
            (500..=599, _) => TargetError::Io {
                target,
                op: op.into(),
                detail,
                retry: Retry::Temporary,
            },
            _ => TargetError::Io {
                target,
                op: op.into(),
                detail,
                retry: Retry::Permanent,
            },
        }
    }
}

/// A certificate or protocol mismatch fails the same way every time (permanent); anything
/// else rustls reports (a corrupted record, a connection cut mid-handshake) may pass on a
/// retry.
fn tls_retry(e: &rustls::Error) -> Retry {
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::AlertReceived(_) => Retry::Permanent,
        _ => Retry::Temporary,
    }
}

/// TLS: rustls with aws-lc-rs, certificates verified against `ca_file` or the system's
/// roots.
fn tls_config(target: &str, opts: &S3Options) -> Result<ureq::tls::TlsConfig, TargetError> {
    let creds_err = |detail: String| TargetError::Invalid {
        target: target.to_string(),
        why: detail,
    };
    let mut roots: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| creds_err(format!("cannot read ca_file {}: {e}", ca.display())))?;
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                roots.push(c);
            }
        }
        if roots.is_empty() {
            return Err(creds_err(format!(
                "ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
    } else {
        for c in rustls_native_certs::load_native_certs().certs {
            roots.push(ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
        }
    }
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str, path_style: bool) -> Result<Client, TargetError> {
        let url = S3Url {
            bucket: "offbox-backups".into(),
            prefix: "fleet".into(),
        };
        let opts = S3Options {
            endpoint: Some(endpoint.into()),
            path_style,
            access_key_id: Some("AK".into()),
            ..S3Options::default()
        };
        Client::new(
            &url,
            &opts,
            "not-a-secret",
            &SelfIdentity::load(),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn addressing_styles() {
        // Virtual-host (the default): the bucket is in the host name.
        let c = client("https://s3.example.net", false).unwrap();
        assert_eq!(
            c.bucket.base_url().as_str(),
            "https://offbox-backups.s3.example.net/"
        );
        // Path style: the bucket is the first path component.
        let c = client("https://10.0.0.5:8334", true).unwrap();
        assert_eq!(
            c.bucket.base_url().as_str(),
            "https://10.0.0.5:8334/offbox-backups/"
        );
        // Virtual-host with an IP address cannot work: said at once.
        let e = client("https://10.0.0.5:8334", false).err().unwrap();
        assert!(matches!(e, TargetError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("set path_style = true"), "{e}");
        // Plain http needs allow_http.
        let e = client("http://s3.example.net", true).err().unwrap();
        assert!(e.to_string().contains("use https"), "{e}");
    }
}
