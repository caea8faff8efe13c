//! JSON lines: one object per HTTP message, with the original Go profiler's field names.
//! Every field is described in docs/fields.md.

mod conn_slots;
mod json;
mod kept_headers;
mod prefix;

use json::member;
use kept_headers::KeptHeaders;
use prefix::{PrefixKey, Prefixes};

use std::{borrow::Cow, convert::Infallible, net::IpAddr};

use base64::Engine as _;
use http_profiler_common::DIRECTION_SEND;
use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::{
    clock::WallClock,
    http::{Field, Fields, StartLine},
    procinfo::ProcessCache,
    redact::{REDACTED, Redactor},
    tracker::Emitted,
};

/// Parts of each connection's last lines, kept to write the next ones faster where
/// they repeat. One per stream of lines: what it keeps depends on the `Format`.
#[derive(Default)]
pub struct Kept {
    prefixes: Prefixes,
    headers: KeptHeaders,
}

/// What goes into each line besides the message.
#[derive(Clone, Debug)]
pub struct Format {
    /// Include `raw_payload`.
    pub with_raw: bool,
    pub redact: Redactor,
}

#[derive(Serialize)]
struct RequestRef<'a> {
    method: &'a str,
    url: &'a str,
}

/// A line borrows everything it shows from the message: rendering allocates nothing
/// but the rare base64 text and joined repeated headers. The derived `Serialize` defines
/// the line (field order, omitted fields); `write_json` writes the same bytes faster.
#[derive(Serialize)]
struct Line<'a> {
    /// Wall-clock nanoseconds since the Unix epoch.
    #[serde(serialize_with = "rfc3339")]
    timestamp: u64,
    pid: u32,
    tid: u32,
    comm: &'a str,
    cmdline: Option<&'a str>,
    direction: &'static str,
    source_ip: IpAddr,
    source_port: u16,
    dest_ip: IpAddr,
    dest_port: u16,
    bytes: u64,
    http_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    headers: HeaderObject<'a>,
    #[serde(skip_serializing_if = "HeaderObject::is_empty")]
    trailers: HeaderObject<'a>,
    body: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
    body_size: u64,
    body_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_omitted: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_payload: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_payload_encoding: Option<&'static str>,
    conn_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestRef<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    request_lost: bool,
    incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete_reason: Option<&'static str>,
    capture_gap: bool,
    /// Which reading of the process's name and command line `comm` and `cmdline` are.
    #[serde(skip)]
    proc_stamp: u64,
    /// The fields of `headers` as the parser shares them among the messages whose
    /// field lines repeat: the kept header objects know them by this `Arc`.
    #[serde(skip)]
    fields: &'a Fields,
}

/// RFC 3339 in UTC with nanoseconds, written straight into the line.
fn rfc3339<S: Serializer>(unix_ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; crate::clock::RFC3339_LEN];
    s.serialize_str(crate::clock::rfc3339_ns_into(*unix_ns, &mut buf))
}

/// Text as is when it is UTF-8, else base64 with the encoding named.
fn text_or_base64(bytes: &[u8]) -> (Cow<'_, str>, Option<&'static str>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), None),
        Err(_) => (
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Some("base64"),
        ),
    }
}

/// Header fields as an object, keys in byte order; repeated fields are joined with ", "
/// under the spelling first seen (RFC 9110 section 5.3). Credential fields the redactor
/// names show `[REDACTED]`, once however often they were sent.
struct HeaderObject<'a>(&'a [Field], &'a Redactor);

impl HeaderObject<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A field name's first 8 bytes, zero-padded, as a big-endian number: comparing two of
/// these orders the names as their bytes do, up to a tie, and ties are rare in a head.
fn name_prefix(name: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = name.len().min(8);
    bytes[..n].copy_from_slice(&name[..n]);
    u64::from_be_bytes(bytes)
}

/// Sets bit 5 of every byte: equal for names that differ only in ASCII case (and for a
/// few that do not, so equal keys are confirmed by comparing the names).
const FOLD_CASE: u64 = 0x2020_2020_2020_2020;

