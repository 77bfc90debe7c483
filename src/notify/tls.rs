//! The TLS client settings of the syslog channel (RFC 5425): rustls with the aws-lc-rs
//! provider, the server certificate verified against `ca_file`, or else the system's roots.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The CA certificates of a PEM file (at least one).
pub(crate) fn read_ca_file(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |why: String| format!("cannot use {key} = {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{e}; it must hold PEM certificates")))?;
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

/// A client config that trusts the certificates of `ca_file`, or the system's roots.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    key: &str,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(p) => {
            for c in read_ca_file(p, key)? {
                roots
                    .add(c)
                    .map_err(|e| format!("cannot use {key} = {}: {e}", p.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(format!("no system CA certificates were found; set {key}"));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
