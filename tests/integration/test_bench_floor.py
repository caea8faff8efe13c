"""bench/empty_hooks.py, behind `make bench`'s empty-hooks mode: it must find the
tracepoints the profiler attaches and run a program on every one of them, or the floor
it reports is not the one the profiler stands on."""

import json
import signal
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, our_programs

sys.path.insert(0, str(ROOT / "bench"))
import empty_hooks  # noqa: E402

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def run_count(prog_id):
    shown = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog_id)],
                           capture_output=True, text=True, check=True)
    return json.loads(shown.stdout).get("run_cnt", 0)


def test_empty_hooks_run_on_each_tracepoint_the_profiler_attaches(start_profiler, tmp_path):
    profiler = start_profiler("--pid", "1")
    held = empty_hooks.tracepoints_of(profiler.proc.pid)
    profiler.stop()
    # The exits of the data syscalls, and close at entry, on every way of hooking.
    assert {"sys_exit_read", "sys_exit_write", "sys_exit_writev", "sys_exit_recvfrom",
            "sys_exit_sendmsg", "sys_enter_close"} <= set(held), held

    hooks = subprocess.Popen([sys.executable, empty_hooks.__file__, *held],
                             stdout=subprocess.PIPE, text=True)
    before = STATS.read_text()
    try:
        assert hooks.stdout.readline().strip() == f"attached {len(held)}"
        (prog_id,) = our_programs(hooks.pid)
        STATS.write_text("1")
        start = run_count(prog_id)
        # Each write's exit runs the program once: the hooks are live, not just held.
        with open(tmp_path / "writes", "w") as f:
            for _ in range(200):
                f.write("x")
                f.flush()
        assert run_count(prog_id) - start >= 200
    finally:
        STATS.write_text(before)
        hooks.send_signal(signal.SIGINT)
        assert hooks.wait(timeout=30) == 0
