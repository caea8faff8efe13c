//! Kernel struct field offsets from the running kernel's BTF, for the probes: Rust
//! probes cannot carry CO-RE relocations, so userspace resolves each offset at start-up
//! and injects it.

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use http_profiler_common::{
    FDTABLE_HEAD_BYTES, FILE_COUNT_IS_COUNT, FILE_COUNT_IS_REF, KernelOffsets, SOCKET_HEAD_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "this kernel has no BTF ({path}: {source}); http-profiler needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (standard in Debian 11+, Ubuntu 20.10+, Fedora 31+), or a BTF \
         file for this kernel passed with --btf"
    )]
    NoBtf { path: String, source: btf_rs::Error },
    #[error(
        "{path} is not a BTF file this profiler can read ({source}); pass the running kernel's \
         BTF with --btf (default /sys/kernel/btf/vmlinux, from CONFIG_DEBUG_INFO_BTF=y)"
    )]
    BadBtf { path: String, source: btf_rs::Error },
    #[error("the kernel's BTF has no {0}: this kernel's layout is not supported")]
    Missing(String),
    #[error(
        "{field} is at bytes {start}..{end} of its struct in this kernel, not inside one \
         8-byte word of the first {head} bytes, which the probes read at once: this \
         kernel's layout is not supported"
    )]
    OutsideHead {
        field: String,
        start: u32,
        end: u32,
        head: u32,
    },
    #[error("{0} is a bit field in this kernel: not supported")]
    BitField(String),
    #[error("reading BTF: {0}")]
    Btf(#[from] btf_rs::Error),
}

