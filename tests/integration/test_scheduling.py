"""The reader runs under SCHED_IDLE while it keeps up, and its watchdog raises it to
SCHED_BATCH when CPUs that other threads keep busy starve it (src/standing.rs)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import of_port

SCHED_OTHER, SCHED_BATCH, SCHED_IDLE = 0, 3, 5
RAISED = "reader raised to SCHED_BATCH"
LOWERED = "back to SCHED_IDLE"


def policies(pid):
    """Thread name -> scheduling policy, for each thread of `pid` (/proc, field 41)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        found[name] = int(stat.rsplit(")", 1)[1].split()[38])
    return found


def test_the_reader_runs_as_sched_idle_beside_a_watchdog(start_profiler):
    profiler = start_profiler()
    threads = policies(profiler.proc.pid)
    assert threads.get("http-profiler") == SCHED_IDLE, threads
    assert threads.get("reader-watchdog") == SCHED_OTHER, threads
    profiler.stop()
    assert profiler.returncode == 0


def test_a_reader_starved_by_busy_cpus_is_raised_and_loses_nothing(start_profiler, demo_server, monkeypatch):
    _, port = demo_server
    monkeypatch.setenv("RUST_LOG", "warn,http_profiler::standing=debug")
    profiler = start_profiler("--no-raw-payload")
    # Threads that never sleep, one per CPU, of the normal policy: a SCHED_IDLE thread
    # gets no CPU beside them, so without its watchdog the reader would read nothing
    # while wrk's records overflow the ring buffer.
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count())]
    try:
        time.sleep(0.5)
        r = subprocess.run(["wrk", "-t", "1", "-c", "8", "-d", "4s", f"http://127.0.0.1:{port}/healthz"],
                           capture_output=True, text=True, check=True)
        raised_while_busy = policies(profiler.proc.pid).get("http-profiler")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    completed = int(re.search(r"(\d+) requests in", r.stdout).group(1))
    assert "Socket errors" not in r.stdout, r.stdout
    assert completed > 1000, r.stdout
    # Caught up on idle CPUs, it goes back once its hold (a second) is over.
    deadline = time.time() + 10
    while policies(profiler.proc.pid).get("http-profiler") != SCHED_IDLE:
        assert time.time() < deadline, profiler.stderr_path.read_text()
        time.sleep(0.1)
    lines = profiler.stop()
    s = profiler.summary()
    assert s["dropped"] == 0 and s["gap_bytes"] == 0, s
    # wrk counts the responses it read before its deadline; each is a captured response.
    client = [l for l in of_port(lines, port) if l["comm"] == "wrk" and l["direction"] == "recv"
              and "status_code" in l and not l["incomplete"]]
    assert len(client) == completed, (len(client), completed)
    assert raised_while_busy == SCHED_BATCH, raised_while_busy
    log = profiler.stderr_path.read_text()
    assert RAISED in log and LOWERED in log, log
