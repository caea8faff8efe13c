"""Kernel-side run time of a process's BPF programs (kernel.bpf_stats_enabled), read with
bpftool and attributed through the process's fds (/proc/PID/fdinfo names each program's
id), so other tools' programs on the same host are not counted."""

import json
import re
import subprocess
from pathlib import Path

SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


class StatsEnabled:
    """Turns run-time accounting on for a block (it costs two clock reads per program
    run, so throughput runs leave it off) and restores the previous setting."""

    def __enter__(self):
        self.before = SYSCTL.read_text().strip()
        SYSCTL.write_text("1")

    def __exit__(self, *exc):
        SYSCTL.write_text(self.before)


def fdinfo_ids(pid, field):
    """The ids a process's fds name in `field` of /proc/PID/fdinfo (prog_id, link_id)."""
    ids = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            m = re.search(rf"^{field}:\s+(\d+)", info.read_text(), re.M)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    return ids


def snapshot(pid):
    """{program name: (run_time_ns, run_cnt)} for the programs `pid` holds."""
    ids = fdinfo_ids(pid, "prog_id")
    progs = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True,
                                      text=True, check=True).stdout)
    out = {}
    for p in progs:
        if p["id"] in ids:
            t, n = out.get(p["name"], (0, 0))
            out[p["name"]] = (t + p.get("run_time_ns", 0), n + p.get("run_cnt", 0))
    return out


def delta(before, after):
    """Run time (ns) and runs per program between two snapshots."""
    return {name: (t - before.get(name, (0, 0))[0], n - before.get(name, (0, 0))[1])
            for name, (t, n) in after.items()}
