"""Two builds attached at once (BENCH_BEFORE): both capture the same nginx traffic at a
fixed rate, so the machine's noise (other tenants, frequency, the load generator) falls
on both alike, and each build's BPF time per exchange is read from its own programs
(bpfstats attributes programs to the process that holds them).

The programs of the build attached second run after the first's on every syscall, on
caches the first has just warmed (the same user bytes, the same task and socket): the
second position costs less. So the builds take each position in turn, and a pair of
runs, one in each order, gives the ratio without the position: with `f` what the second
position does and `R` the true ratio this/before, the run with this build second
measures f*R and the other R/f, whose geometric mean is R and whose ratio is f^2."""

import math
import os
import statistics

import bpfstats
import loads
import observers

RUNS = int(os.environ.get("BENCH_PAIRED_RUNS", 6))
RATE = int(os.environ.get("BENCH_PAIRED_RATE", 20000))


def one_run(target, workdir, before, this_first, seconds, settle):
    """Both builds capturing `target`, `this_first` deciding which attaches first; per
    build, BPF ns and observer CPU seconds per exchange."""
    selected = [a for p in observers.pids_of(target.proc) for a in ("--pid", str(p))]
    builds = [("this", observers.PROFILER), ("before", before)]
    if not this_first:
        builds.reverse()
    started = []
    try:
        for name, binary in builds:
            # A directory each: the observers name their files alike.
            (workdir / name).mkdir(exist_ok=True)
            started.append((name, observers.Profiler(workdir / name, selected, binary)))
        with bpfstats.StatsEnabled():
            bpf0 = {name: bpfstats.snapshot(obs.pid) for name, obs in started}
            cpu0 = {name: observers.cpu_seconds(obs.pid) for name, obs in started}
            load = loads.oha(target.url, RATE, seconds)
            bpf1 = {name: bpfstats.snapshot(obs.pid) for name, obs in started}
        for _, obs in started:
            settle(obs.pid)
        figures = {"this_first": this_first, "requests": load["requests"], "rate": RATE}
        for name, obs in started:
            runs = bpfstats.delta(bpf0[name], bpf1[name])
            cpu = observers.cpu_seconds(obs.pid) - cpu0[name]
            done = obs.finish()
            figures[name] = {
                "bpf_ns_per_exchange": sum(t for t, _ in runs.values()) / load["requests"],
                "cpu_us_per_exchange": cpu * 1e6 / load["requests"],
                "captured": done.get("captured"),
                "drops": done["drops"],
            }
        return figures
    except BaseException:
        for _, obs in started:
            obs.stop()
        raise


def run(target, workdir, before, seconds, settle, runs=RUNS):
    """`runs` runs, rounded up to an even number so that each order comes as often,
    alternating the order."""
    total = runs + runs % 2
    results = []
    for i in range(total):
        this_first = i % 2 == 1
        print(f"bench: both builds at once, {RATE}/s, run {i + 1} of {total}: "
              f"{'this build' if this_first else 'BENCH_BEFORE'} attached first", flush=True)
        results.append(one_run(target, workdir, before, this_first, seconds, settle))
    return results


def summary(results):
    """Per pair of consecutive runs (one in each order): the ratio this/before of BPF time
    and of observer CPU per exchange with the position taken out, and the factor the
    second position applies; medians over the pairs."""
    def ratio(r, key):
        return r["this"][key] / r["before"][key]
    pairs = list(zip(results[0::2], results[1::2]))
    out = {"pairs": len(pairs), "rate": results[0]["rate"]}
    for key in ("bpf_ns_per_exchange", "cpu_us_per_exchange"):
        out[key] = {
            "ratio": statistics.median(math.sqrt(ratio(a, key) * ratio(b, key)) for a, b in pairs),
            "second_position": statistics.median(
                math.sqrt(ratio(a, key) / ratio(b, key)) for a, b in pairs),
            "this": statistics.median(r["this"][key] for r in results),
            "before": statistics.median(r["before"][key] for r in results),
        }
    return out
