"""Start-up failures: exit status 2 and one line that names the fix."""

import subprocess

from conftest import BINARY


def run(*args, user=None):
    cmd = [str(BINARY), *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "panicked" not in r.stderr and "backtrace" not in r.stderr.lower()
    return lines[0]


def test_not_root_names_the_fix():
    line = one_line_error(run("--output", "-", user=65534))
    assert "run as root" in line and "CAP_BPF" in line


def test_unwritable_output_names_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(run("--output", str(blocker / "events.jsonl")))
    assert "--output" in line and str(blocker) in line


def test_missing_btf_names_the_fix(tmp_path):
    line = one_line_error(run("--output", str(tmp_path / "o.jsonl"), "--btf", "/nonexistent/vmlinux"))
    assert "CONFIG_DEBUG_INFO_BTF" in line and "--btf" in line


def test_bad_ring_buffer_size_is_refused():
    r = run("--ring-buffer-bytes", "100000")
    assert r.returncode == 2 and "power of two" in r.stderr


def test_unmounted_tracefs_is_mounted_by_the_profiler(start_profiler):
    mounted = lambda: "/sys/kernel/tracing " in open("/proc/mounts").read()
    if mounted():
        subprocess.run(["umount", "/sys/kernel/tracing"], check=True)
    assert not mounted()
    profiler = start_profiler()
    assert mounted()
    profiler.stop()
    assert profiler.returncode == 0
