//! The probes' object made fit for the running kernel before it is loaded: the calls of
//! the kfunc `bpf_rdonly_cast` carry a placeholder where the kernel's id of it goes
//! (aya has no way to resolve a kfunc), and on a kernel without it they become the
//! register move the verifier would have made of them.

use http_profiler_common::{WORD_CAST_CALL, WORD_CAST_FALLBACK};

use crate::offsets::WordCast;

/// A copy of the object, 8-byte aligned as an ELF file's parser may need.
pub struct PatchedObject {
    words: Vec<u64>,
    len: usize,
    /// How many calls were rewritten.
    pub calls: usize,
}

impl PatchedObject {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes, and u8 has no alignment.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
    }
}

/// Rewrites every placeholder call: with the kernel's kfunc id where `cast` is known,
/// else with `WORD_CAST_FALLBACK`. BPF instructions are 8 bytes, 8-aligned in the file
/// (sections of code are), so only aligned words are compared.
pub fn for_kernel(object: &[u8], cast: Option<WordCast>) -> PatchedObject {
    let replacement = match cast {
        Some(c) => {
            let mut call = WORD_CAST_CALL;
            call[4..].copy_from_slice(&c.kfunc_id.to_le_bytes());
            call
        }
        None => WORD_CAST_FALLBACK,
    };
    let mut words = vec![0u64; object.len().div_ceil(8)];
    // SAFETY: as in `bytes`; the vector has room for `object.len()` bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), object.len()) };
    bytes.copy_from_slice(object);
    let mut calls = 0;
    for insn in bytes.chunks_exact_mut(8) {
        if insn == WORD_CAST_CALL {
            insn.copy_from_slice(&replacement);
            calls += 1;
        }
    }
    PatchedObject {
        words,
        len: object.len(),
        calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object_with_calls() -> Vec<u8> {
        let mut o = vec![0x11u8; 8];
        o.extend_from_slice(&WORD_CAST_CALL);
        o.extend_from_slice(&[0x22; 8]);
        o.extend_from_slice(&WORD_CAST_CALL);
        // Unaligned, as no instruction is: left alone.
        o.extend_from_slice(&[0x33; 3]);
        o.extend_from_slice(&WORD_CAST_CALL);
        o
    }

    #[test]
    fn calls_get_the_kernels_id() {
        let o = object_with_calls();
        let cast = WordCast {
            kfunc_id: 0x0102_0304,
            type_id: 9,
        };
        let p = for_kernel(&o, Some(cast));
        assert_eq!(p.calls, 2);
        let b = p.bytes();
        assert_eq!(b.len(), o.len());
        assert_eq!(&b[8..16], &[0x85, 0x20, 0, 0, 4, 3, 2, 1]);
        assert_eq!(&b[24..32], &[0x85, 0x20, 0, 0, 4, 3, 2, 1]);
        assert_eq!(&b[..8], &o[..8]);
        assert_eq!(&b[32..], &o[32..]);
        assert_eq!(b.as_ptr() as usize % 8, 0);
    }

    #[test]
    fn without_the_kfunc_calls_become_moves() {
        let o = object_with_calls();
        let p = for_kernel(&o, None);
        assert_eq!(p.calls, 2);
        assert_eq!(&p.bytes()[8..16], &WORD_CAST_FALLBACK);
        assert_eq!(&p.bytes()[24..32], &WORD_CAST_FALLBACK);
    }

    /// The probes are built with the placeholder where they read kernel memory.
    #[test]
    fn the_probes_hold_placeholder_calls() {
        let object = crate::probes::object();
        assert!(
            !object.is_empty(),
            "built with AYA_BUILD_SKIP=1: the probes are not here to check"
        );
        assert!(for_kernel(object, None).calls > 0);
    }
}
