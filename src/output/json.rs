//! A JSON object written straight into a byte buffer. Member names that are the line's
//! own field names are written as they are, each with its quotes, colon and comma as one
//! constant (`member!`: assembled byte by byte, they were a twentieth of the reader's
//! instructions per exchange); everything from the traffic goes through
//! sonic-rs's escaper and number formatting, so values read exactly as serde would write
//! them. Serialising a line through serde escaped each of its ~25 fixed names like a
//! value: that was a seventh of the reader's time in the closed-loop benchmark.

use std::{io::Write as _, net::IpAddr};

use sonic_rs::format::{CompactFormatter, Formatter};

/// A member's start as `Object::key` takes it: `,"name":`, for a name that needs no
/// escaping (letters, digits, underscores), put together at compile time.
macro_rules! member {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}
pub(crate) use member;

/// An object being written; `end` closes it.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    pub fn end(self) {
        self.out.push(b'}');
    }

    /// Starts a member named by one of the line's field names, given as `member!` writes
    /// it (`,"name":`), and returns the buffer for its value: one copy of a constant,
    /// without the comma when the member is the object's first.
    #[inline(always)]
    pub fn key(&mut self, member: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            member.len() > 4
                && member.starts_with(",\"")
                && member.ends_with("\":")
                && member[2..member.len() - 2]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{member} is not a member! of a name that needs no escaping"
        );
        let text = if self.empty { &member[1..] } else { member };
        self.empty = false;
        self.out.extend_from_slice(text.as_bytes());
        self.out
    }

    /// Starts a member named by text from the traffic (a header name): escaped.
    pub fn escaped_key(&mut self, name: &str) -> &mut Vec<u8> {
        self.comma();
        string(self.out, name);
        self.out.push(b':');
        self.out
    }

    /// Where the next member will start: `since` gives what was written from there.
    pub fn position(&self) -> usize {
        self.out.len()
    }

    pub fn since(&self, position: usize) -> &[u8] {
        &self.out[position..]
    }

    /// Appends members written earlier by this object's methods after at least one
    /// member (so they start with the comma that separates them).
    pub fn members(&mut self, written: &[u8]) {
        debug_assert!(!self.empty && written.starts_with(b","));
        self.out.extend_from_slice(written);
    }

    #[inline(always)]
    fn comma(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    #[inline(always)]
    pub fn str(&mut self, member: &'static str, value: &str) {
        string(self.key(member), value);
    }

    /// A string, or `null` when there is none.
    #[inline(always)]
    pub fn str_or_null(&mut self, member: &'static str, value: Option<&str>) {
        let out = self.key(member);
        match value {
            Some(v) => string(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }

    /// A member left out when there is no value.
    #[inline(always)]
    pub fn opt_str(&mut self, member: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(member, v);
        }
    }

    #[inline(always)]
    pub fn u64(&mut self, member: &'static str, value: u64) {
        CompactFormatter
            .write_u64(self.key(member), value)
            .expect("writing into memory cannot fail");
    }

    #[inline(always)]
    pub fn bool(&mut self, member: &'static str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(member).extend_from_slice(text);
    }

    /// A number as serde writes an f64: shortest round-trip form, `null` if not finite.
    pub fn f64(&mut self, member: &'static str, value: f64) {
        let out = self.key(member);
        let written = if value.is_finite() {
            CompactFormatter.write_f64(out, value)
        } else {
            CompactFormatter.write_null(out)
        };
        written.expect("writing into memory cannot fail");
    }

    /// A member whose value is text known to need no escaping (a timestamp, or one of
    /// the line's own constant values), written between quotes as it is.
    #[inline(always)]
    pub fn plain_str(&mut self, member: &'static str, value: impl AsRef<[u8]>) {
        let out = self.key(member);
        out.push(b'"');
        out.extend_from_slice(value.as_ref());
        out.push(b'"');
    }

    /// An address as its `Display` writes it (IPv4 digit by digit into one stack buffer:
    /// every line has two, and the formatting machinery showed in the reader's profile).
    pub fn ip(&mut self, member: &'static str, value: IpAddr) {
        let out = self.key(member);
        match value {
            IpAddr::V4(v4) => {
                // `"255.255.255.255"`: 17 bytes at most.
                let mut buf = [0u8; 17];
                let mut n = 0;
                buf[n] = b'"';
                n += 1;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        buf[n] = b'.';
                        n += 1;
                    }
                    if octet >= 100 {
                        buf[n] = b'0' + octet / 100;
                        n += 1;
                    }
                    if octet >= 10 {
                        buf[n] = b'0' + octet / 10 % 10;
                        n += 1;
                    }
                    buf[n] = b'0' + octet % 10;
                    n += 1;
                }
                buf[n] = b'"';
                out.extend_from_slice(&buf[..=n]);
            }
            IpAddr::V6(v6) => write!(out, "\"{v6}\"").expect("writing into memory cannot fail"),
        }
    }
}

/// Appends `value` as a quoted JSON string, escaped by sonic-rs (SIMD).
pub fn string(out: &mut Vec<u8>, value: &str) {
    CompactFormatter
        .write_string_fast(out, value, true)
        .expect("writing into memory cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Object<'_>)) -> String {
        let mut out = Vec::new();
        let mut obj = Object::begin(&mut out);
        f(&mut obj);
        obj.end();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn members_are_separated_and_values_escaped() {
        let text = written(|o| {
            o.str(member!("a"), "x\"\n\u{1}");
            o.str_or_null(member!("b"), None);
            o.opt_str(member!("skipped"), None);
            o.u64(member!("c"), u64::MAX);
            o.bool(member!("d"), false);
            o.f64(member!("e"), 0.1);
            o.f64(member!("f"), f64::NAN);
            o.plain_str(member!("g"), "2026-01-01T00:00:00Z");
            o.ip(member!("h"), "10.0.255.1".parse().unwrap());
            o.ip(member!("i"), "::ffff:1.2.3.4".parse().unwrap());
            o.ip(member!("j"), "0.100.9.99".parse().unwrap());
            string(o.escaped_key("K\"ey"), "v");
        });
        assert_eq!(
            text,
            r#"{"a":"x\"\n\u0001","b":null,"c":18446744073709551615,"d":false,"e":0.1,"f":null,"g":"2026-01-01T00:00:00Z","h":"10.0.255.1","i":"::ffff:1.2.3.4","j":"0.100.9.99","K\"ey":"v"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["a"], "x\"\n\u{1}");
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        for octet in 0..=255u8 {
            for v4 in [
                std::net::Ipv4Addr::new(octet, 0, 9, 10),
                std::net::Ipv4Addr::new(99, octet, 100, 255),
                std::net::Ipv4Addr::new(1, 22, 255, octet),
            ] {
                let text = written(|o| o.ip(member!("a"), v4.into()));
                assert_eq!(text, format!(r#"{{"a":"{v4}"}}"#));
            }
        }
    }

    #[test]
    fn an_empty_object_is_braces() {
        assert_eq!(written(|_| {}), "{}");
    }
}
