"""make bench: interleaved runs of every mode against every target, closed loop and at
fixed rates, then a 60 s run at a fixed rate, a many-connections memory check and the
connection table's housekeeping (bench/housekeeping.rs) and the reader's own work per
exchange (bench/reader_cost.rs: timed, and its instructions counted under callgrind), and
what each mode adds to a service's syscalls, timed in one thread (bench/syscall_cost.rs).
Each run also keeps the CPU the service's processes and the load generator used over the
load. Raw figures go to bench/results/<time>.json; report.py turns them into the table and
plot.

Settings (environment): BENCH_RUNS (5), BENCH_SECONDS (5, per load), BENCH_RATES
(requests/s against nginx, "5000,10000,20000,40000"), BENCH_DEMO_RATES ("20000"),
BENCH_SOAK_SECONDS (60), BENCH_SOAK_RATE (20000), BENCH_SOAK_RUNS (7 interleaved runs of
baseline, hooks-only and full, and empty-hooks when asked for), BENCH_IDLE_SECONDS (10), BENCH_CONNS (10000),
BENCH_CONN_CAP (4096; each round also runs a quarter of it), BENCH_CONN_RUNS (3 rounds),
BENCH_SYSCALL_RUNS (7),
BENCH_TARGETS ("nginx,demo-server"; empty for none), BENCH_MODES (all four;
add other-port for the cost of a --port filter that selects none of this traffic, and
full-before with BENCH_BEFORE=<an older http-profiler binary> to compare two builds,
which then also run attached at once (bench/paired.py; BENCH_PAIRED_RUNS, 6, and
BENCH_PAIRED_RATE, 20000); full-no-raw and full-null split full capture's cost: without the raw payload, and with
the lines written to /dev/null; empty-hooks is the floor that attaching sets: a program
that does nothing on each of the profiler's tracepoints, Linux 6.6 or later). The table
names the run's command with every BENCH_ setting it had; BENCH_COMMAND replaces that text."""

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import bpfstats
import conns
import loads
import observers
import paired
import report
import targets

HERE = Path(__file__).resolve().parent


def env_list(name, default):
    return [x for x in os.environ.get(name, default).split(",") if x]


RUNS = int(os.environ.get("BENCH_RUNS", 5))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
RATES = [int(r) for r in env_list("BENCH_RATES", "5000,10000,20000,40000")]
DEMO_RATES = [int(r) for r in env_list("BENCH_DEMO_RATES", "20000")]
SOAK_SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", 60))
SOAK_RATE = int(os.environ.get("BENCH_SOAK_RATE", 20000))
SOAK_RUNS = int(os.environ.get("BENCH_SOAK_RUNS", 7))
IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", 10))
CONNS = int(os.environ.get("BENCH_CONNS", 10000))
CONN_CAP = int(os.environ.get("BENCH_CONN_CAP", 4096))
CONN_RUNS = int(os.environ.get("BENCH_CONN_RUNS", 3))
TARGETS = env_list("BENCH_TARGETS", "nginx,demo-server")
MODES = env_list("BENCH_MODES", ",".join(observers.MODES))
SYSCALL_RUNS = int(os.environ.get("BENCH_SYSCALL_RUNS", 7))


def settle(pid, timeout=60):
    """Waits until an observer has caught up with what the load left (its CPU time stops
    growing), so its cost is counted in full."""
    last = observers.cpu_seconds(pid)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        now = observers.cpu_seconds(pid)
        if now - last < 0.005:
            return
        last = now


@contextlib.contextmanager
def observing(mode, target, workdir, idle_pid):
    """The observer of `mode`, stopped if the run ends in an error or a signal (the
    normal end reads its figures through `finish`)."""
    obs = observers.start(mode, target, workdir, idle_pid)
    try:
        yield obs
    except BaseException:
        obs.stop()
        raise


