//! Fuzz target `target_url`: target URLs (`targets::url::TargetUrl::parse`), the address
//! literals the self-target guard reads from their host (`guard::literal::parse`), and
//! archive file names on a target (`targets::name::ArchiveName::parse`).
//!
//! Beyond "no panic": an accepted URL whose parts hold only plain characters prints as a
//! URL that parses back to the same target, and a parsed archive name prints as a name
//! that parses back to the same value.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use offbox::guard::literal;
use offbox::targets::{ArchiveName, TargetUrl};

/// A name part (user, host, domain, share) that prints back unchanged.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A path that prints back unchanged.
fn plain_path(s: &str) -> bool {
    s.split('/').all(plain)
}

fn plain_url(u: &TargetUrl) -> bool {
    match u {
        TargetUrl::Path(u) => plain_path(&u.path),
        TargetUrl::Ssh(u) => plain(&u.user) && plain(&u.host) && plain_path(&u.path),
        TargetUrl::Smb(u) => {
            u.domain.as_deref().is_none_or(plain)
                && plain(&u.user)
                && plain(&u.host)
                && plain(&u.share)
                && plain_path(&u.path)
        }
        TargetUrl::Nfs(u) => plain(&u.host) && plain_path(&u.export),
        TargetUrl::S3(u) => plain(&u.bucket) && plain_path(&u.prefix),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TargetUrl::looks_like_url(s);
    if let Ok(url) = TargetUrl::parse(s) {
        let printed = url.to_string();
        if plain_url(&url) {
            assert_eq!(
                TargetUrl::parse(&printed).ok(),
                Some(url.clone()),
                "{s:?} printed as {printed:?}"
            );
        }
        if let Some(host) = url.host() {
            if let Some(IpAddr::V6(v6)) = literal::parse(host) {
                let _ = literal::embedded_v4(&v6);
            }
        }
    }
    if let Some(IpAddr::V6(v6)) = literal::parse(s) {
        let _ = literal::embedded_v4(&v6);
    }
    if let Some(name) = ArchiveName::parse(s) {
        let printed = name.to_string();
        assert_eq!(
            ArchiveName::parse(&printed),
            Some(name),
            "{s:?} printed as {printed:?}"
        );
    }
});
