//! Redaction of credentials before a line is written: captured traffic holds passwords,
//! tokens and session cookies, and the output file outlives the traffic.
//!
//! Values of the named header fields are replaced in `headers`, `trailers` and
//! `raw_payload`. In the raw bytes every line that starts with a redacted name and a colon
//! has its value replaced, head or not: a body that carries header-like lines (multipart,
//! an embedded message) is treated the same way, erring on the side of hiding.

use std::borrow::Cow;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The fields redacted unless `--no-redact` is given.
pub const DEFAULT_NAMES: [&str; 4] = [
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "Set-Cookie",
];

/// Whether `name` is a header field name (an RFC 9110 token): the only names a header
/// line can start with, and none holds the colon that ends one.
pub fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Lower-case field names.
    names: Vec<String>,
}

impl Redactor {
    /// The default fields plus `extra`; what is not a field name (`is_field_name`) could
    /// never match a header, and is left out.
    pub fn new<S: AsRef<str>>(extra: &[S]) -> Self {
        let mut names: Vec<String> = DEFAULT_NAMES
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        for n in extra {
            let n = n.as_ref().trim().to_ascii_lowercase();
            if is_field_name(&n) && !names.contains(&n) {
                names.push(n);
            }
        }
        Self { names }
    }

    /// Redacts nothing (`--no-redact`).
    pub const fn none() -> Self {
        Self { names: Vec::new() }
    }

    pub fn is_active(&self) -> bool {
        !self.names.is_empty()
    }

    pub fn hides(&self, field: &str) -> bool {
        self.hides_bytes(field.as_bytes())
    }