/// One field of a head, as `each_member` orders and deduplicates them.
#[derive(Clone, Copy, Default)]
struct FieldKey {
    order: u64,
    folded: u64,
    index: usize,
}

impl HeaderObject<'_> {
    fn same_name(&self, a: &FieldKey, b: &FieldKey) -> bool {
        let (x, y) = (&self.0[a.index].0, &self.0[b.index].0);
        a.folded == b.folded && x.len() == y.len() && x.eq_ignore_ascii_case(y)
    }

    /// Calls `f` with each member of the object in order: name and (joined, redacted)
    /// value.
    fn each_member<E>(&self, mut f: impl FnMut(&str, &str) -> Result<(), E>) -> Result<(), E> {
        let fields = self.0;
        // One key per field, on the stack for all but huge heads.
        let (mut stack, mut heap) = ([FieldKey::default(); 32], Vec::new());
        let keys: &mut [FieldKey] = if fields.len() <= stack.len() {
            &mut stack[..fields.len()]
        } else {
            heap.resize(fields.len(), FieldKey::default());
            &mut heap
        };
        for (index, (key, (name, _))) in keys.iter_mut().zip(fields).enumerate() {
            let order = name_prefix(name.as_bytes());
            *key = FieldKey {
                order,
                folded: order | FOLD_CASE,
                index,
            };
        }
        // Keep the first field of each name; the ones that repeat it join its value.
        let mut firsts = 0;
        for i in 0..keys.len() {
            let key = keys[i];
            if !keys[..firsts].iter().any(|k| self.same_name(k, &key)) {
                keys[firsts] = key;
                firsts += 1;
            }
        }
        let repeats = firsts < keys.len();
        let first = &mut keys[..firsts];
        // Unstable is enough: names that compare equal are the same name, and only the
        // first of those is in `first`.
        first.sort_unstable_by(|a, b| {
            a.order.cmp(&b.order).then_with(|| {
                fields[a.index]
                    .0
                    .as_bytes()
                    .cmp(fields[b.index].0.as_bytes())
            })
        });
        for &FieldKey { index: i, .. } in first.iter() {
            let (name, value) = (fields[i].0.as_str(), fields[i].1.as_str());
            if self.1.hides(name) {
                f(name, REDACTED)?;
                continue;
            }
            if !repeats {
                f(name, value)?;
                continue;
            }
            let mut same = fields[i + 1..]
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .peekable();
            if same.peek().is_none() {
                f(name, value)?;
            } else {
                let mut joined = value.to_string();
                for (_, v) in same {
                    joined.push_str(", ");
                    joined.push_str(v);
                }
                f(name, &joined)?;
            }
        }
        Ok(())
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let mut obj = json::Object::begin(out);
        let written: Result<(), Infallible> = self.each_member(|name, value| {
            json::string(obj.escaped_key(name), value);
            Ok(())
        });
        let Ok(()) = written;
        obj.end();
    }
}

impl Serialize for HeaderObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.each_member(|name, value| map.serialize_entry(name, value))?;
        map.end()
    }
}

