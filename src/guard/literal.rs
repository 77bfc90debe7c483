//! Address literals in every spelling a resolver accepts: IPv6 (with or without brackets and
//! zone), and the classic `inet_aton` IPv4 forms (`127.1`, `0x7f.1`, `0177.0.0.1`,
//! `2130706433`). Pure functions, no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One `inet_aton` component: decimal, `0`-prefixed octal, or `0x`-prefixed hex.
fn component(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 for glibc.
        return (radix == 16).then_some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses an IPv4 address the way `inet_aton` does: 1 to 4 parts, the last part filling the
/// remaining bytes.
pub(crate) fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = s.split('.').map(component).collect::<Option<_>>()?;
    let v: u64 = match parts.as_slice() {
        [a] if *a <= 0xffff_ffff => *a,
        [a, b] if *a <= 0xff && *b <= 0xff_ffff => a << 24 | b,
        [a, b, c] if *a <= 0xff && *b <= 0xff && *c <= 0xffff => a << 24 | b << 16 | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|x| **x <= 0xff) => a << 24 | b << 16 | c << 8 | d,
        _ => return None,
    };
    Some(Ipv4Addr::from(v as u32))
}

/// Parses any address literal: `[v6]`, `v6%zone`, `v6`, or an `inet_aton` IPv4 form.
/// A trailing dot is ignored (`127.0.0.1.`).
pub fn parse(host: &str) -> Option<IpAddr> {
    let h = host.trim();
    let h = h.strip_suffix('.').unwrap_or(h);
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    let no_zone = h.split('%').next().unwrap_or(h);
    if let Ok(v6) = no_zone.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    inet_aton(h).map(IpAddr::V4)
}

/// The IPv4 address that an IPv6 address stands for, if any: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, except `::` and `::1`), NAT64 (`64:ff9b::a.b.c.d`), and
/// 6to4 (`2002:AABB:CCDD::`).
pub fn embedded_v4(v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(low);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aton_forms() {
        let lo = Some(Ipv4Addr::new(127, 0, 0, 1));
        for s in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "0177.1",
            "0x7F.0.0.0x1",
            "017700000001",
        ] {
            assert_eq!(inet_aton(s), lo, "{s}");
        }
        for s in [
            "",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..1",
            "08.1.1.1",
            "a.b.c.d",
            "4294967296",
        ] {
            assert_eq!(inet_aton(s), None, "{s}");
        }
    }

    #[test]
    fn v6_forms() {
        assert_eq!(parse("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(parse("fe80::1%eth0"), Some("fe80::1".parse().unwrap()));
        assert_eq!(parse("127.0.0.1."), Some("127.0.0.1".parse().unwrap()));
        let v4 = |s: &str| match parse(s) {
            Some(IpAddr::V6(v6)) => embedded_v4(&v6),
            _ => None,
        };
        let lo = Some(Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(v4("::ffff:127.0.0.1"), lo);
        assert_eq!(v4("::ffff:7f00:1"), lo);
        assert_eq!(v4("::127.0.0.1"), lo);
        assert_eq!(v4("64:ff9b::7f00:1"), lo);
        assert_eq!(v4("2002:7f00:1::"), lo);
        assert_eq!(v4("::1"), None);
        assert_eq!(v4("2001:db8::1"), None);
    }
}
