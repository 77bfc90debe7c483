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

/// Characters that print back unchanged in every part of a URL.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
}

fn plain_url(u: &TargetUrl) -> bool {
    match u {
        TargetUrl::File { path } => plain(path),
        TargetUrl::Ssh {
            user, host, path, ..
        } => plain(user) && plain(host) && plain(path),
        TargetUrl::Smb {
            domain,
            user,
            host,
            share,
            path,
            ..
        } => {
            domain.as_deref().is_none_or(plain)
                && plain(user)
                && plain(host)
                && plain(share)
                && plain(path)
        }
        TargetUrl::Nfs { host, export, .. } => plain(host) && plain(export),
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
