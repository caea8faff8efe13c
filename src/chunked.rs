//! Decoding of the chunked transfer coding (RFC 9112 section 7.1), one step at a time, so
//! that a body split anywhere across syscalls decodes the same.

use std::ops::Range;

use crate::http::Text;

/// The longest chunk-size line or trailer line accepted (extensions included).
const MAX_LINE: usize = 8 * 1024;

#[derive(Debug, Default)]
enum State {
    #[default]
    Size,
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    Trailer,
}

#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
}

/// What one call to [`ChunkedDecoder::step`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkedStep {
    /// `consumed` bytes were chunk data, at `data` within the input.
    Data { consumed: usize, data: Range<usize> },
    /// `consumed` bytes were chunk sizes, extensions or CRLFs.
    Framing { consumed: usize },
    Trailer {
        consumed: usize,
        name: Text,
        value: Text,
    },
    /// The last chunk and the trailer section ended.
    End { consumed: usize },
    /// The input is not chunked coding.
    Invalid,
}

impl ChunkedDecoder {
    /// Decodes from the start of `input`, which must not be empty.
    pub fn step(&mut self, input: &[u8]) -> ChunkedStep {
        match self.state {
            State::Data(remaining) => {
                let n = remaining.min(input.len() as u64) as usize;
                self.state = if remaining == n as u64 {
                    State::DataEnd
                } else {
                    State::Data(remaining - n as u64)
                };
                ChunkedStep::Data {
                    consumed: n,
                    data: 0..n,
                }
            }
            State::DataEnd => match input.first() {
                Some(b'\r') => ChunkedStep::Framing { consumed: 1 },
                Some(b'\n') => {
                    self.state = State::Size;
                    ChunkedStep::Framing { consumed: 1 }
                }
                _ => ChunkedStep::Invalid,
            },
            State::Size | State::Trailer => {
                let Some(consumed) = self.take_line(input) else {
                    return if self.line.len() > MAX_LINE {
                        ChunkedStep::Invalid
                    } else {
                        ChunkedStep::Framing {
                            consumed: input.len(),
                        }
                    };
                };
                let line = std::mem::take(&mut self.line);
                let line = trim_line_end(&line);
                if matches!(self.state, State::Size) {
                    match parse_size(line) {
                        Some(0) => self.state = State::Trailer,
                        Some(n) => self.state = State::Data(n),
                        None => return ChunkedStep::Invalid,
                    }
                    ChunkedStep::Framing { consumed }
                } else if line.is_empty() {
                    self.state = State::Size;
                    ChunkedStep::End { consumed }
                } else {
                    let text = String::from_utf8_lossy(line);
                    match text.split_once(':') {
                        Some((name, value)) => ChunkedStep::Trailer {
                            consumed,
                            name: name.trim().into(),
                            value: value.trim().into(),
                        },
                        None => ChunkedStep::Invalid,
                    }
                }
            }
        }
    }

    /// Appends input up to and including a line feed; returns the bytes consumed when the
    /// line is complete.
    fn take_line(&mut self, input: &[u8]) -> Option<usize> {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.line.extend_from_slice(&input[..=i]);
                (self.line.len() <= MAX_LINE).then_some(i + 1)
            }
            None => {
                let room = (MAX_LINE + 1).saturating_sub(self.line.len());
                self.line.extend_from_slice(&input[..input.len().min(room)]);
                None
            }
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The chunk size: hex digits, then optional whitespace and `;extensions`.
fn parse_size(line: &[u8]) -> Option<u64> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits_end == 0 || digits_end > 16 {
        return None;
    }
    let rest = &line[digits_end..];
    let rest_ok = rest.iter().all(|&b| b == b' ' || b == b'\t')
        || rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b';');
    if !rest_ok {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits_end]).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Field;

    /// Decodes `input` fed in pieces of `piece` bytes; returns body, trailers, ended.
    fn decode(input: &[u8], piece: usize) -> (Vec<u8>, Vec<Field>, bool) {
        let mut d = ChunkedDecoder::default();
        let (mut body, mut trailers) = (Vec::new(), Vec::new());
        for part in input.chunks(piece) {
            let mut at = 0;
            while at < part.len() {
                match d.step(&part[at..]) {
                    ChunkedStep::Data { consumed, data } => {
                        body.extend_from_slice(&part[at..][data]);
                        at += consumed;
                    }
                    ChunkedStep::Framing { consumed } => at += consumed,
                    ChunkedStep::Trailer {
                        consumed,
                        name,
                        value,
                    } => {
                        trailers.push((name, value));
                        at += consumed;
                    }
                    ChunkedStep::End { .. } => return (body, trailers, true),
                    ChunkedStep::Invalid => return (body, trailers, false),
                }
            }
        }
        (body, trailers, false)
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers_in_any_split() {
        let wire =
            b"5;name=val\r\nhello\r\n6 ; x\r\n world\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
        for piece in 1..wire.len() {
            let (body, trailers, ended) = decode(wire, piece);
            assert!(ended, "piece {piece}");
            assert_eq!(body, b"hello world");
            assert_eq!(
                trailers,
                vec![
                    ("Expires".into(), "never".into()),
                    ("X-Sum".into(), "1".into())
                ]
            );
        }
    }

    #[test]
    fn rejects_sizes_that_are_not_hex() {
        assert!(!decode(b"zz\r\nhello\r\n0\r\n\r\n", 100).2);
        assert!(!decode(b"-5\r\nhello\r\n0\r\n\r\n", 100).2);
        assert!(!decode(b"11111111111111111\r\n", 100).2);
    }

    #[test]
    fn rejects_data_not_followed_by_crlf() {
        assert!(!decode(b"2\r\nabc\r\n0\r\n\r\n", 100).2);
    }

    #[test]
    fn bounds_endless_size_lines() {
        let line = vec![b'1'; 3 * MAX_LINE];
        let mut d = ChunkedDecoder::default();
        let mut at = 0;
        let mut invalid = false;
        while at < line.len() {
            match d.step(&line[at..at + 1024]) {
                ChunkedStep::Framing { consumed } => at += consumed,
                ChunkedStep::Invalid => {
                    invalid = true;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(invalid);
        assert!(d.line.len() <= MAX_LINE + 1);
    }
}
