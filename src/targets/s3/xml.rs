//! Reading the few S3 XML answers rusty-s3 has no parser for (errors, multipart upload and
//! version listings, the Object Lock configuration). S3 answers are flat, machine-written
//! XML: an element is found by its tag, its text unescaped. Nothing here executes or
//! follows anything in the document.

/// The inner text of each `<tag>…</tag>` in `doc`, in order (raw, not unescaped).
pub(super) fn blocks<'a>(doc: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` in `doc`.
pub(super) fn first(doc: &str, tag: &str) -> Option<String> {
    blocks(doc, tag).first().map(|s| unescape(s))
}

/// Undoes XML's five entities and numeric character references.
pub(super) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let ent = &after[1..end];
        let c = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blocks_and_entities() {
        let doc = "<R><Upload><Key>a&amp;b</Key><UploadId>1</UploadId></Upload><Upload><Key>c&#x2F;d</Key></Upload></R>";
        let ups = blocks(doc, "Upload");
        assert_eq!(ups.len(), 2);
        assert_eq!(first(ups[0], "Key").unwrap(), "a&b");
        assert_eq!(first(ups[1], "Key").unwrap(), "c/d");
        assert_eq!(first(doc, "Nope"), None);
        assert_eq!(unescape("x &bogus; y &"), "x &bogus; y &");
    }
}