def stop_on_signals():
    """SIGTERM and SIGHUP end the benchmark as Ctrl-C does: through the blocks that stop
    the services, load generators and observers it started, none of which is left
    running."""
    def stop(signum, _frame):
        raise SystemExit(f"bench: stopped by {signal.Signals(signum).name}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop)


def measure(target, mode, workdir, idle_pid, load, bpf):
    """One run of one mode under one load; returns its figures."""
    with observing(mode, target, workdir, idle_pid) as obs:
        loadavg = os.getloadavg()[0]
        cpu0 = observers.cpu_seconds(obs.pid) if obs.pid else 0.0
        has_programs = isinstance(obs, (observers.Profiler, observers.EmptyHooks))
        bpf0 = bpfstats.snapshot(obs.pid) if bpf and has_programs else None
        # The service's own CPU over the load (its processes' and threads' schedstat: the
        # kernel's work in its syscalls and the probes that run in them included), so that
        # a closed loop's loss shows where it lies.
        service = observers.pids_of(target.proc)
        service0 = sum(observers.cpu_seconds(p) for p in service)
        result = load()
        result["service_cpu_seconds"] = sum(observers.cpu_seconds(p) for p in service) - service0
        if obs.pid:
            settle(obs.pid)
        cpu = observers.cpu_seconds(obs.pid) - cpu0 if obs.pid else None
        bpf_runs = bpfstats.delta(bpf0, bpfstats.snapshot(obs.pid)) if bpf0 is not None else None
        result.update(obs.finish())
    result.update(target=target.name, mode=mode, loadavg=loadavg, cpu_seconds=cpu)
    if bpf_runs is not None:
        result["bpf_ns"] = sum(t for t, _ in bpf_runs.values())
        result["bpf_runs"] = {k: v for k, v in bpf_runs.items() if v[1]}
    return result


def idle_cost(target, workdir, idle_pid, seconds):
    """What the profiler costs while the service it watches is idle: CPU and wakeups."""
    with observing("full", target, workdir, idle_pid) as obs:
        time.sleep(1)
        cpu0, woke0 = observers.cpu_seconds(obs.pid), observers.wakeups(obs.pid)
        time.sleep(seconds)
        cpu, woke = observers.cpu_seconds(obs.pid) - cpu0, observers.wakeups(obs.pid) - woke0
        obs.finish()
    return {"seconds": seconds, "millicores": cpu * 1000 / seconds, "wakeups_per_second": woke / seconds}


def rotated(items, k):
    k %= len(items)
    return items[k:] + items[:k]


def example_binary(name):
    """Where cargo puts the release build of bench/NAME.rs."""
    return HERE.parent / "target" / "release" / "examples" / name


EXAMPLES = ("reader_cost", "housekeeping", "syscall_cost")


def build_examples():
    """Builds the bench/*.rs programs the run uses, before its first measurement: built
    when their turn came, at the end, they took in whatever the source had become by
    then."""
    for name in EXAMPLES:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--locked", "--example", name],
                       cwd=HERE.parent, check=True)


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE).stdout.strip()


def source_state():
    """The commit, and the tracked files' differences from it (the README and the
    results, which a run writes, aside): equal states are the same source."""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "changes": git("diff", "HEAD", "--", ":/", ":(exclude,top)README.md",
                           ":(exclude,top)bench/results")}


def example(name, runs):
    """Runs bench/NAME.rs (`build_examples` built it) and returns what each of `runs`
    runs printed (JSON)."""
    binary = example_binary(name)
    return [json.loads(subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout)
            for _ in range(runs)]


def housekeeping(runs=3):
    """bench/housekeeping.rs: the connection table's once-a-second pass over a full
    table, busy and idle; the median of `runs` runs of each figure."""
    results = example("housekeeping", runs)
    return {"connections": results[0]["connections"], "runs": runs,
            **{key: statistics.median(r[key] for r in results)
               for key in ("busy_ms_per_pass", "idle_ms_per_pass")}}


def reader_cost(runs=3):
    """bench/reader_cost.rs: the reader's parsing and rendering per exchange, without a
    kernel; the median of `runs` runs (each the best of its rounds)."""
    results = example("reader_cost", runs)
    return {"exchanges": results[0]["exchanges"], "runs": runs,
            "ns_per_exchange": statistics.median(r["ns_per_exchange"] for r in results)}


