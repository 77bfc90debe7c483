//! Exclude patterns of the backup configuration.
//!
//! A pattern that starts with `/` matches that absolute path and everything below it, with
//! `*` and `?` wildcards inside a component. Any other pattern matches a file or directory
//! name anywhere (for example `*.tmp` or `cache`).

use std::path::Path;

/// A compiled list of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<String>,
}

impl Excludes {
    /// Compiles patterns; trailing slashes are ignored.
    pub fn new(patterns: &[String]) -> Self {
        Excludes {
            patterns: patterns
                .iter()
                .map(|p| {
                    let t = p.trim_end_matches('/');
                    if t.is_empty() { "/" } else { t }.to_string()
                })
                .collect(),
        }
    }

    /// True when `path` (absolute) is excluded.
    pub fn matches(&self, path: &Path) -> bool {
        let text = path.to_string_lossy();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        self.patterns.iter().any(|p| {
            if p.starts_with('/') {
                let pc: Vec<&str> = p.split('/').collect();
                let tc: Vec<&str> = text.split('/').collect();
                tc.len() >= pc.len() && pc.iter().zip(&tc).all(|(a, b)| wildcard(a, b))
            } else {
                wildcard(p, &name)
            }
        })
    }
}

/// Matches `text` against `pattern` with `*` (any run) and `?` (any one character).
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_absolute_prefixes() {
        let ex = Excludes::new(&[
            "*.tmp".into(),
            "/var/lib/app/cache/".into(),
            "/srv/*/tmp".into(),
        ]);
        assert!(ex.matches(Path::new("/etc/a.tmp")));
        assert!(!ex.matches(Path::new("/etc/a.tmpx")));
        assert!(ex.matches(Path::new("/var/lib/app/cache")));
        assert!(ex.matches(Path::new("/var/lib/app/cache/x/y")));
        assert!(!ex.matches(Path::new("/var/lib/app/cachex")));
        assert!(ex.matches(Path::new("/srv/one/tmp/f")));
        assert!(!ex.matches(Path::new("/srv/one/two/tmp")));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("x*", "yx"));
    }
}