impl Line<'_> {
    /// Writes the line as its derived `Serialize` would, byte for byte (tested against
    /// serde_json), without escaping the field names.
    fn write_json(&self, out: &mut Vec<u8>, kept: &mut Kept) {
        let mut buf = [0u8; crate::clock::RFC3339_LEN];
        let mut o = json::Object::begin(out);
        o.plain_str(
            member!("timestamp"),
            crate::clock::rfc3339_ns_ascii(self.timestamp, &mut buf),
        );
        let send = self.direction == "send";
        let key = PrefixKey {
            pid: self.pid,
            tid: self.tid,
            proc_stamp: self.proc_stamp,
            send,
            source: (self.source_ip, self.source_port),
            dest: (self.dest_ip, self.dest_port),
        };
        if let Some(members) = kept.prefixes.get(self.conn_id, send, |k| *k == key) {
            o.members(members);
        } else {
            let start = o.position();
            o.u64(member!("pid"), self.pid.into());
            o.u64(member!("tid"), self.tid.into());
            o.str(member!("comm"), self.comm);
            o.str_or_null(member!("cmdline"), self.cmdline);
            o.plain_str(member!("direction"), self.direction);
            o.ip(member!("source_ip"), self.source_ip);
            o.u64(member!("source_port"), self.source_port.into());
            o.ip(member!("dest_ip"), self.dest_ip);
            o.u64(member!("dest_port"), self.dest_port.into());
            kept.prefixes.put(self.conn_id, send, key, o.since(start));
        }
        o.u64(member!("bytes"), self.bytes);
        o.plain_str(member!("http_version"), self.http_version);
        o.opt_str(member!("method"), self.method);
        o.opt_str(member!("url"), self.url);
        if let Some(status) = self.status_code {
            o.u64(member!("status_code"), status.into());
        }
        o.opt_str(member!("reason"), self.reason);
        let headers = o.key(member!("headers"));
        kept.headers
            .write(self.conn_id, send, self.fields, headers, |out| {
                self.headers.write_json(out)
            });
        if !self.trailers.is_empty() {
            self.trailers.write_json(o.key(member!("trailers")));
        }
        o.str(member!("body"), &self.body);
        o.opt_str(member!("body_encoding"), self.body_encoding);
        o.u64(member!("body_size"), self.body_size);
        o.bool(member!("body_truncated"), self.body_truncated);
        o.opt_str(member!("body_omitted"), self.body_omitted);
        o.opt_str(member!("raw_payload"), self.raw_payload.as_deref());
        o.opt_str(member!("raw_payload_encoding"), self.raw_payload_encoding);
        o.u64(member!("conn_id"), self.conn_id);
        if let Some(ms) = self.latency_ms {
            o.f64(member!("latency_ms"), ms);
        }
        if let Some(r) = &self.request {
            let mut req = json::Object::begin(o.key(member!("request")));
            req.str(member!("method"), r.method);
            req.str(member!("url"), r.url);
            req.end();
        }
        if self.request_lost {
            o.bool(member!("request_lost"), true);
        }
        o.bool(member!("incomplete"), self.incomplete);
        o.opt_str(member!("incomplete_reason"), self.incomplete_reason);
        o.bool(member!("capture_gap"), self.capture_gap);
        o.end();
    }
}

/// Renders one message as a JSON line (without the newline).
pub fn render(e: &Emitted, procs: &ProcessCache, clock: &WallClock, format: &Format) -> String {
    let mut out = Vec::new();
    render_into(&mut out, e, procs, clock, format, &mut Kept::default());
    String::from_utf8(out).expect("lines are written from UTF-8 text")
}

/// Appends one message as a JSON line (without the newline) to `out`, reusing the parts
/// `kept` holds from the connection's last lines where they are the same.
pub fn render_into(
    out: &mut Vec<u8>,
    e: &Emitted,
    procs: &ProcessCache,
    clock: &WallClock,
    format: &Format,
    kept: &mut Kept,
) {
    with_line(e, procs, clock, format, |line| line.write_json(out, kept));
}

