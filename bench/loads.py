"""Load generators: wrk in a closed loop (as fast as the service answers) and oha at a
fixed rate (-q), each parsed into requests completed, throughput and latency."""

import json
import re
import resource
import subprocess

WRK_THREADS = 2
CONNECTIONS = 50


def _seconds(text):
    """wrk's latency text ("835.59us", "1.45ms", "1.2s") in seconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _run_counting_cpu(argv):
    """Runs a load generator to its end; its output, and the CPU time (user and kernel)
    it used, from the resource usage of the children this process waited for in between
    (only it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def wrk(url, seconds):
    out, cpu = _run_counting_cpu(
        ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url])
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    elapsed = float(done.group(2)) * (1e-3 if done.group(3) == "ms" else 1.0)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(done.group(1)),
        "seconds": elapsed,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _seconds(re.search(r"\s50%\s+(\S+)", out).group(1)) * 1e3,
        "p99_ms": _seconds(re.search(r"\s99%\s+(\S+)", out).group(1)) * 1e3,
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
        "load_cpu_seconds": cpu,
    }


def oha(url, rate, seconds, connections=CONNECTIONS):
    """Requests at `rate` per second for `seconds`; latency corrected for coordinated
    omission (a request that waits for a slow one counts from when it was due)."""
    out, cpu = _run_counting_cpu(
        ["oha", "--no-tui", "--output-format", "json", "--latency-correction",
         "-q", str(rate), "-z", f"{seconds}s", "-c", str(connections), url])
    r = json.loads(out)
    codes = r.get("statusCodeDistribution", {})
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    error_kinds = r.get("errorDistribution", {})
    errors = sum(error_kinds.values()) + sum(
        n for code, n in codes.items() if not code.startswith("2"))
    # Requests in flight when the duration ends are cancelled and counted as errors,
    # though the server may already have answered them.
    aborted = sum(n for kind, n in error_kinds.items() if "deadline" in kind)
    pct = r["latencyPercentiles"]
    return {
        "requests": ok,
        "seconds": r["summary"]["total"],
        "rps": ok / r["summary"]["total"],
        "p50_ms": pct["p50"] * 1e3,
        "p99_ms": pct["p99"] * 1e3,
        "errors": errors,
        "aborted_at_deadline": aborted,
        "load_cpu_seconds": cpu,
    }