class SyscallLoop:
    """bench/syscall_cost.rs, started and waiting: a target for `observers.start` (its
    process and its loopback port) until `measure` lets it run."""

    name = "syscall_cost"

    def __init__(self, binary):
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.port = json.loads(self.proc.stdout.readline())["port"]

    def measure(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        figures = json.loads(self.proc.stdout.readline())
        if self.proc.wait(timeout=60) != 0:
            raise RuntimeError(f"bench/syscall_cost.rs failed ({self.proc.returncode})")
        return figures


def syscall_cost(workdir, idle_pid, runs):
    """bench/syscall_cost.rs under each mode, in `runs` interleaved rounds: per round and
    mode, ns per write to /dev/null, per getppid and per loopback HTTP exchange, and for
    the profilers the exchanges captured whole."""
    binary = example_binary("syscall_cost")
    results = []
    for run in range(runs):
        for mode in rotated(MODES, run):
            print(f"bench: syscall cost, round {run + 1} of {runs}: {mode}", flush=True)
            loop = SyscallLoop(binary)
            try:
                with observing(mode, loop, workdir, idle_pid) as obs:
                    figures = loop.measure()
                    figures.update(obs.finish(), mode=mode, run=run)
            finally:
                observers.kill_if_running(loop.proc)
            results.append(figures)
    return results


def reader_instructions(exchanges=5000, options=()):
    """bench/reader_cost.rs under callgrind: the instructions the reader executes per
    exchange. Counted, not timed, so the same on every run of one build on one kind of
    CPU (within 0.1%), whatever else the machine does; the difference between a run of
    2N exchanges and one of N leaves out start-up and the first exchanges. Runs the binary
    `reader_cost()` has just built."""
    binary = example_binary("reader_cost")
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is missing: run bench/setup.sh (make bench does) or apt install valgrind")

    def collected(n):
        run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              str(binary), str(n), "1", *options],
                             capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", run.stderr)
        if not found:
            raise RuntimeError(f"callgrind printed no instruction count: {run.stderr[-2000:]}")
        return int(found.group(1))

    return (collected(2 * exchanges) - collected(exchanges)) / exchanges


def cpu_model():
    """The CPU's model name, as /proc/cpuinfo gives it."""
    m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return m.group(1).strip() if m else platform.machine()


def mitigations():
    """The CPU vulnerabilities the kernel mitigates (sysfs), those "Not affected" left out:
    retpolines and return thunks make every syscall and every helper call dearer, so
    absolute figures compare only between machines that mitigate alike."""
    found = {}
    for f in sorted(Path("/sys/devices/system/cpu/vulnerabilities").glob("*")):
        text = f.read_text().strip()
        if text != "Not affected":
            found[f.name] = text
    return found


def command_line():
    """The command that made this run, with every BENCH_ setting it was given, so that the
    table names what reproduces it (BENCH_COMMAND overrides, for a run started another way)."""
    if "BENCH_COMMAND" in os.environ:
        return os.environ["BENCH_COMMAND"]
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    return " ".join(settings + ["make bench"])