/// Builds the line for one message and hands it to `f` (the line borrows values that
/// live only in this call: the redacted raw payload).
fn with_line<R>(
    e: &Emitted,
    procs: &ProcessCache,
    clock: &WallClock,
    format: &Format,
    f: impl FnOnce(&Line<'_>) -> R,
) -> R {
    let m = &e.paired.message;
    let proc = procs.get(m.first.tgid);
    let send = e.direction == DIRECTION_SEND;
    let ep = &e.endpoints;
    let (src, sport, dst, dport) = if send {
        (ep.local, ep.local_port, ep.remote, ep.remote_port)
    } else {
        (ep.remote, ep.remote_port, ep.local, ep.local_port)
    };
    let (method, url, status, reason) = match &m.start {
        StartLine::Request { method, url } => {
            (Some(method.as_str()), Some(url.as_str()), None, None)
        }
        StartLine::Response { status, reason } => {
            (None, None, Some(*status), Some(reason.as_str()))
        }
    };
    let (body, body_encoding) = text_or_base64(&m.body);
    // With a raw payload, whether the head has a field to hide is asked once, here, for
    // the header object and the raw payload both; without one, the header object asks
    // of each name it writes, which costs less than asking of every field first.
    let head_is_clean =
        format.with_raw && !m.headers.iter().any(|(name, _)| format.redact.hides(name));
    static NO_REDACTION: Redactor = Redactor::none();
    let redacted_raw;
    let (raw_payload, raw_payload_encoding) = if format.with_raw {
        // The head's lines are the parsed fields: when none is a redacted one, only what
        // follows the head is searched for lines to hide.
        let checked = if head_is_clean { m.head_len } else { 0 };
        redacted_raw = format.redact.raw(&m.raw, checked);
        let (raw, enc) = text_or_base64(&redacted_raw);
        (Some(raw), enc)
    } else {
        (None, None)
    };
    let line = Line {
        timestamp: clock.to_wall_ns(m.first.timestamp_ns),
        pid: m.first.tgid,
        tid: m.first.tid,
        comm: proc.map_or("", |p| p.comm.as_str()),
        cmdline: proc.and_then(|p| p.cmdline.as_deref()),
        direction: if send { "send" } else { "recv" },
        source_ip: src,
        source_port: sport,
        dest_ip: dst,
        dest_port: dport,
        bytes: m.wire_bytes,
        http_version: if m.version_minor == 0 { "1.0" } else { "1.1" },
        method,
        url,
        status_code: status,
        reason,
        headers: HeaderObject(
            &m.headers,
            if head_is_clean {
                &NO_REDACTION
            } else {
                &format.redact
            },
        ),
        trailers: HeaderObject(&m.trailers, &format.redact),
        body,
        body_encoding,
        body_size: m.body_len,
        body_truncated: m.body_truncated,
        body_omitted: m.body_omitted,
        raw_payload,
        raw_payload_encoding,
        conn_id: e.conn_id,
        latency_ms: e.paired.latency_ns.map(|ns| ns as f64 / 1e6),
        request: e.paired.request.as_ref().map(|r| RequestRef {
            method: &r.method,
            url: &r.url,
        }),
        request_lost: e.paired.request_lost,
        incomplete: m.incomplete.is_some(),
        incomplete_reason: m.incomplete.map(|i| i.as_str()),
        capture_gap: m.capture_gap,
        proc_stamp: proc.map_or(0, |p| p.stamp),
        fields: &m.headers,
    };
    f(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message received by a server on 127.0.0.1:80 from port 40000, connection 1.
    fn received_on_loopback(paired: crate::pairing::Paired) -> Emitted {
        Emitted {
            paired,
            direction: 0,
            conn_id: 1,
            endpoints: crate::tracker::Endpoints {
                local: "127.0.0.1".parse().unwrap(),
                local_port: 80,
                remote: "127.0.0.1".parse().unwrap(),
                remote_port: 40000,
            },
        }
    }

    #[test]
    fn repeated_headers_are_joined_under_the_first_spelling() {
        let fields = vec![
            ("Accept".into(), "a".into()),
            ("X-Rep".into(), "1".into()),
            ("x-rep".into(), "2".into()),
        ];
        let obj = serde_json::to_string(&HeaderObject(&fields, &Redactor::none())).unwrap();
        assert_eq!(obj, r#"{"Accept":"a","X-Rep":"1, 2"}"#);
        let reordered = vec![("b".into(), "2".into()), ("A".into(), "1".into())];
        assert_eq!(
            serde_json::to_string(&HeaderObject(&reordered, &Redactor::none())).unwrap(),
            r#"{"A":"1","b":"2"}"#
        );
    }

    /// Names that share their first 8 bytes, differ only in case, or are prefixes of one
    /// another: the object is the one a sorted map of first spellings gives.
    #[test]
    fn fields_sort_in_byte_order_and_join_ignoring_case() {
        let names = [
            "Content-Type",
            "Content-Length",
            "content-type",
            "Content-",
            "Content",
            "CONTENT-LENGTH",
            "Connection",
            "a",
            "A",
            "ab",
            "Content-Typf",
            "content-typE",
            "~",
            "x-a^",
            "X-A~",
        ];
        let fields: Vec<Field> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).into(), i.to_string().into()))
            .collect();
        let mut expected = std::collections::BTreeMap::<String, String>::new();
        let mut first_spelling = Vec::<&str>::new();
        for (i, n) in names.iter().enumerate() {
            match first_spelling.iter().find(|f| f.eq_ignore_ascii_case(n)) {
                Some(f) => {
                    let v = expected.get_mut(*f).unwrap();
                    v.push_str(&format!(", {i}"));
                }
                None => {
                    first_spelling.push(n);
                    expected.insert(n.to_string(), i.to_string());
                }
            }
        }
        let obj = serde_json::to_string(&HeaderObject(&fields, &Redactor::none())).unwrap();
        assert_eq!(obj, serde_json::to_string(&expected).unwrap());
        assert!(obj.contains(r#""x-a^":"13""#), "{obj}");
    }

    #[test]
    fn heads_beyond_the_stack_buffer_are_sorted_and_joined_too() {
        let mut fields: Vec<Field> = (0..40)
            .rev()
            .map(|i| (format!("h{i:02}").into(), i.to_string().into()))
            .collect();
        fields.push(("H05".into(), "again".into()));
        let obj = serde_json::to_string(&HeaderObject(&fields, &Redactor::none())).unwrap();
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&obj).unwrap();
        let keys: Vec<&String> = parsed.keys().collect();
        assert_eq!(keys.len(), 40);
        assert!(obj.starts_with(r#"{"h00":"0","h01":"1","#), "{obj}");
        assert_eq!(parsed["h05"], "5, again");
    }

    /// Every byte value a message can carry, in every string field, and latencies whose
    /// shortest decimal form is long: the line must be the one serde_json writes.
    #[test]
    fn lines_match_serde_json_byte_for_byte() {
        use crate::{
            http::{ChunkMeta, Message, Text},
            pairing::{Paired, PendingRequest},
            tracker::Endpoints,
        };
        let all: Text = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é€😀\u{2028}\u{2029}\u{7f}\u{fffd}".chars())
            .collect::<String>()
            .into();
        let root = std::env::temp_dir().join(format!("hp-output-{}", std::process::id()));
        std::fs::create_dir_all(root.join("7")).unwrap();
        std::fs::write(root.join("7/comm"), "a\"b\\c\n").unwrap();
        std::fs::write(root.join("7/cmdline"), "srv\0--x=\"\t\"\0").unwrap();
        let mut procs = ProcessCache::with_root(&root);
        procs.observe(7, b"a\"b\\c\0\0\0\0\0\0\0\0\0\0\0");
        let clock = WallClock::from_offset(1_700_000_000_123_456_789);
        for (latency_ns, body) in [
            (Some(1_800_000), all.as_bytes().to_vec()),
            (Some(300_000_001), vec![0xff, 0, 0x80]),
            (Some(1), b"\"\\/\x08\x0c\n\r\t".to_vec()),
            (None, Vec::new()),
        ] {
            let e = Emitted {
                paired: Paired {
                    message: Box::new(Message {
                        start: StartLine::Response {
                            status: 200,
                            reason: all.clone(),
                        },
                        version_minor: 1,
                        headers: vec![
                            (all.clone(), all.clone()),
                            ("Authorization".into(), "secret".into()),
                            ("X".into(), "1".into()),
                            ("x".into(), all.clone()),
                        ]
                        .into(),
                        trailers: vec![("T\u{1}".into(), "\u{0}".into())],
                        raw: body.clone(),
                        head_len: 0,
                        body,
                        body_len: 42,
                        body_truncated: true,
                        wire_bytes: 9_007_199_254_740_993,
                        first: ChunkMeta {
                            timestamp_ns: 987_654_321,
                            tgid: 7,
                            tid: 8,
                        },
                        last_timestamp_ns: 0,
                        incomplete: None,
                        capture_gap: true,
                        body_omitted: Some("sendfile"),
                    }),
                    request: Some(PendingRequest {
                        method: "GET".into(),
                        url: all.clone(),
                        end_ns: Some(0),
                    }),
                    latency_ns,
                    request_lost: true,
                },
                direction: DIRECTION_SEND,
                conn_id: u64::MAX,
                endpoints: Endpoints {
                    local: "::1".parse().unwrap(),
                    local_port: 1,
                    remote: "10.0.0.1".parse().unwrap(),
                    remote_port: 65535,
                },
            };
            let format = Format {
                with_raw: true,
                redact: Redactor::new::<&str>(&[]),
            };
            let ours = render(&e, &procs, &clock, &format);
            let reference = with_line(&e, &procs, &clock, &format, |line| {
                serde_json::to_string(line).unwrap()
            });
            assert_eq!(ours, reference);
            let parsed: serde_json::Value = serde_json::from_str(&ours).unwrap();
            assert_eq!(parsed["reason"], all.as_str());

            // The fields only requests, unpaired and unfinished messages have.
            let mut e = e;
            let m = &mut e.paired.message;
            m.start = StartLine::Request {
                method: all.clone(),
                url: all.clone(),
            };
            m.trailers.clear();
            m.incomplete = Some(crate::http::Incomplete::Closed);
            m.body_omitted = None;
            e.paired.request = None;
            e.paired.request_lost = false;
            for with_raw in [false, true] {
                let format = Format {
                    with_raw,
                    ..format.clone()
                };
                let ours = render(&e, &procs, &clock, &format);
                let reference = with_line(&e, &procs, &clock, &format, |line| {
                    serde_json::to_string(line).unwrap()
                });
                assert_eq!(ours, reference);
            }
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    /// Lines rendered one after another with the same `Kept`, changing one by one
    /// each thing the kept members are written from: every line must still be the one
    /// serde_json writes from it alone.
    #[test]
    fn kept_members_are_reused_only_for_what_they_were_written_from() {
        use crate::{
            http::{ChunkMeta, Message},
            pairing::Paired,
            tracker::Endpoints,
        };
        let root = std::env::temp_dir().join(format!("hp-prefix-{}", std::process::id()));
        std::fs::create_dir_all(root.join("7")).unwrap();
        let proc_files = |comm: &str, cmdline: &str| {
            std::fs::write(root.join("7/comm"), comm).unwrap();
            std::fs::write(root.join("7/cmdline"), cmdline).unwrap();
        };
        proc_files("srv\n", "srv\0--port=80\0");
        let mut procs = ProcessCache::with_root(&root);
        procs.observe(7, b"srv\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let clock = WallClock::from_offset(1_700_000_000_000_000_000);
        let format = Format {
            with_raw: false,
            redact: Redactor::none(),
        };
        let mut e = Emitted {
            paired: Paired {
                message: Box::new(Message {
                    start: StartLine::Request {
                        method: "GET".into(),
                        url: "/".into(),
                    },
                    version_minor: 1,
                    headers: Default::default(),
                    trailers: Vec::new(),
                    raw: Vec::new(),
                    head_len: 0,
                    body: Vec::new(),
                    body_len: 0,
                    body_truncated: false,
                    wire_bytes: 18,
                    first: ChunkMeta {
                        timestamp_ns: 1,
                        tgid: 7,
                        tid: 7,
                    },
                    last_timestamp_ns: 1,
                    incomplete: None,
                    capture_gap: false,
                    body_omitted: None,
                }),
                request: None,
                latency_ns: None,
                request_lost: false,
            },
            direction: DIRECTION_SEND,
            conn_id: 3,
            endpoints: Endpoints {
                local: "10.0.0.1".parse().unwrap(),
                local_port: 40000,
                remote: "10.0.0.2".parse().unwrap(),
                remote_port: 80,
            },
        };
        let mut kept = Kept::default();
        let mut lines = std::collections::HashSet::new();
        let mut check = |e: &Emitted, procs: &ProcessCache| {
            let mut out = Vec::new();
            render_into(&mut out, e, procs, &clock, &format, &mut kept);
            let reference = with_line(e, procs, &clock, &format, |line| {
                serde_json::to_string(line).unwrap()
            });
            assert_eq!(String::from_utf8(out).unwrap(), reference);
            lines.insert(reference);
        };
        check(&e, &procs);
        check(&e, &procs);
        e.paired.message.first.tid = 8;
        check(&e, &procs);
        e.direction = http_profiler_common::DIRECTION_RECV;
        check(&e, &procs);
        e.endpoints.remote_port = 81;
        check(&e, &procs);
        e.endpoints.local = "10.0.0.3".parse().unwrap();
        check(&e, &procs);
        e.endpoints.remote = "::1".parse().unwrap();
        check(&e, &procs);
        e.endpoints.local_port = 40001;
        check(&e, &procs);
        // The process execs: a new thread name makes the cache read /proc again.
        proc_files("other\n", "other\0-v\0");
        procs.observe(7, b"other\0\0\0\0\0\0\0\0\0\0\0");
        check(&e, &procs);
        e.paired.message.first.tgid = 9;
        check(&e, &procs);
        // Another connection with the same slot, then the first one again.
        e.conn_id = 3 + 512;
        check(&e, &procs);
        e.conn_id = 3;
        check(&e, &procs);
        assert_eq!(lines.len(), 10, "each change shows in the line");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn binary_bodies_are_base64() {
        assert_eq!(text_or_base64(b"hi"), (Cow::Borrowed("hi"), None));
        assert_eq!(
            text_or_base64(&[0xff, 0x00]),
            (Cow::Owned("/wA=".to_string()), Some("base64"))
        );
    }

    /// Messages as the parser makes them: the head's fields are hidden in `raw_payload`
    /// whether or not the head is searched again, and field lines after the head are
    /// hidden though the parsed head holds none.
    #[test]
    fn raw_payload_hides_fields_of_the_head_and_field_lines_after_it() {
        use crate::{
            http::{ChunkMeta, Limits, Parser},
            pairing::Pairing,
        };
        // Bytes, the head's length, the raw payload as shown, and whether the head holds a
        // Cookie field (which the header object must show hidden).
        let cases: [(&[u8], usize, &str, bool); 4] = [
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\n\r\n",
                40,
                "GET / HTTP/1.1\r\nHost: h\r\nCookie: [REDACTED]\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX-Cookie: a=1\r\n\r\n",
                42,
                "GET / HTTP/1.1\r\nHost: h\r\nX-Cookie: a=1\r\n\r\n",
                false,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 15\r\n\r\nCookie: a=1\r\n\r\n",
                39,
                "POST / HTTP/1.1\r\nContent-Length: 15\r\n\r\nCookie: [REDACTED]\r\n\r\n",
                false,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nSet-Cookie: t\r\n\r\n",
                47,
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nSet-Cookie: [REDACTED]\r\n\r\n",
                false,
            ),
        ];
        let format = Format {
            with_raw: true,
            redact: Redactor::new::<&str>(&[]),
        };
        for (bytes, head_len, want, cookie_in_head) in cases {
            let (mut parser, mut pairing, mut out) = (
                Parser::new(Limits::default()),
                Pairing::default(),
                Vec::new(),
            );
            let meta = ChunkMeta {
                timestamp_ns: 1,
                tgid: 7,
                tid: 7,
            };
            parser.feed(bytes, meta, &mut pairing.sink(&mut out));
            let paired = out.pop().expect("one message");
            assert_eq!(paired.message.head_len, head_len);
            let e = received_on_loopback(paired);
            for with_raw in [true, false] {
                let format = Format {
                    with_raw,
                    ..format.clone()
                };
                let line = render(
                    &e,
                    &ProcessCache::default(),
                    &WallClock::from_offset(0),
                    &format,
                );
                let line: serde_json::Value = serde_json::from_str(&line).unwrap();
                if with_raw {
                    assert_eq!(line["raw_payload"], want);
                } else {
                    assert!(line.get("raw_payload").is_none());
                }
                // The header object hides the same fields with a raw payload or without.
                let headers = &line["headers"];
                if cookie_in_head {
                    assert_eq!(headers["Cookie"], REDACTED, "{line}");
                } else {
                    assert!(headers.get("Cookie").is_none(), "{line}");
                }
                assert_ne!(headers["Host"], REDACTED);
            }
        }
    }

    /// Heads parsed one after another on one kept-alive connection, rendered with the
    /// same `Kept`: messages share their fields only when their field lines repeat
    /// (whether or not the raw payload holds the whole head), and every line, written
    /// with a kept header object or not, is still the one serde_json writes from the
    /// message alone.
    #[test]
    fn kept_header_objects_follow_the_shared_fields() {
        use crate::{
            http::{ChunkMeta, Limits, Parser},
            pairing::Pairing,
        };
        let heads: [&[u8]; 10] = [
            b"GET /a HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\n\r\n",
            b"GET /b HTTP/1.1\r\nhost: h\r\nAccept: text/html\r\n\r\n",
            b"GET /b HTTP/1.1\r\nhost: h\r\nAccept: text/html\r\nAccept: x\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            // Cut by the raw payload's limit below: the fields are shared all the same.
            b"GET /b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
            b"GET /c HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        ];
        let limits = Limits {
            max_raw: 64,
            ..Limits::default()
        };
        let (mut parser, mut pairing, mut messages) =
            (Parser::new(limits), Pairing::default(), Vec::new());
        let meta = ChunkMeta {
            timestamp_ns: 1,
            tgid: 7,
            tid: 7,
        };
        for head in heads {
            parser.feed(head, meta, &mut pairing.sink(&mut messages));
        }
        assert_eq!(messages.len(), heads.len());
        let shares_with_previous: Vec<bool> = messages
            .windows(2)
            .map(|w| std::sync::Arc::ptr_eq(&w[0].message.headers, &w[1].message.headers))
            .collect();
        assert_eq!(
            shares_with_previous,
            [true, false, false, false, false, true, false, false, true]
        );
        assert_eq!(messages[9].message.raw.len(), 64, "the raw payload is cut");
        let emitted: Vec<Emitted> = messages.into_iter().map(received_on_loopback).collect();
        let (procs, clock) = (ProcessCache::default(), WallClock::from_offset(0));
        for format in [
            Format {
                with_raw: true,
                redact: Redactor::new::<&str>(&[]),
            },
            Format {
                with_raw: false,
                redact: Redactor::none(),
            },
        ] {
            let mut kept = Kept::default();
            let mut objects = Vec::new();
            for e in &emitted {
                let mut out = Vec::new();
                render_into(&mut out, e, &procs, &clock, &format, &mut kept);
                let reference = with_line(e, &procs, &clock, &format, |line| {
                    serde_json::to_string(line).unwrap()
                });
                assert_eq!(String::from_utf8(out).unwrap(), reference);
                let line: serde_json::Value = serde_json::from_str(&reference).unwrap();
                objects.push(line["headers"].to_string());
            }
            assert_eq!(objects[0], objects[1]);
            assert_eq!(objects[5], objects[6]);
            assert_eq!(objects[0], objects[7]);
            assert_eq!(objects[8], objects[9]);
            let distinct: std::collections::HashSet<_> = objects.iter().collect();
            assert_eq!(distinct.len(), 6, "{objects:?}");
        }
    }
}
