//! Reassembly of one direction's byte stream from records that carry their position.
//!
//! The probes number every byte of each direction of a connection, so a record that
//! starts past the expected position means bytes were lost (ring buffer full) or not
//! copied (over the per-syscall cap); one that starts before it repeats bytes already
//! seen (two threads racing on one socket) and is trimmed.

#[derive(Debug, Default)]
pub struct StreamCursor {
    next: Option<u64>,
}

/// Where a record's bytes fall in the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Placed<'a> {
    /// Bytes missing before this record.
    pub gap: u64,
    /// The record's bytes that are new.
    pub bytes: &'a [u8],
}

impl StreamCursor {
    /// The position the next byte is expected at, once a record has been seen.
    pub fn next_pos(&self) -> Option<u64> {
        self.next
    }

    pub fn place<'a>(&mut self, pos: u64, data: &'a [u8]) -> Placed<'a> {
        let end = pos.saturating_add(data.len() as u64);
        let placed = match self.next {
            // The first record seen in this direction: the probe only starts copying a
            // connection at a syscall that begins like an HTTP message.
            None => Placed {
                gap: 0,
                bytes: data,
            },
            Some(next) if pos >= next => Placed {
                gap: pos - next,
                bytes: data,
            },
            Some(next) if end <= next => Placed { gap: 0, bytes: &[] },
            Some(next) => Placed {
                gap: 0,
                bytes: &data[(next - pos) as usize..],
            },
        };
        self.next = Some(self.next.map_or(end, |n| n.max(end)));
        placed
    }

    /// The stream is known to reach `end` (a syscall's bytes past what was copied, or the
    /// position at close): returns the bytes missing up to there.
    pub fn advance_to(&mut self, end: u64) -> u64 {
        match self.next {
            Some(next) if end > next => {
                self.next = Some(end);
                end - next
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_records_have_no_gap() {
        let mut c = StreamCursor::default();
        assert_eq!(
            c.place(100, b"abc"),
            Placed {
                gap: 0,
                bytes: b"abc"
            }
        );
        assert_eq!(
            c.place(103, b"de"),
            Placed {
                gap: 0,
                bytes: b"de"
            }
        );
        assert_eq!(c.next_pos(), Some(105));
    }

    #[test]
    fn a_lost_record_shows_as_a_gap() {
        let mut c = StreamCursor::default();
        c.place(0, b"abc");
        assert_eq!(
            c.place(10, b"xyz"),
            Placed {
                gap: 7,
                bytes: b"xyz"
            }
        );
    }

    #[test]
    fn repeated_bytes_are_trimmed() {
        let mut c = StreamCursor::default();
        c.place(0, b"abcdef");
        assert_eq!(c.place(2, b"cd"), Placed { gap: 0, bytes: b"" });
        assert_eq!(
            c.place(4, b"efgh"),
            Placed {
                gap: 0,
                bytes: b"gh"
            }
        );
        assert_eq!(c.next_pos(), Some(8));
    }

    #[test]
    fn advancing_reports_uncopied_bytes_once() {
        let mut c = StreamCursor::default();
        c.place(0, b"abcd");
        assert_eq!(c.advance_to(10), 6);
        assert_eq!(c.advance_to(10), 0);
        assert_eq!(c.advance_to(3), 0);
        assert_eq!(
            c.place(10, b"k"),
            Placed {
                gap: 0,
                bytes: b"k"
            }
        );
    }
}