    fn hides_bytes(&self, field: &[u8]) -> bool {
        self.names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(field))
    }

    /// The message's wire bytes with the values of redacted fields replaced. A field whose
    /// value was cut by the `raw_payload` limit is still replaced, and lines that continue
    /// it (obsolete line folding) go with it. The first `checked` bytes end a line and
    /// are known to hold none to hide (a head whose parsed fields include no redacted
    /// name, `Message::head_len`; else 0): they are not searched a second time, the lines
    /// after them (body, trailers) still are.
    pub fn raw<'a>(&self, raw: &'a [u8], checked: usize) -> Cow<'a, [u8]> {
        if !self.is_active() {
            return Cow::Borrowed(raw);
        }
        let mut out: Option<Vec<u8>> = None;
        let mut hiding = false;
        let mut start = checked.min(raw.len());
        while start < raw.len() {
            let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i + 1);
            let line = &raw[start..end];
            let folded = hiding && matches!(line.first(), Some(b' ' | b'\t'));
            // The line ending holds no colon, so the value starts where it would without it.
            let value_at = if folded {
                Some(0)
            } else {
                self.value_start(line)
            };
            hiding = value_at.is_some();
            match (value_at, &mut out) {
                (Some(at), out) => {
                    let out = out.get_or_insert_with(|| raw[..start].to_vec());
                    // A continuation line goes entirely: the replaced value stands for it.
                    if !folded {
                        let content_end = line.len()
                            - line
                                .iter()
                                .rev()
                                .take_while(|&&b| b == b'\n' || b == b'\r')
                                .count();
                        out.extend_from_slice(&line[..at]);
                        out.extend_from_slice(REDACTED.as_bytes());
                        out.extend_from_slice(&line[content_end..]);
                    }
                }
                (None, Some(out)) => out.extend_from_slice(line),
                (None, None) => {}
            }
            start = end;
        }
        out.map_or(Cow::Borrowed(raw), Cow::Owned)
    }

    /// Where the value of a redacted field starts in `line` (after the colon and one
    /// space, if any). Each name is tried where its colon would be: most lines fail on
    /// that one byte, with no search for the colon and no UTF-8 check of the name. Names
    /// hold no colon (`new`), so the colon found is the one that ends the name.
    fn value_start(&self, line: &[u8]) -> Option<usize> {
        let colon = self
            .names
            .iter()
            .map(String::len)
            .find(|&len| line.get(len) == Some(&b':') && self.hides_bytes(&line[..len]))?;
        let at = colon + 1;
        Some(if line.get(at) == Some(&b' ') {
            at + 1
        } else {
            at
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(r: &Redactor, raw: &[u8]) -> String {
        String::from_utf8(r.raw(raw, 0).into_owned()).unwrap()
    }

    #[test]
    fn default_fields_are_hidden_in_any_case() {
        let r = Redactor::new::<&str>(&[]);
        for name in [
            "authorization",
            "PROXY-AUTHORIZATION",
            "Cookie",
            "set-cookie",
        ] {
            assert!(r.hides(name), "{name}");
        }
        assert!(!r.hides("Content-Type"));
        assert!(!r.hides("X-Api-Key"));
    }

    #[test]
    fn extra_fields_add_to_the_defaults() {
        let r = Redactor::new(&["X-Api-Key"]);
        assert!(r.hides("x-api-key") && r.hides("Cookie"));
        // No header line starts with these names: they are left out.
        let r = Redactor::new(&["a:b", "x y", ""]);
        assert!(!r.hides("a:b") && !r.hides("x y") && !r.hides(""));
        assert_eq!(r.names.len(), DEFAULT_NAMES.len());
    }

    #[test]
    fn raw_values_are_replaced_and_the_rest_kept() {
        let r = Redactor::new(&["X-Api-Key"]);
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer secret\r\ncookie:a=1\r\nX-API-KEY: k\r\n\r\nbody";
        assert_eq!(
            redacted(&r, raw),
            "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: [REDACTED]\r\ncookie:[REDACTED]\r\nX-API-KEY: [REDACTED]\r\n\r\nbody"
        );
    }

    #[test]
    fn a_value_cut_by_the_raw_limit_is_still_replaced() {
        let r = Redactor::new::<&str>(&[]);
        assert_eq!(
            redacted(&r, b"GET / HTTP/1.1\r\nCookie: sess"),
            "GET / HTTP/1.1\r\nCookie: [REDACTED]"
        );
    }

    #[test]
    fn folded_continuation_lines_are_hidden_too() {
        let r = Redactor::new::<&str>(&[]);
        assert_eq!(
            redacted(
                &r,
                b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1;\r\n\tb=2\r\nX: y\r\n\r\n"
            ),
            "HTTP/1.1 200 OK\r\nSet-Cookie: [REDACTED]\r\nX: y\r\n\r\n"
        );
    }

    #[test]
    fn only_the_exact_name_before_the_first_colon_is_hidden() {
        let r = Redactor::new(&["X-Api-Key", "a:b"]);
        // The rule, spelt out: the name is what precedes the line's first colon.
        let by_first_colon = |line: &[u8]| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            r.hides(name)
                .then(|| colon + 1 + usize::from(line.get(colon + 1) == Some(&b' ')))
        };
        let lines: [&[u8]; 16] = [
            b"Cookie: a",
            b"cookie:a",
            b"COOKIE:",
            b"Cookies: a",
            b"X-Cookie: a",
            b"Cookie : a",
            b" Cookie: a",
            b"Cookie",
            b"Set-Cookie: s: t",
            b"Authorization:Basic x",
            b"x-api-key:  k",
            b"a:b: c",
            b"a: b",
            b"Host: cookie: x",
            b"\xffCookie: a",
            b"",
        ];
        for line in lines {
            assert_eq!(
                r.value_start(line),
                by_first_colon(line),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn nothing_to_hide_borrows() {
        let r = Redactor::new::<&str>(&[]);
        assert!(matches!(
            r.raw(b"GET / HTTP/1.1\r\n\r\n", 0),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            Redactor::none().raw(b"Cookie: a\r\n", 0),
            Cow::Borrowed(_)
        ));
    }
    #[test]
    fn lines_after_a_checked_head_are_still_searched() {
        let r = Redactor::new::<&str>(&[]);
        let raw = b"GET / HTTP/1.1\r\nCookie: a\r\n\r\nCookie: b\r\n";
        // The first 28 bytes are taken as checked: only the line after them is hidden.
        assert_eq!(
            String::from_utf8(r.raw(raw, 28).into_owned()).unwrap(),
            "GET / HTTP/1.1\r\nCookie: a\r\n\r\nCookie: [REDACTED]\r\n"
        );
        assert!(matches!(r.raw(raw, raw.len() + 1), Cow::Borrowed(_)));
    }
}
