"""The floor that attaching syscall tracepoints sets: an empty program (`return 0`) on
each tracepoint the profiler attaches on this kernel, so that the "empty-hooks" mode
costs the services what any tool hooked where the profiler is hooked would cost before
its programs did any work. hooks-only against empty-hooks is then what the profiler's
own programs add on their way out (the pid check), and the rest of hooks-only's loss is
the kernel's: every syscall of every process takes the tracing path once one syscall
tracepoint is enabled, and each hooked one runs the tracepoint's dispatch.

As a module: `tracepoints_of(pid)` names the syscall tracepoints a process has BPF
programs on, from its BPF links (Linux 6.6 and later report a link's tracepoint).
As a script: `python3 empty_hooks.py sys_exit_read ...` attaches the empty program to
those tracepoints, prints "attached N" and holds them until SIGINT or SIGTERM."""

import ctypes
import os
import platform
import signal
import struct
import sys
from pathlib import Path

import bpfstats

_libc = ctypes.CDLL(None, use_errno=True)
_NR = {"x86_64": {"bpf": 321, "perf_event_open": 298},
       "aarch64": {"bpf": 280, "perf_event_open": 241}}[platform.machine()]

BPF_PROG_LOAD = 5
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_GET_FD_BY_ID = 30
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_LINK_TYPE_PERF_EVENT = 7
BPF_PERF_EVENT_TRACEPOINT = 5
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
TRACEFS = Path("/sys/kernel/tracing/events/syscalls")


def _check(result, what):
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    return _check(_libc.syscall(_NR["bpf"], cmd, buf, len(buf)), f"bpf({cmd})")


def _link_tracepoint(link_id):
    """The tracepoint a perf-event BPF link is attached to, or None for another kind."""
    fd = _bpf(BPF_LINK_GET_FD_BY_ID, struct.pack("<I", link_id))
    try:
        name = ctypes.create_string_buffer(128)
        # struct bpf_link_info: type, id, prog_id; at 16 perf_event: its type, and for a
        # tracepoint the name's buffer (at 24) and length (at 32).
        info = ctypes.create_string_buffer(256)
        struct.pack_into("<QI", info, 24, ctypes.addressof(name), len(name))
        _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, len(info), ctypes.addressof(info)))
        link_type = struct.unpack_from("<I", info, 0)[0]
        perf_type = struct.unpack_from("<I", info, 16)[0]
        if link_type != BPF_LINK_TYPE_PERF_EVENT or perf_type != BPF_PERF_EVENT_TRACEPOINT:
            return None
        return name.value.decode()
    finally:
        os.close(fd)


def tracepoints_of(pid):
    """The syscall tracepoints process `pid` holds BPF links on, sorted."""
    found = set()
    for link_id in bpfstats.fdinfo_ids(pid, "link_id"):
        tp = _link_tracepoint(link_id)
        if tp and (TRACEFS / tp).exists():
            found.add(tp)
    if not found:
        raise RuntimeError(f"process {pid} holds no BPF link on a syscall tracepoint (the kernel "
                           "reports a link's tracepoint from Linux 6.6)")
    return sorted(found)


def _empty_program():
    # r0 = 0; exit
    insns = ctypes.create_string_buffer(bytes.fromhex("b700000000000000" "9500000000000000"))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_TRACEPOINT, 2, ctypes.addressof(insns),
                       ctypes.addressof(license_), 0, 0, 0, 0, 0, b"empty_hook")
    return _bpf(BPF_PROG_LOAD, attr)


def _attach(prog_fd, tracepoint):
    tp_id = int((TRACEFS / tracepoint / "id").read_text())
    # struct perf_event_attr, its first 64 bytes (PERF_ATTR_SIZE_VER0): type, size,
    # config, sample_period, sample_type, read_format, flags, wakeup_events.
    attr = ctypes.create_string_buffer(struct.pack("<IIQQQQQII", PERF_TYPE_TRACEPOINT, 64, tp_id,
                                                   1, 0, 0, 0, 1, 0) + bytes(8), 64)
    fd = _check(_libc.syscall(_NR["perf_event_open"], attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC),
                f"perf_event_open({tracepoint})")
    _check(_libc.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd), f"attaching to {tracepoint}")
    _check(_libc.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0), f"enabling {tracepoint}")
    return fd


def main(tracepoints):
    prog = _empty_program()
    fds = [_attach(prog, tp) for tp in tracepoints]
    print(f"attached {len(fds)}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main(sys.argv[1:])
