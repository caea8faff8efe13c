"""What watches the traffic in each mode: nothing (baseline), http-profiler with its
probes attached but this traffic filtered out (hooks-only), http-profiler capturing the
service (full), or tcpdump writing the service port's packets to a file; and on request
an empty program on each of the profiler's tracepoints (empty-hooks)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import empty_hooks

ROOT = Path(__file__).resolve().parents[1]
PROFILER = ROOT / "target/release/http-profiler"
CLK_TCK = os.sysconf("SC_CLK_TCK")

MODES = ["baseline", "hooks-only", "full", "tcpdump"]
# With BENCH_BEFORE=<another http-profiler binary>, "full-before" runs it as "full" runs
# this tree's: a change's effect, measured within the same interleaved runs.
# "other-port" (BENCH_MODES=...,other-port) selects by --port a port nothing uses, as a
# user watching one service does: every TCP syscall of the host that moves bytes walks
# from its fd to the socket to read the ports (before Linux 5.15, every one, at entry), so
# it costs more than hooks-only's pid check.
# Where full capture's CPU goes: "full-null" writes the lines to /dev/null (the profiler's
# own work, without the kernel storing its output: on a VM that hands freed memory back to
# its host, each new page of a growing file faults on the host when first written), and
# "full-no-raw" runs with --no-raw-payload (lines of about half the bytes).
# "empty-hooks" (BENCH_MODES=...,empty-hooks) attaches a program that does nothing to each
# tracepoint the profiler attaches on this kernel (bench/empty_hooks.py): the floor that
# attaching sets, below which no program on those hooks can go; hooks-only's distance from
# it is what the profiler's programs cost on their way out. It needs Linux 6.6 or later
# (to learn the profiler's tracepoints from its BPF links).
COMPARE_MODES = [MODES[0], "empty-hooks", *MODES[1:],
                 "other-port", "full-before", "full-no-raw", "full-null"]
DEV_NULL = Path("/dev/null")
UNUSED_PORT = 1


def cpu_seconds(pid):
    """CPU time of a process (user and kernel), in seconds: the sum over its threads of
    the scheduler's on-CPU time (/proc/PID/task/TID/schedstat, in ns). utime + stime
    count in clock ticks (10 ms): over a 5 s run at 5k exchanges/s that is a step of 4
    millicores per 10k/s, the size of the differences being measured. The profiler's and
    tcpdump's threads live as long as they do, so no exited thread's time is missed.
    Without schedstat (a kernel built without CONFIG_SCHED_INFO), utime + stime."""
    on_cpu_ns = _schedstat_sum(pid, 0)
    if on_cpu_ns is not None:
        return on_cpu_ns / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wakeups(pid):
    """Times the process's threads were put on a CPU (schedstat's third field)."""
    return _schedstat_sum(pid, 2) or 0


def _schedstat_sum(pid, field):
    """One field of /proc/PID/task/TID/schedstat summed over the live threads; None when
    no thread has schedstat."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[field])
            found = True
        except (OSError, ValueError, IndexError):
            continue
    return total if found else None


def file_bytes(path):
    """Size of an output file, 0 when none was written."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def kill_if_running(proc):
    """Kills a process the benchmark started, unless it has ended, and reaps it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def peak_rss_kib(pid):
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1))


def pids_of(proc):
    """A process and its children (nginx's workers)."""
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
    return [proc.pid] + [int(p) for p in out.split()]


def _wait_for(path, text, proc, what):
    deadline = time.time() + 60
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{what} did not start: {path.read_text(errors='replace')}")
        time.sleep(0.05)


class Observer:
    """A started observer. `pid` is None for the baseline."""

    pid = None
    proc = None

    def finish(self):
        return {}

    def stop(self):
        """Ends the observer without reading its figures: the benchmark is stopping."""
        if self.proc is not None:
            kill_if_running(self.proc)


class Baseline(Observer):
    pass


