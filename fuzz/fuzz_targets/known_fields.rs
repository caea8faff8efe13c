//! A connection end's heads parsed one after another with their field lines kept
//! (`http::head::KnownFields`) must parse exactly as each head does alone: heads whose
//! field lines repeat have only their start line parsed, on a copy of it, and share the
//! fields of the head before.
//!
//! The input is `[count N][N start lines, each ending at its '\n'][field lines...]`: each
//! start line is parsed with the same field lines after it, so every head after the first
//! takes the shared path whenever the first parsed.

#![no_main]

use http_profiler::http::head::KnownFields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let Some((&count, mut rest)) = raw.split_first() else {
        return;
    };
    let mut start_lines = Vec::new();
    for _ in 0..count % 8 + 1 {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return;
        };
        let (line, after) = rest.split_at(end + 1);
        start_lines.push(line);
        rest = after;
    }
    let field_lines = rest;
    let mut known = KnownFields::default();
    for start_line in start_lines {
        let head = [start_line, field_lines].concat();
        let kept = known.parse(&head);
        let alone = KnownFields::default().parse(&head);
        assert_eq!(kept, alone, "head {:?}", String::from_utf8_lossy(&head));
    }
});
