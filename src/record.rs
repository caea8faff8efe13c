//! Decoding of ring-buffer records into typed values.

use http_profiler_common::{CloseRecord, DataHeader, ExecRecord, RecordKind};

#[derive(Debug)]
pub enum Record<'a> {
    Data {
        header: DataHeader,
        payload: &'a [u8],
    },
    Close(CloseRecord),
    Exec(ExecRecord),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("record says {claimed} payload bytes but holds {held}")]
    BadLength { claimed: u32, held: usize },
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: the length is checked above; T is a plain repr(C) record of integers, valid
    // for any bit pattern, and read_unaligned has no alignment requirement.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let kind: u32 = read(bytes)?;
    match kind {
        k if k == RecordKind::Data as u32 => {
            let header: DataHeader = read(bytes)?;
            let payload = &bytes[size_of::<DataHeader>()..];
            if payload.len() < header.data_len as usize {
                return Err(DecodeError::BadLength {
                    claimed: header.data_len,
                    held: payload.len(),
                });
            }
            Ok(Record::Data {
                header,
                payload: &payload[..header.data_len as usize],
            })
        }
        k if k == RecordKind::Close as u32 => Ok(Record::Close(read(bytes)?)),
        k if k == RecordKind::Exec as u32 => Ok(Record::Exec(read(bytes)?)),
        k => Err(DecodeError::UnknownKind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32) -> DataHeader {
        DataHeader {
            kind: RecordKind::Data as u32,
            flags: 0,
            tgid: 1,
            tid: 2,
            fd: 3,
            generation: 4,
            sock: 5,
            timestamp_ns: 6,
            stream_pos: 7,
            syscall_bytes: 8,
            other_pos: 0,
            syscall_offset: 0,
            data_len: len,
            direction: 0,
            _pad: 0,
            family: 2,
            local_port: 80,
            remote_port: 5000,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            comm: [0; 16],
        }
    }

    fn bytes_of(h: &DataHeader, payload: &[u8]) -> Vec<u8> {
        // SAFETY: DataHeader is repr(C) without implicit padding.
        let mut v = unsafe {
            std::slice::from_raw_parts(
                (h as *const DataHeader).cast::<u8>(),
                size_of::<DataHeader>(),
            )
        }
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_data_record_with_its_payload() {
        let bytes = bytes_of(&header(3), b"GET");
        match decode(&bytes).unwrap() {
            Record::Data { header, payload } => {
                assert_eq!(payload, b"GET");
                assert_eq!(header.local_port, 80);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_short_and_inconsistent_records() {
        assert_eq!(decode(&[1, 0]).unwrap_err(), DecodeError::Short(2));
        assert_eq!(
            decode(&[9, 0, 0, 0]).unwrap_err(),
            DecodeError::UnknownKind(9)
        );
        let bytes = bytes_of(&header(10), b"GET");
        assert_eq!(
            decode(&bytes).unwrap_err(),
            DecodeError::BadLength {
                claimed: 10,
                held: 3
            }
        );
    }
}