def main():
    if os.geteuid() != 0:
        sys.exit("bench: the benchmark loads eBPF probes and runs tcpdump: run it as root (sudo make bench)")
    stop_on_signals()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    raw_path = HERE / "results" / f"{stamp}.json"
    build_examples()
    source = source_state()
    meta = {
        "stamp": stamp,
        "command": command_line(),
        "commit": source["commit"] + (" with uncommitted changes" if source["changes"] else ""),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mitigations": mitigations(),
        "settings": {"runs": RUNS, "seconds": SECONDS, "rates": RATES, "demo_rates": DEMO_RATES,
                     "soak_seconds": SOAK_SECONDS, "soak_rate": SOAK_RATE, "soak_runs": SOAK_RUNS,
                     "idle_seconds": IDLE_SECONDS,
                     "conns": CONNS,
                     "conn_cap": CONN_CAP, "conn_runs": CONN_RUNS, "wrk_connections": loads.CONNECTIONS},
        "loadavg_start": os.getloadavg(),
    }
    runs = []

    def save():
        raw_path.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))

    with tempfile.TemporaryDirectory(prefix="http-profiler-bench-", dir="/dev/shm") as tmp:
        workdir = Path(tmp)
        idle = subprocess.Popen(["sleep", "infinity"])
        started = []
        try:
            for name in TARGETS:
                started.append({"nginx": targets.nginx, "demo-server": targets.demo_server}[name](workdir))
            total = RUNS * sum(len(MODES) * (1 + len(RATES if t.name == "nginx" else DEMO_RATES))
                               for t in started)
            n = 0
            for run in range(RUNS):
                for target in started:
                    rates = RATES if target.name == "nginx" else DEMO_RATES
                    points = [("closed", None)] + [("rate", r) for r in rates]
                    for kind, rate in points:
                        for mode in rotated(MODES, run):
                            n += 1
                            print(f"bench: [{n}/{total}] run {run + 1}: {target.name}, {mode}, "
                                  f"{'closed loop' if rate is None else f'{rate}/s'}", flush=True)
                            if rate is None:
                                r = measure(target, mode, workdir, idle.pid,
                                            lambda: loads.wrk(target.url, SECONDS), bpf=False)
                            else:
                                with bpfstats.StatsEnabled():
                                    r = measure(target, mode, workdir, idle.pid,
                                                lambda: loads.oha(target.url, rate, SECONDS), bpf=True)
                            r.update(kind=kind, rate=rate, run=run)
                            runs.append(r)
                            save()
            nginx = next((t for t in started if t.name == "nginx"), None)
            if nginx and SOAK_SECONDS > 0:
                # Runs in rotating order, so a slow spell of the machine falls on every
                # mode; a single 60 s pair swung the p99 ratio by tens of percent, and
                # the median of three still moved from +6% to +34% between two tables
                # while full capture's own p99 stayed put: five, like every other point.
                # hooks-only shows how much of the added latency attaching alone costs.
                # BPF run-time accounting stays off: it costs only the profiler's side
                # and is not how the profiler runs.
                # empty-hooks, when asked for, shows what attaching costs with no program work.
                soak_modes = [m for m in ("baseline", "empty-hooks", "hooks-only", "full") if m in MODES]
                for run in range(SOAK_RUNS):
                    for mode in rotated(soak_modes, run):
                        print(f"bench: {SOAK_SECONDS} s at {SOAK_RATE}/s, round {run + 1} of "
                              f"{SOAK_RUNS}: nginx, {mode}", flush=True)
                        r = measure(nginx, mode, workdir, idle.pid,
                                    lambda: loads.oha(nginx.url, SOAK_RATE, SOAK_SECONDS), bpf=False)
                        r.update(kind="soak", rate=SOAK_RATE, run=run)
                        runs.append(r)
                        save()
            if nginx and IDLE_SECONDS > 0:
                print(f"bench: {IDLE_SECONDS} s with no traffic: nginx, full", flush=True)
                meta["idle"] = idle_cost(nginx, workdir, idle.pid, IDLE_SECONDS)
                save()
            if nginx and CONNS > 0:
                # Each round also runs a table a quarter the size: every request still evicts,
                # so the two CPU figures differ only by what an eviction costs in a larger
                # table. One pair of runs swung by half from one table to the next; the
                # report takes the median over the rounds, the two sizes in turn first.
                meta["conns_rounds"] = []
                for run in range(CONN_RUNS):
                    for cap in rotated([CONN_CAP, CONN_CAP // 4], run):
                        print(f"bench: {CONNS} kept-alive connections, --max-connections {cap}, "
                              f"round {run + 1} of {CONN_RUNS}", flush=True)
                        meta["conns_rounds"].append(dict(conns.check(nginx, workdir, CONNS, cap),
                                                         run=run))
                        save()
            if SYSCALL_RUNS > 0:
                meta["syscall_cost"] = syscall_cost(workdir, idle.pid, SYSCALL_RUNS)
                save()
            if nginx and os.environ.get("BENCH_BEFORE") and paired.RUNS > 0:
                meta["paired"] = paired.run(nginx, workdir, os.environ["BENCH_BEFORE"],
                                            SECONDS, settle)
                save()
            print("bench: housekeeping of a full connection table", flush=True)
            meta["housekeeping"] = housekeeping()
            save()
            print("bench: the reader's work per exchange, without a kernel", flush=True)
            meta["reader_cost"] = reader_cost()
            meta["reader_cost"]["instructions_per_exchange"] = reader_instructions()
            meta["reader_cost"]["instructions_per_exchange_no_raw"] = \
                reader_instructions(options=["--no-raw-payload"])
            save()
        finally:
            for t in started:
                t.stop()
            idle.kill()
            idle.wait()
    meta["loadavg_end"] = os.getloadavg()
    # The profiler and the examples were built before the first measurement; a source
    # that changed since may still have been built into them by a rebuild during the run.
    meta["source_changed_during_run"] = source_state() != source
    save()
    report.write(raw_path)


if __name__ == "__main__":
    main()
