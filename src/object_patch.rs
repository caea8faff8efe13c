//! The probes' object made fit for the running kernel before it is loaded: the calls of
//! the kfunc `bpf_rdonly_cast` carry a placeholder where the kernel's id of it goes
//! (aya has no way to resolve a kfunc), and on a kernel without it they become the
//! register move the verifier would have made of them.

use std::ops::Range;

use http_profiler_common::{WORD_CAST_CALL, WORD_CAST_FALLBACK};
use object::{Object as _, ObjectSection as _, SectionKind};

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

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }
}

/// Copies the object with every placeholder call rewritten: with the kernel's kfunc id
/// where `cast` is known, else with `WORD_CAST_FALLBACK`. The debug-information sections
/// (half of the object; the loader reads none of them, only their relocations) are left
/// out of the copy: they stay zero pages of a zeroed allocation, which take no memory,
/// and the object's own pages of them are never touched either.
pub fn for_kernel(object: &[u8], cast: Option<WordCast>) -> anyhow::Result<PatchedObject> {
    let file = object::File::parse(object)?;
    let mut skipped = Vec::new();
    let mut code = Vec::new();
    for section in file.sections() {
        let Some((start, size)) = section.file_range() else {
            continue;
        };
        let range = start as usize..(start + size) as usize;
        let name = section.name().unwrap_or_default();
        // Their relocations stay: the loader reads every relocation section.
        if name.starts_with(".debug") {
            skipped.push(range);
        } else if section.kind() == SectionKind::Text {
            code.push(range);
        }
    }
    skipped.sort_by_key(|r| r.start);
    // A large zeroed vector comes as fresh zero pages from the kernel: only the pages
    // written below become resident.
    let mut patched = PatchedObject {
        words: vec![0u64; object.len().div_ceil(8)],
        len: object.len(),
        calls: 0,
    };
    let bytes = patched.bytes_mut();
    for kept in gaps(object.len(), &skipped) {
        bytes[kept.clone()].copy_from_slice(&object[kept]);
    }
    let replacement = match cast {
        Some(c) => {
            let mut call = WORD_CAST_CALL;
            call[4..].copy_from_slice(&c.kfunc_id.to_le_bytes());
            call
        }
        None => WORD_CAST_FALLBACK,
    };
    let mut calls = 0;
    for range in code {
        calls += patch_calls(&mut bytes[range], replacement);
    }
    patched.calls = calls;
    Ok(patched)
}

/// The parts of `0..len` outside `skipped` (sorted by start).
fn gaps(len: usize, skipped: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut kept = Vec::new();
    let mut at = 0;
    for r in skipped {
        if r.start > at {
            kept.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < len {
        kept.push(at..len);
    }
    kept
}

/// Rewrites each placeholder call in `code` (a section of 8-byte instructions) to
/// `replacement`; returns how many there were.
fn patch_calls(code: &mut [u8], replacement: [u8; 8]) -> usize {
    let mut calls = 0;
    for insn in code.chunks_exact_mut(8) {
        if insn == WORD_CAST_CALL {
            insn.copy_from_slice(&replacement);
            calls += 1;
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_with_calls() -> Vec<u8> {
        let mut o = vec![0x11u8; 8];
        o.extend_from_slice(&WORD_CAST_CALL);
        o.extend_from_slice(&[0x22; 8]);
        o.extend_from_slice(&WORD_CAST_CALL);
        o
    }

    #[test]
    fn placeholder_calls_are_rewritten_and_nothing_else() {
        let mut code = code_with_calls();
        let call = [0x85, 0x20, 0, 0, 4, 3, 2, 1];
        assert_eq!(patch_calls(&mut code, call), 2);
        assert_eq!(&code[8..16], &call);
        assert_eq!(&code[24..32], &call);
        assert_eq!(&code[..8], &[0x11; 8]);
        assert_eq!(&code[16..24], &[0x22; 8]);
        // An instruction split across two words is no instruction.
        let mut shifted = vec![0u8; 4];
        shifted.extend_from_slice(&WORD_CAST_CALL);
        shifted.extend_from_slice(&[0; 4]);
        assert_eq!(patch_calls(&mut shifted, call), 0);
    }

    // One range in a vector is what is meant here, not a vector of its numbers.
    #[allow(clippy::single_range_in_vec_init)]
    #[test]
    fn gaps_are_what_lies_outside_the_skipped_ranges() {
        assert_eq!(gaps(10, &[]), vec![0..10]);
        assert_eq!(gaps(10, &[2..4, 4..6, 8..10]), vec![0..2, 6..8]);
        assert_eq!(gaps(10, &[0..3]), vec![3..10]);
    }

    /// The probes as built: calls to rewrite, and every byte the loader reads copied
    /// as it is but for those calls; the debug information left out.
    #[test]
    fn the_probes_are_copied_without_debug_information_and_with_their_calls_rewritten() {
        let object = crate::probes::object();
        assert!(
            !object.is_empty(),
            "built with AYA_BUILD_SKIP=1: the probes are not here to check"
        );
        let cast = WordCast {
            kfunc_id: 0x0102_0304,
            type_id: 9,
        };
        let patched = for_kernel(object, Some(cast)).unwrap();
        assert!(patched.calls > 0);
        assert_eq!(patched.bytes().as_ptr() as usize % 8, 0);
        let original = object::File::parse(object).unwrap();
        let copy = object::File::parse(patched.bytes()).unwrap();
        let (mut debug_bytes, mut calls) = (0, 0);
        for (a, b) in original.sections().zip(copy.sections()) {
            let name = a.name().unwrap();
            let (before, after) = (a.data().unwrap(), b.data().unwrap());
            if name.starts_with(".debug") {
                assert!(after.iter().all(|&x| x == 0), "{name} copied");
                debug_bytes += before.len();
            } else if a.kind() == SectionKind::Text {
                for (x, y) in before.chunks_exact(8).zip(after.chunks_exact(8)) {
                    if x == WORD_CAST_CALL {
                        assert_eq!(y, &[0x85, 0x20, 0, 0, 4, 3, 2, 1], "{name}");
                        calls += 1;
                    } else {
                        assert_eq!(x, y, "{name}");
                    }
                }
            } else {
                assert_eq!(before, after, "{name} changed");
            }
        }
        assert_eq!(calls, patched.calls);
        assert!(
            debug_bytes > 0,
            "no debug information to leave out: drop that code"
        );
        let fallback = for_kernel(object, None).unwrap();
        assert_eq!(fallback.calls, patched.calls);
    }
}