/// The byte offset of `path` (fields, through anonymous structs and unions) in `strukt`.
pub fn field_offset(btf: &Btf, strukt: &str, path: &[&str]) -> Result<u32, OffsetError> {
    let name = format!("{strukt}.{}", path.join("."));
    let mut ty = find_struct(btf, strukt)?
        .ok_or_else(|| OffsetError::Missing(format!("struct {strukt}")))?;
    let mut bits = 0u32;
    for (i, field) in path.iter().enumerate() {
        let (offset, member_type) =
            find_member(btf, &ty, field)?.ok_or_else(|| OffsetError::Missing(name.clone()))?;
        bits += offset;
        if i + 1 < path.len() {
            ty = resolve_struct(btf, member_type)?
                .ok_or_else(|| OffsetError::Missing(name.clone()))?;
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(OffsetError::BitField(name));
    }
    Ok(bits / 8)
}

/// Checks that each of `fields` (name, offset, size in bytes) lies inside the first
/// `head` bytes of `strukt`, a struct of `size` bytes, and inside one 8-byte word of
/// them: the probes read those bytes with one helper call and take each field from its
/// word.
pub fn check_head(
    strukt: &str,
    size: usize,
    head: u32,
    fields: &[(&str, u32, u32)],
) -> Result<(), OffsetError> {
    if size < head as usize {
        return Err(OffsetError::Missing(format!(
            "{head} bytes in struct {strukt} (it has {size})"
        )));
    }
    for &(field, start, bytes) in fields {
        let end = start + bytes;
        if end > head || start % 8 + bytes > 8 {
            return Err(OffsetError::OutsideHead {
                field: format!("{strukt}.{field}"),
                start,
                end,
                head,
            });
        }
    }
    Ok(())
}

fn struct_size(btf: &Btf, name: &str) -> Result<usize, OffsetError> {
    Ok(find_struct(btf, name)?
        .ok_or_else(|| OffsetError::Missing(format!("struct {name}")))?
        .size())
}

fn find_struct(btf: &Btf, name: &str) -> Result<Option<btf_rs::Struct>, OffsetError> {
    for t in btf.resolve_types_by_name(name).unwrap_or_default() {
        if let Type::Struct(s) = t
            && !s.members.is_empty()
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Follows typedefs and qualifiers to a struct or union.
fn resolve_struct(btf: &Btf, mut id: u32) -> Result<Option<btf_rs::Struct>, OffsetError> {
    for _ in 0..16 {
        match btf.resolve_type_by_id(id)? {
            Type::Struct(s) | Type::Union(s) => return Ok(Some(s)),
            Type::Typedef(t) => {
                id = t
                    .get_type_id()
                    .ok_or_else(|| OffsetError::Missing("typedef target".into()))?
            }
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                id = t
                    .get_type_id()
                    .ok_or_else(|| OffsetError::Missing("qualified type".into()))?
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// A member's bit offset and type id, looking inside anonymous members.
fn find_member(
    btf: &Btf,
    s: &btf_rs::Struct,
    field: &str,
) -> Result<Option<(u32, u32)>, OffsetError> {
    for m in &s.members {
        let type_id = m.get_type_id().unwrap_or(0);
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            if m.bitfield_size().is_some_and(|b| b != 0) {
                return Err(OffsetError::BitField(field.to_string()));
            }
            return Ok(Some((m.bit_offset(), type_id)));
        }
        if name.is_empty()
            && let Some(inner) = resolve_struct(btf, type_id)?
            && let Some((off, t)) = find_member(btf, &inner, field)?
        {
            return Ok(Some((m.bit_offset() + off, t)));
        }
    }
    Ok(None)
}

/// What the probes need to know of the running kernel.
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout {
    pub offsets: KernelOffsets,
    /// Whether tracepoint programs can read the user registers of the current syscall
    /// (`bpf_task_pt_regs`, Linux 5.15): then data syscalls need no enter hooks.
    pub user_regs: bool,
    /// How the probes read kernel memory by plain loads, where the kernel allows it.
    pub word_cast: Option<WordCast>,
}

/// The BTF ids the probes' plain loads of kernel memory need (see `word_cast`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WordCast {
    /// The kfunc `bpf_rdonly_cast`.
    pub kfunc_id: u32,
    /// A struct of one 8-byte integer at offset 0 (`atomic64_t`'s): what a cast address
    /// points to, so that its one load reads 8 bytes as a number.
    pub type_id: u32,
}

/// Every offset the probes use, and the helpers they may call, from the BTF file at
/// `path`.
pub fn resolve(path: &Path) -> Result<KernelLayout, OffsetError> {
    let btf = Btf::from_file(path).map_err(|source| {
        let path_text = path.display().to_string();
        // A file that is there but does not parse is a wrong --btf, not a kernel without BTF.
        if path.is_file() {
            OffsetError::BadBtf {
                path: path_text,
                source,
            }
        } else {
            OffsetError::NoBtf {
                path: path_text,
                source,
            }
        }
    })?;
    let sk = |f: &str| field_offset(&btf, "sock", &["__sk_common", f]);
    // Kernels built without IPv6 have no v6 addresses; no IPv6 socket can exist there.
    let sk_v6 = |f: &str| match sk(f) {
        Err(OffsetError::Missing(_)) => Ok(0),
        other => other,
    };
    let (file_count, file_count_kind) = match field_offset(&btf, "file", &["f_ref", "refcnt"]) {
        Ok(off) => (off, FILE_COUNT_IS_REF),
        Err(OffsetError::Missing(_)) => (
            field_offset(&btf, "file", &["f_count"])?,
            FILE_COUNT_IS_COUNT,
        ),
        Err(e) => return Err(e),
    };
    let fdtable_max_fds = field_offset(&btf, "fdtable", &["max_fds"])?;
    let fdtable_fd = field_offset(&btf, "fdtable", &["fd"])?;
    check_head(
        "fdtable",
        struct_size(&btf, "fdtable")?,
        FDTABLE_HEAD_BYTES,
        &[("max_fds", fdtable_max_fds, 4), ("fd", fdtable_fd, 8)],
    )?;
    let socket_type = field_offset(&btf, "socket", &["type"])?;
    let socket_sk = field_offset(&btf, "socket", &["sk"])?;
    let socket_ops = field_offset(&btf, "socket", &["ops"])?;
    check_head(
        "socket",
        struct_size(&btf, "socket")?,
        SOCKET_HEAD_BYTES,
        &[
            ("type", socket_type, 2),
            ("sk", socket_sk, 8),
            ("ops", socket_ops, 8),
        ],
    )?;
    let offsets = KernelOffsets {
        task_pid: field_offset(&btf, "task_struct", &["pid"])?,
        task_tgid: field_offset(&btf, "task_struct", &["tgid"])?,
        task_files: field_offset(&btf, "task_struct", &["files"])?,
        files_fdt: field_offset(&btf, "files_struct", &["fdt"])?,
        fdtable_max_fds,
        fdtable_fd,
        file_inode: field_offset(&btf, "file", &["f_inode"])?,
        file_private_data: field_offset(&btf, "file", &["private_data"])?,
        file_f_op: field_offset(&btf, "file", &["f_op"])?,
        inode_mode: field_offset(&btf, "inode", &["i_mode"])?,
        socket_type,
        socket_sk,
        socket_ops,
        sk_family: sk("skc_family")?,
        sk_protocol: field_offset(&btf, "sock", &["sk_protocol"])?,
        sk_num: sk("skc_num")?,
        sk_dport: sk("skc_dport")?,
        sk_daddr: sk("skc_daddr")?,
        sk_rcv_saddr: sk("skc_rcv_saddr")?,
        sk_v6_daddr: sk_v6("skc_v6_daddr")?,
        sk_v6_rcv_saddr: sk_v6("skc_v6_rcv_saddr")?,
        file_count,
        file_count_kind,
    };
    Ok(KernelLayout {
        offsets,
        user_regs: knows_helper(&btf, "BPF_FUNC_task_pt_regs"),
        word_cast: word_cast(&btf),
    })
}

/// The ids for plain loads of kernel memory: the kfunc `bpf_rdonly_cast` (Linux 6.2),
/// which casts an address to a read-only pointer to a BTF type, and `atomic64_t`'s
/// struct, one 8-byte integer at offset 0, the type to cast to. None where the kernel
/// lacks either: the probes then read by helper calls.
fn word_cast(btf: &Btf) -> Option<WordCast> {
    let kfunc_id = btf
        .resolve_ids_by_name("bpf_rdonly_cast")
        .ok()?
        .into_iter()
        .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(Type::Func(_))))?;
    let type_id = btf
        .resolve_ids_by_name("atomic64_t")
        .ok()?
        .into_iter()
        .find_map(|id| match btf.resolve_type_by_id(id) {
            Ok(Type::Typedef(t)) => t.get_type_id(),
            _ => None,
        })?;
    let Ok(Type::Struct(s)) = btf.resolve_type_by_id(type_id) else {
        return None;
    };
    let one_word = s.size() == 8
        && s.members.len() == 1
        && s.members[0].bit_offset() == 0
        && s.members[0].bitfield_size().unwrap_or(0) == 0
        && matches!(
            btf.chained_type_iter(&s.members[0])
                .find(|t| !matches!(t, Type::Typedef(_) | Type::Const(_) | Type::Volatile(_))),
            Some(Type::Int(i)) if i.size() == 8
        );
    one_word.then_some(WordCast { kfunc_id, type_id })
}

/// Whether the kernel's `enum bpf_func_id` names `helper`: the helpers a kernel offers are
/// the ones it numbers.
fn knows_helper(btf: &Btf, helper: &str) -> bool {
    btf.resolve_types_by_name("bpf_func_id")
        .unwrap_or_default()
        .iter()
        .any(|t| match t {
            Type::Enum(e) => e
                .members
                .iter()
                .any(|m| btf.resolve_name(m).is_ok_and(|name| name == helper)),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_no_btf_and_a_garbage_file_is_a_bad_one() {
        let missing = Path::new("/nonexistent/vmlinux");
        assert!(matches!(resolve(missing), Err(OffsetError::NoBtf { .. })));
        let garbage = std::env::temp_dir().join(format!("not-btf-{}", std::process::id()));
        std::fs::write(&garbage, b"this is not BTF").unwrap();
        let err = resolve(&garbage).unwrap_err();
        std::fs::remove_file(&garbage).unwrap();
        assert!(matches!(err, OffsetError::BadBtf { .. }), "{err}");
        assert!(err.to_string().contains("--btf"), "{err}");
    }

    /// Reads the BTF of the kernel the tests run on: every machine this project supports
    /// has one, so a missing file is a failure, not a skip.
    #[test]
    fn resolves_every_offset_on_the_running_kernel() {
        let layout =
            resolve(Path::new("/sys/kernel/btf/vmlinux")).expect("the running kernel's BTF");
        let o = layout.offsets;
        // Fields that lead their struct on every kernel.
        assert_eq!(o.sk_daddr, 0, "skc_daddr opens struct sock_common");
        assert_eq!(o.sk_rcv_saddr, 4);
        // Declared side by side in every kernel's task_struct.
        assert!(o.task_pid > 0 && o.task_tgid == o.task_pid + 4);
        assert!(o.task_files > 0 && o.sk_family > 0 && o.sk_protocol > o.sk_family);
        assert!(o.sk_v6_daddr > 0 && o.socket_ops > o.socket_sk && o.socket_sk > o.socket_type);
        assert!(
            o.file_count > 0
                && [FILE_COUNT_IS_COUNT, FILE_COUNT_IS_REF].contains(&o.file_count_kind)
        );
    }

    /// This kernel (6.2 or later, as the machines this suite runs on) has the kfunc and
    /// a one-word atomic64_t.
    #[test]
    fn the_running_kernel_offers_plain_loads() {
        let btf = Btf::from_file("/sys/kernel/btf/vmlinux").expect("the running kernel's BTF");
        let cast = word_cast(&btf).expect("bpf_rdonly_cast and atomic64_t");
        assert_ne!(cast.kfunc_id, cast.type_id);
        assert!(
            matches!(btf.resolve_type_by_id(cast.type_id), Ok(Type::Struct(s)) if s.size() == 8)
        );
    }

    /// The oldest helper of all is named by every kernel; one that does not exist by none.
    #[test]
    fn helpers_are_known_by_the_kernels_numbering() {
        let btf = Btf::from_file("/sys/kernel/btf/vmlinux").expect("the running kernel's BTF");
        assert!(knows_helper(&btf, "BPF_FUNC_map_lookup_elem"));
        assert!(!knows_helper(&btf, "BPF_FUNC_map_lookup_elem_"));
        assert!(!knows_helper(&btf, "BPF_FUNC_no_such_helper"));
    }

    #[test]
    fn fields_outside_the_head_the_probes_read_are_refused() {
        let socket = [("type", 4, 2), ("sk", 24, 8), ("ops", 32, 8)];
        check_head("socket", 128, 40, &socket).expect("the layout of every supported kernel");
        let moved = [("type", 4, 2), ("sk", 32, 8), ("ops", 40, 8)];
        let err = check_head("socket", 128, 40, &moved)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("socket.ops") && err.contains("40..48"),
            "{err}"
        );
        let straddling = [("max_fds", 6, 4)];
        assert!(check_head("fdtable", 56, 16, &straddling).is_err());
        assert!(check_head("fdtable", 8, 16, &[("max_fds", 0, 4)]).is_err());
    }

    #[test]
    fn missing_btf_names_the_fix() {
        let err = resolve(Path::new("/nonexistent/vmlinux"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CONFIG_DEBUG_INFO_BTF") && err.contains("--btf"),
            "{err}"
        );
    }
}