class Profiler(Observer):
    SUMMARY = re.compile(
        r"(\d+) messages written .*ring buffer: (\d+) records, (\d+) dropped; (\d+) bytes not captured; "
        r".* (\d+) connections evicted from a full table")

    def __init__(self, workdir, args, binary=PROFILER, output=None):
        self.output = output or workdir / "capture.jsonl"
        self.stderr_path = workdir / "profiler.stderr"
        self.to_file = self.output != DEV_NULL
        if self.to_file:
            self.output.unlink(missing_ok=True)
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [str(binary), "--output", str(self.output), *args],
                stdout=subprocess.DEVNULL, stderr=err)
        _wait_for(self.stderr_path, "capturing", self.proc, "http-profiler")
        self.pid = self.proc.pid

    def finish(self):
        rss = peak_rss_kib(self.pid)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        text = self.stderr_path.read_text(errors="replace")
        m = self.SUMMARY.search(text)
        if self.proc.returncode != 0 or not m:
            raise RuntimeError(f"http-profiler failed ({self.proc.returncode}): {text}")
        messages, records, dropped, gap_bytes, evicted = map(int, m.groups())
        figures = {"rss_kib": rss, "messages": messages, "records": records, "drops": dropped,
                   "gap_bytes": gap_bytes, "evicted": evicted}
        if self.to_file:
            # Lines sent to /dev/null cannot be read back: no completeness, no size.
            figures.update(captured=self.complete_responses(), output_bytes=file_bytes(self.output))
            self.output.unlink(missing_ok=True)
        return figures

    def complete_responses(self):
        """Responses the service sent that were written whole (not cut short, no gap):
        one per exchange, since only the service's processes are captured."""
        if not self.output.exists():
            return 0
        sends = subprocess.Popen(["grep", "-F", '"direction":"send"', str(self.output)],
                                 stdout=subprocess.PIPE)
        whole = subprocess.run(["grep", "-c", "-F", '"incomplete":false,"capture_gap":false}'],
                               stdin=sends.stdout, capture_output=True, text=True)
        sends.wait()
        return int(whole.stdout.strip() or 0)


class EmptyHooks(Observer):
    """bench/empty_hooks.py holding an empty program on the profiler's tracepoints. Its
    process holds the program, so its BPF run time is measured as the profiler's is; it
    sleeps, so its own CPU is about nil."""

    tracepoints = None

    def __init__(self, workdir, idle_pid):
        if EmptyHooks.tracepoints is None:
            # The tracepoints of this kernel's way of hooking, as the profiler attaches them.
            probe = Profiler(workdir, ["--pid", str(idle_pid)], output=DEV_NULL)
            try:
                EmptyHooks.tracepoints = empty_hooks.tracepoints_of(probe.pid)
            finally:
                probe.finish()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(empty_hooks.__file__)), *EmptyHooks.tracepoints],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("attached"):
            kill_if_running(self.proc)
            raise RuntimeError(f"bench/empty_hooks.py did not attach ({self.proc.returncode})")
        self.pid = self.proc.pid

    def finish(self):
        self.proc.send_signal(signal.SIGINT)
        if self.proc.wait(timeout=30) != 0:
            raise RuntimeError(f"bench/empty_hooks.py failed ({self.proc.returncode})")
        return {}


class Tcpdump(Observer):
    def __init__(self, workdir, port):
        self.file = workdir / "capture.pcap"
        self.stderr_path = workdir / "tcpdump.stderr"
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-s", "0", "-w", str(self.file), "tcp", "port", str(port)],
                stdout=subprocess.DEVNULL, stderr=err)
        _wait_for(self.stderr_path, "listening on", self.proc, "tcpdump")
        self.pid = self.proc.pid

    def finish(self):
        rss = peak_rss_kib(self.pid)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        text = self.stderr_path.read_text(errors="replace")
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        size = file_bytes(self.file)
        self.file.unlink(missing_ok=True)
        return {"rss_kib": rss, "drops": int(dropped.group(1)) if dropped else None,
                "output_bytes": size}


def start(mode, target, workdir, idle_pid):
    if mode == "baseline":
        return Baseline()
    if mode == "hooks-only":
        # Probes on every hook, but only an idle process selected: every syscall of the
        # service takes the filter's early exit. The floor that attaching sets.
        return Profiler(workdir, ["--pid", str(idle_pid)])
    if mode == "empty-hooks":
        return EmptyHooks(workdir, idle_pid)
    if mode == "other-port":
        return Profiler(workdir, ["--port", str(UNUSED_PORT)])
    if mode.startswith("full"):
        # The service's own processes, as an agent on its host would see them; the load
        # generator runs here too, but on a real deployment it would be elsewhere.
        selected = [a for p in pids_of(target.proc) for a in ("--pid", str(p))]
        if mode in ("full", "full-before"):
            binary = os.environ["BENCH_BEFORE"] if mode == "full-before" else PROFILER
            return Profiler(workdir, selected, binary)
        if mode == "full-no-raw":
            return Profiler(workdir, selected + ["--no-raw-payload"])
        if mode == "full-null":
            return Profiler(workdir, selected, output=DEV_NULL)
    if mode == "tcpdump":
        return Tcpdump(workdir, target.port)
    raise ValueError(mode)
