//! What the fuzz targets share: how an input is split into control operations and the
//! bytes they move, and the checks every emitted message must pass.
//!
//! An input is `[config][op count N][N ops of 4 bytes][stream bytes...]`. Each op is
//! `[kind][selector][len lo][len hi]`; data ops take their bytes, in order, from the
//! stream bytes, so a seed is a real HTTP exchange with a few ops in front that say
//! where the syscall boundaries fall and which direction each piece goes.

use http_profiler::{
    clock::WallClock,
    http::Limits,
    output::{self, Format},
    procinfo::ProcessCache,
    redact::{REDACTED, Redactor},
    tracker::Emitted,
};

pub struct Op {
    pub kind: u8,
    pub selector: u8,
    pub len: u16,
}

pub struct Input<'a> {
    pub config: u8,
    ops: &'a [u8],
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        let config = raw.first().copied().unwrap_or(0);
        let count = raw.get(1).copied().unwrap_or(0) as usize;
        let rest = raw.get(2..).unwrap_or(&[]);
        let ops_len = (count * 4).min(rest.len() / 4 * 4);
        let (ops, data) = rest.split_at(ops_len);
        Self { config, ops, data }
    }

    pub fn next_op(&mut self) -> Option<Op> {
        let (op, rest) = self.ops.split_first_chunk::<4>()?;
        self.ops = rest;
        Some(Op {
            kind: op[0],
            selector: op[1],
            len: u16::from_le_bytes([op[2], op[3]]),
        })
    }

    /// The next `len` stream bytes (fewer at the end).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// Small limits make the caps bite on small inputs; the defaults are what runs in production.
pub fn limits(config: u8) -> Limits {
    match config & 3 {
        0 => Limits::default(),
        1 => Limits {
            max_body: 16,
            max_raw: 32,
            max_head: 64,
        },
        2 => Limits {
            max_body: 0,
            max_raw: 0,
            max_head: 1,
        },
        _ => Limits {
            max_body: 100,
            max_raw: 200,
            max_head: 300,
        },
    }
}

/// The formats every message is rendered in: with the raw payload and a header hidden on
/// top of the credentials, and with neither.
pub fn formats() -> [Format; 2] {
    [
        Format {
            with_raw: true,
            redact: Redactor::new(&["X-Api-Key"]),
        },
        Format {
            with_raw: false,
            redact: Redactor::none(),
        },
    ]
}

/// Every emitted message stays within its limits and renders as one valid JSON line in
/// each of `formats()`, with credentials hidden when redaction is on. Returns those lines,
/// in the order of `formats()`.
pub fn check(e: &Emitted, limits: Limits, procs: &ProcessCache, clock: &WallClock) -> [String; 2] {
    let m = &e.paired.message;
    assert!(m.body.len() <= limits.max_body, "body over the cap");
    assert!(m.raw.len() <= limits.max_raw, "raw payload over the cap");
    assert!(
        m.body.len() as u64 <= m.body_len,
        "kept more body than counted"
    );
    formats().map(|format| {
        let line = output::render(e, procs, clock, &format);
        assert!(!line.contains('\n'), "a line break inside a JSON line");
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        if format.redact.is_active() {
            for (name, v) in value["headers"].as_object().expect("headers") {
                if format.redact.hides(name) {
                    assert_eq!(v, REDACTED, "{name} not hidden");
                }
            }
        }
        line
    })
}
