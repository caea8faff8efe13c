"""Turns a raw results file into the Markdown table and the plot, copies both to
bench/results/latest.*, and puts the table in the README.

Usage: python3 bench/report.py [bench/results/<time>.json]   (default: the newest)"""

import json
import shutil
import sys
from pathlib import Path
from statistics import median

import observers
import paired

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def med(values):
    values = [v for v in values if v is not None]
    return median(values) if values else None


def fmt(v, spec=".0f", unit=""):
    return "—" if v is None else f"{v:{spec}}{unit}"


def per_request(row, key):
    """A row's `key` per request the load generator completed, if it has both."""
    return row[key] / row["requests"] if row.get(key) is not None and row["requests"] else None


class Figures:
    """Medians of one (target, load) point over its runs, per mode, with ratios taken
    within each interleaved run before the median."""

    def __init__(self, runs, target, kind, rate):
        self.rows = [r for r in runs if r["target"] == target and r["kind"] == kind and r["rate"] == rate]
        self.base = {r["run"]: r for r in self.rows if r["mode"] == "baseline"}

    def of(self, mode):
        return [r for r in self.rows if r["mode"] == mode]

    def m(self, mode, key):
        return med([r.get(key) for r in self.of(mode)])

    def per_run(self, mode, other, value):
        """value(mode's row) / value(other's row) within each run, in run order."""
        mine, theirs = ({r["run"]: r for r in self.of(m)} for m in (mode, other))
        return [value(mine[k]) / value(theirs[k]) for k in sorted(mine)
                if k in theirs and value(mine[k]) is not None and value(theirs[k])]

    def ratios(self, mode, key):
        """The ratio to the baseline within each run, in run order."""
        return self.per_run(mode, "baseline", lambda r: r[key])

    def ratio(self, mode, key):
        return med(self.ratios(mode, key))

    def between(self, mode, other, value):
        """The median of `per_run`: two builds or modes compared without the baseline
        between them."""
        return med(self.per_run(mode, other, value))

    def per_exchange(self, mode, key, scale):
        return med([v * scale for v in (per_request(r, key) for r in self.of(mode)) if v is not None])

    def millicores(self, mode):
        # millicores per 10k exchanges/s = CPU microseconds per exchange x 10
        return self.per_exchange(mode, "cpu_seconds", 1e7)

    def completeness(self, mode):
        return med([r["captured"] / r["requests"] for r in self.of(mode)
                    if r.get("captured") is not None and r["requests"] and mode.startswith("full")])

    def row(self, mode):
        rss = self.m(mode, "rss_kib")
        return [mode, fmt(self.m(mode, "rps")), fmt(self.ratio(mode, "rps"), ".3f"),
                fmt(self.m(mode, "p50_ms"), ".3f"), fmt(self.m(mode, "p99_ms"), ".3f"),
                fmt(self.ratio(mode, "p99_ms"), ".2f"), fmt(self.millicores(mode), ".1f"),
                fmt(self.per_exchange(mode, "bpf_ns", 1.0)),
                fmt(rss and rss / 1024, ".1f"), fmt(self.m(mode, "drops")),
                fmt(self.completeness(mode), ".4f"), str(len(self.of(mode)))]


HEADER = ["mode", "req/s", "vs baseline", "p50 ms", "p99 ms", "p99 vs baseline",
          "observer mcores per 10k/s", "BPF ns/exchange", "peak RSS MiB", "drops",
          "completeness", "runs"]


def table(rows, header=HEADER):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def points(runs):
    seen = []
    for r in runs:
        p = (r["target"], r["kind"], r["rate"])
        if p not in seen:
            seen.append(p)
    return seen


def cost_split_lines(runs):
    """Where full capture's observer CPU goes, from the modes that leave out part of it,
    and the bytes each observer writes per exchange (no target)."""
    rates = sorted({r["rate"] for r in runs if r["kind"] == "rate" and r["target"] == "nginx"})
    lines = []
    for mode, what in (("full-null", "the lines written to /dev/null"),
                       ("full-no-raw", "--no-raw-payload")):
        per_rate = [(q, Figures(runs, "nginx", "rate", q).millicores(mode)) for q in rates]
        per_rate = [(q, m) for q, m in per_rate if m is not None]
        if per_rate:
            lines.append(f"- Observer CPU of full capture with {what} ({mode}; nginx, millicores "
                         f"per 10k exchanges/s, no target): "
                         f"{', '.join(f'{m:.1f} at {q}/s' for q, m in per_rate)}.")
    sizes = []
    for mode in ("full", "full-no-raw", "tcpdump"):
        per = [per_request(r, "output_bytes") for r in runs
               if r["mode"] == mode and r["kind"] == "rate" and r["target"] == "nginx"]
        per = med(per)
        if per is not None:
            sizes.append(f"{mode} {per:.0f}")
    if sizes:
        lines.append(f"- Bytes written to the output file per nginx exchange (fixed rates, median): "
                     f"{', '.join(sizes)} (no target).")
    return lines


def connection_rounds(meta):
    """The many-connections runs as (full table, quarter table) lists: the rounds of
    `conns_rounds`, or the one pair older results kept as `conns` and `conns_small_table`."""
    if "conns_rounds" in meta:
        rounds = meta["conns_rounds"]
        cap = max(r["cap"] for r in rounds)
        return [r for r in rounds if r["cap"] == cap], [r for r in rounds if r["cap"] != cap]
    if "conns" in meta:
        small = meta.get("conns_small_table")
        return [meta["conns"]], [small] if small else []
    return [], []


def bounded(c):
    """A table that reached its cap, counted what it evicted and stopped growing after the
    first round (within 1 MiB), under the peak RSS target."""
    after = c["rss_kib_after_round"]
    growth = after[-1] - after[1] if len(after) > 1 else 0
    return c["evicted"] > 0 and growth <= 1024 and c["peak_rss_kib"] <= 64 * 1024


def connection_lines(meta):
    """The many-connections check (memory bounded, in every run) and what an eviction
    costs in a table four times larger (median over rounds)."""
    full, small = connection_rounds(meta)
    if not full:
        return []
    c = full[0]
    after = c["rss_kib_after_round"]
    held = sum(bounded(r) for r in full)
    runs = f" in {held} of {len(full)} runs" if len(full) > 1 else ""
    others = "".join(f"; run {i + 2}: peak {r['peak_rss_kib'] / 1024:.1f} MiB, {r['evicted']} evictions, "
                     f"{r['captured']} of {r['requests']} captured" for i, r in enumerate(full[1:]))
    lines = [
        f"- {c['connections']} kept-alive connections, --max-connections {c['cap']}: RSS "
        f"{', '.join(f'{a / 1024:.1f}' for a in after)} MiB after each of {c['rounds']} rounds "
        f"(peak {c['peak_rss_kib'] / 1024:.1f} MiB), {c['evicted']} evictions counted, "
        f"{c['captured']} of {c['requests']} exchanges captured{others}: bounded{runs} "
        f"**{'met' if held == len(full) else 'NOT met'}**."]
    if small and all("cpu_us_per_request" in r for r in full + small):
        big_us = median(r["cpu_us_per_request"] for r in full)
        small_us = median(r["cpu_us_per_request"] for r in small)
        pairs = [b["cpu_us_per_request"] / s["cpu_us_per_request"] for b, s in zip(full, small)]
        spread = (f"; median of {len(pairs)} interleaved pairs' ratios "
                  f"{median(pairs):.2f}, from {min(pairs):.2f} to {max(pairs):.2f}"
                  if len(pairs) > 1 else "")
        lines.append(
            f"- Evicting on every request (each of the {c['connections']} connections comes back "
            f"after the table has dropped it): the profiler used {big_us:.1f} us of CPU per exchange "
            f"with --max-connections {c['cap']} and {small_us:.1f} us with {small[0]['cap']} "
            f"({small[0]['evicted']} evictions), a ratio of {big_us / small_us:.2f} for a table four "
            f"times larger{spread} (no target).")
    return lines


def closed_loop_cpu_lines(closed):
    """CPU per exchange of nginx, of wrk and of the observer in the closed loop: where
    each mode's loss lies (runs from before these figures were kept have none)."""
    parts = []
    for mode in observers.MODES:
        service = closed.per_exchange(mode, "service_cpu_seconds", 1e6)
        load = closed.per_exchange(mode, "load_cpu_seconds", 1e6)
        if service is None or load is None:
            continue
        observer = closed.per_exchange(mode, "cpu_seconds", 1e6)
        parts.append(f"{mode} {service:.2f} / {load:.2f} / {fmt(observer, '.2f')}")
    if not parts:
        return []
    return [f"- CPU per exchange in the closed loop (nginx; µs of nginx's processes / wrk / the observer, "
            f"medians; no target): {'; '.join(parts)}. nginx's and wrk's include the kernel's work "
            f"in their syscalls, loopback TCP included, and the probes that run in them. With both "
            f"CPUs busy the three add up to about the two CPUs' time per exchange, so what a mode "
            f"adds to them is what lowers its requests/s."]


def bpf_by_program(figures, mode):
    """Per program of the profiler, medians over the runs of `mode`: (ns per exchange,
    runs per exchange, ns per run), the largest first."""
    rows = [r for r in figures.of(mode) if r.get("bpf_runs") and r["requests"]]
    names = sorted({name for r in rows for name in r["bpf_runs"]})
    by_name = []
    for name in names:
        got = [r["bpf_runs"].get(name, [0, 0]) + [r["requests"]] for r in rows]
        per_exchange = med([ns / n for ns, _, n in got])
        runs = med([cnt / n for _, cnt, n in got])
        per_run = med([ns / cnt for ns, cnt, _ in got if cnt])
        by_name.append((name, per_exchange, runs, per_run))
    return sorted(by_name, key=lambda row: -row[1])


def bpf_by_program_lines(fixed, rate):
    """Where the BPF time per exchange goes, program by program (runs from before
    bench/run.py kept the programs apart have none)."""
    parts = {}
    for mode in ("full", "hooks-only"):
        rows = [row for row in bpf_by_program(fixed, mode) if row[1] >= 1]
        if rows:
            parts[mode] = "; ".join(f"{name} {ns:.0f} ({runs:.2f} × {fmt(run, '.0f')})"
                                    for name, ns, runs, run in rows)
    if "full" not in parts:
        return []
    empty = [run for _, _, _, run in bpf_by_program(fixed, "empty-hooks")]
    return [f"- BPF time by program (nginx at {rate}/s, medians; ns per exchange (runs per "
            f"exchange × ns per run), those over 1 ns; no target): full: {parts['full']}"
            + (f"; hooks-only: {parts['hooks-only']}" if "hooks-only" in parts else "")
            + ". A data syscall's exit runs for the load generator's syscalls too, which leave "
              "at the pid check: the service's own syscalls cost about the difference."
            + (f" An empty program measures {fmt(empty[0])} ns per run (empty-hooks): what "
               f"entering a program and the run-time accounting's clock reads cost."
               if empty else "")]


def targets_section(runs, meta):
    lines = []
    closed = Figures(runs, "nginx", "closed", None)
    full, tcp = closed.ratio("full", "rps"), closed.ratio("tcpdump", "rps")
    if full is not None:
        verdict = "met" if full >= 0.90 else "NOT met"
        stretch = " (stretch 95%: met)" if full >= 0.95 else " (stretch 95%: not met)"
        done, drops = closed.completeness("full"), closed.m("full", "drops")
        lines.append(f"- Full capture vs nginx closed loop: {full:.1%} of baseline req/s, target ≥ 90%: "
                     f"**{verdict}**{stretch}. In these runs the profiler captured {fmt(done, '.1%')} of "
                     f"the exchanges (median {fmt(drops)} ring-buffer drops): records it could not keep up "
                     f"with were dropped, counted, and cost it no further work.")
    if full is not None and tcp is not None:
        lines.append(f"- Loss smaller than tcpdump's: full loses {1 - full:.1%}, tcpdump {1 - tcp:.1%}: "
                     f"**{'met' if 1 - full < 1 - tcp else 'NOT met'}**.")
    empty, hooks = closed.ratio("empty-hooks", "rps"), closed.ratio("hooks-only", "rps")
    if empty is not None and hooks is not None and full is not None:
        lines.append(f"- Where full capture's closed-loop loss lies (nginx, no target): an empty program on "
                     f"each of the profiler's tracepoints (empty-hooks) keeps {empty:.1%} of baseline req/s, "
                     f"the profiler's programs leaving at the pid check (hooks-only) {hooks:.1%}, full "
                     f"capture {full:.1%}: attaching at all costs {1 - empty:.1%}, the programs' early "
                     f"exits {empty - hooks:+.1%} on top, capturing and writing {hooks - full:+.1%} "
                     f"(differences of medians, noise included).")
    lines += closed_loop_cpu_lines(closed)
    rate = meta["settings"]["soak_rate"]
    fixed = Figures(runs, "nginx", "rate", rate)
    bpf = fixed.per_exchange("full", "bpf_ns", 1.0)
    if bpf is not None:
        floor = fixed.per_exchange("hooks-only", "bpf_ns", 1.0)
        lines.append(f"- Kernel-side BPF time (nginx at {rate}/s, all hooks): {bpf:.0f} ns per exchange, "
                     f"target ≤ 2000: **{'met' if bpf <= 2000 else 'NOT met'}**. This is every run of the "
                     f"profiler's programs during the load, whichever process made the syscall, divided by "
                     f"the exchanges; with only an idle process selected the same sum is {fmt(floor)} ns"
                     + (f", with an empty program on each hook (empty-hooks) "
                        f"{fmt(fixed.per_exchange('empty-hooks', 'bpf_ns', 1.0))} ns"
                        if fixed.of("empty-hooks") else "") + ".")
    lines += bpf_by_program_lines(fixed, rate)
    if closed.of("full-before") or fixed.of("full-before"):
        lines.append(
            f"- This build's full capture against the build BENCH_BEFORE names (full-before), medians "
            f"of ratios within each run: nginx closed loop req/s "
            f"{fmt(closed.between('full', 'full-before', lambda r: r.get('rps')), '.3f')} (observer CPU per "
            f"exchange {fmt(closed.between('full', 'full-before', lambda r: per_request(r, 'cpu_seconds')), '.3f')}); at "
            f"{rate}/s BPF time per exchange "
            f"{fmt(fixed.between('full', 'full-before', lambda r: per_request(r, 'bpf_ns')), '.3f')}, observer CPU per "
            f"exchange {fmt(fixed.between('full', 'full-before', lambda r: per_request(r, 'cpu_seconds')), '.3f')} "
            f"(no target).")
    per_rate = [(q, Figures(runs, "nginx", "rate", q).millicores("full"))
                for q in sorted({r["rate"] for r in runs if r["kind"] == "rate" and r["target"] == "nginx"})]
    per_rate = [(q, m) for q, m in per_rate if m is not None]
    if per_rate:
        over = [q for q, m in per_rate if m > 50]
        verdict = "met at every rate"
        if over:
            verdict = f"NOT met at {', '.join(f'{q}/s' for q in over)}"
            if len(over) < len(per_rate):
                verdict += ", met at the other rates"
        lines.append(f"- Userspace CPU (nginx), millicores per 10k exchanges/s: "
                     f"{', '.join(f'{m:.1f} at {q}/s' for q, m in per_rate)}; target ≤ 50: **{verdict}**.")
    lines += cost_split_lines(runs)
    soak = Figures(runs, "nginx", "soak", rate)
    if soak.of("full") and soak.base:
        full_runs = soak.of("full")
        p99 = soak.ratio("full", "p99_ms")
        drops = sum(r["drops"] for r in full_runs)
        # A request oha cancelled at the end may have been answered: it counts either way.
        whole = [r["requests"] <= r["captured"] <= r["requests"] + r.get("aborted_at_deadline", 0)
                 for r in full_runs]
        counts = "; ".join(f"{r['captured']} of {r['requests']} (+ {r.get('aborted_at_deadline', 0)})"
                           for r in full_runs)
        base_p99 = [r["p99_ms"] for r in soak.base.values()]
        floor = ""
        if soak.of("hooks-only"):
            floor = (f"; hooks-only, the floor of attaching: {soak.m('hooks-only', 'p99_ms'):.3f} ms, "
                     f"{soak.ratio('hooks-only', 'p99_ms') - 1:+.1%}")
        if soak.of("empty-hooks"):
            floor += (f"; empty-hooks, an empty program on each hook: "
                      f"{soak.m('empty-hooks', 'p99_ms'):.3f} ms, {soak.ratio('empty-hooks', 'p99_ms') - 1:+.1%}")
        lines.append(
            f"- {meta['settings']['soak_seconds']} s at {rate}/s (nginx), {len(full_runs)} interleaved "
            f"runs of each mode: {drops} ring-buffer drops in all, exchanges captured of completed "
            f"(+ cancelled by oha at its deadline) per run: {counts}; p99 "
            f"{soak.m('full', 'p99_ms'):.3f} ms vs {soak.m('baseline', 'p99_ms'):.3f} ms baseline "
            f"(median of the runs' ratios {p99 - 1:+.1%}; the runs: "
            f"{', '.join(f'{x:.2f}' for x in soak.ratios('full', 'p99_ms'))}; baseline p99 "
            f"{min(base_p99):.3f}-{max(base_p99):.3f} ms across runs{floor}): "
            f"zero drops **{'met' if drops == 0 else 'NOT met'}**, "
            f"captured == completed **{'met' if all(whole) else 'NOT met'}**, "
            f"p99 within 15% **{'met' if p99 <= 1.15 else 'NOT met'}**.")
    rss = [r["rss_kib"] for r in runs if r["mode"] == "full" and r.get("rss_kib")]
    if rss:
        lines.append(f"- Peak RSS of the profiler over all full-capture runs: {max(rss) / 1024:.1f} MiB, "
                     f"target ≤ 64 MiB: **{'met' if max(rss) <= 64 * 1024 else 'NOT met'}**.")
    idle = meta.get("idle")
    if idle:
        lines.append(f"- Idle (nginx's processes selected, no traffic, {idle['seconds']} s): the profiler "
                     f"used {idle['millicores']:.1f} millicores and woke {idle['wakeups_per_second']:.0f} "
                     f"times per second (no target).")
    lines.extend(connection_lines(meta))
    h = meta.get("housekeeping")
    if h:
        lines.append(
            f"- Housekeeping (the once-a-second check for stalled messages and idle connections, "
            f"bench/housekeeping.rs) over a table of {h['connections']} connections: "
            f"{h['busy_ms_per_pass']:.3f} ms per pass with every connection busy, "
            f"{h['idle_ms_per_pass']:.2f} ms with every one idle past --message-timeout, so at most "
            f"{h['idle_ms_per_pass']:.1f} millicores (median of {h['runs']} runs; no target).")
    r = meta.get("reader_cost")
    if r:
        lines.append(
            f"- The reader's own work (connection table, parsing, pairing, redaction and the JSON "
            f"line with raw_payload; not the ring buffer or the file), without a kernel "
            f"(bench/reader_cost.rs): {r['ns_per_exchange']:.0f} ns of one CPU per exchange of nginx "
            f"and wrk (median of {r['runs']} runs, each the best of its rounds; no target)"
            + (f"; {r['instructions_per_exchange']:,.0f} instructions per exchange, counted by callgrind "
               f"(the same on every run of this build on this kind of CPU, whatever else the machine "
               f"does: the figure to compare the reader by from one table to the next), "
               f"{r['instructions_per_exchange_no_raw']:,.0f} with --no-raw-payload."
               if "instructions_per_exchange" in r else "."))
    return "\n".join(lines)


def syscall_section(results):
    """bench/syscall_cost.rs: per mode, medians over the rounds of each figure and of its
    difference from the same round's baseline."""
    base = {r["run"]: r for r in results if r["mode"] == "baseline"}
    keys = (("write_ns", "write to /dev/null"), ("getppid_ns", "getppid"),
            ("exchange_ns", "loopback HTTP exchange (4 syscalls)"))
    header = ["mode"] + [f"{label}, ns" for _, label in keys] + ["messages captured / expected"]
    rows = []
    for mode in observers.COMPARE_MODES:
        mine = [r for r in results if r["mode"] == mode]
        if not mine:
            continue
        row = [mode]
        for key, _ in keys:
            value = med([r[key] for r in mine])
            added = med([r[key] - base[r["run"]][key] for r in mine if r["run"] in base])
            row.append(fmt(value) + ("" if mode == "baseline" or added is None else f" ({added:+.0f})"))
        # Each exchange is four messages: the request and the response, each seen sent
        # and received, as the process is both client and server.
        captured = [r["messages"] / (4 * r["exchanges"]) for r in mine if "messages" in r]
        row.append(fmt(med(captured), ".3f") if captured else "—")
        rows.append(row)
    first = results[0]
    return "\n".join([
        "### What each mode adds to a service's syscalls (bench/syscall_cost.rs)", "",
        f"One thread, best of {first['passes']} passes of {first['n']:,} of each operation, median over "
        f"{len(base)} interleaved rounds; in brackets the median difference from the same round's "
        f"baseline. The write to /dev/null is a hooked syscall on a file, getppid a syscall nothing "
        f"hooks; the exchange is a client's write and read and a server's read and write over one "
        f"kept-alive loopback connection, in the same process (full captures it: 4 messages per exchange). "
        f"hooks-only shows what attaching the hooks costs each syscall before the programs do any work "
        f"(the kernel's syscall tracepoint path; the programs leave at the pid check).", "",
        table(rows, header)])


def paired_section(results):
    """bench/paired.py: this build and BENCH_BEFORE's attached at once."""
    s = paired.summary(results)
    bpf, cpu = s["bpf_ns_per_exchange"], s["cpu_us_per_exchange"]
    captured = [r[b]["captured"] / r["requests"] for r in results for b in ("this", "before")
                if r[b]["captured"] is not None]
    rows = [["BPF ns per exchange", fmt(bpf["this"]), fmt(bpf["before"]), fmt(bpf["ratio"], ".3f"),
             fmt(bpf["second_position"], ".3f")],
            ["observer CPU µs per exchange", fmt(cpu["this"], ".2f"), fmt(cpu["before"], ".2f"),
             fmt(cpu["ratio"], ".3f"), fmt(cpu["second_position"], ".3f")]]
    return "\n".join([
        "### This build and BENCH_BEFORE's attached at once (bench/paired.py)", "",
        f"nginx at {s['rate']}/s (oha), both builds capturing it (--pid), {len(results)} runs, each build "
        f"attached first in half of them. this / before: per pair of runs (one in each order), the "
        f"geometric mean of the two runs' ratios, which takes out what the second position does "
        f"(its programs run on caches the first's have warmed); median over {s['pairs']} pairs. "
        f"Second position: the factor that position applies, from the same pairs. Medians of the "
        f"absolute figures mix both positions. Completeness (each build, each run): "
        f"{fmt(min(captured), '.3f') if captured else '—'} at least.", "",
        table(rows, ["figure", "this build", "before", "this / before", "second position"])])


def machine(meta):
    """The CPU and the kernel's mitigations that weigh on syscalls, when the run recorded them."""
    if "cpu_model" not in meta:
        return ""
    weighing = [f"{k}: {v}" for k, v in meta.get("mitigations", {}).items()
                if k in ("spectre_v2", "spec_rstack_overflow", "retbleed")]
    return (f"CPU: {meta['cpu_model']}; mitigations on the syscall path: "
            f"{'; '.join(weighing) or 'none'}. ")


def markdown(data):
    meta, runs = data["meta"], data["runs"]
    s = meta["settings"]
    changed = ("**The source changed during this run**: a build made meanwhile may have been "
               "measured. " if meta.get("source_changed_during_run") else "")
    out = [f"{changed}Made by `{meta['command']}` at {meta['stamp']} (commit {meta['commit']}, kernel "
           f"{meta['kernel']}, {meta['cpus']} CPUs, load average at start "
           f"{meta['loadavg_start'][0]:.2f}, at end {meta.get('loadavg_end', [float('nan')])[0]:.2f}; "
           f"median load average during runs {fmt(med([r['loadavg'] for r in runs]), '.2f')}). "
           f"{machine(meta)}"
           f"{s['runs']} interleaved runs of {s['seconds']} s per point; ratios are taken within each run, "
           f"then the median. nginx: 2 workers, `listen ... reuseport` (the connections spread evenly over "
           f"the workers). Closed loop: wrk, 2 threads, {s['wrk_connections']} connections. Fixed rate: "
           f"oha -q, {s['wrk_connections']} connections, latency corrected for coordinated omission, "
           f"BPF run-time accounting on (kernel.bpf_stats_enabled=1). hooks-only: probes attached, only an "
           f"idle process selected (--pid). full: the service's processes selected (--pid), JSON lines to a "
           f"file on tmpfs. "
           + (f"other-port: --port {observers.UNUSED_PORT}, a port nothing uses (every TCP syscall of the host "
              f"that moves bytes walks from its fd to the socket and is rejected on its ports). "
              if any(r["mode"] == "other-port" for r in runs) else "")
           + ("empty-hooks: a program that does nothing (`return 0`) on each tracepoint the profiler "
              "attaches on this kernel (bench/empty_hooks.py), the floor that attaching sets. "
              if any(r["mode"] == "empty-hooks" for r in runs) else "")
           + ("full-before: as full, by the build BENCH_BEFORE names. "
              if any(r["mode"] == "full-before" for r in runs) else "")
           + ("full-no-raw: as full, with --no-raw-payload. "
              if any(r["mode"] == "full-no-raw" for r in runs) else "")
           + ("full-null: as full, the lines written to /dev/null (the profiler's own work, without "
              "the kernel storing its output; completeness cannot be read back). "
              if any(r["mode"] == "full-null" for r in runs) else "")
           + f"tcpdump: `tcpdump -i lo -s 0 -w FILE tcp port PORT` to tmpfs. Observer CPU: "
           f"on-CPU time (the threads' schedstat, in ns) of the profiler or tcpdump from load start until it has caught up. "
           f"Completeness: responses written whole / requests the load generator completed (above 1 "
           f"when the generator stopped with requests in flight that the service still answered: wrk "
           f"and oha count only the requests they saw completed).", ""]
    out += ["### Targets", "", targets_section(runs, meta), ""]
    for target, kind, rate in points([r for r in runs if r["kind"] != "soak"]):
        f = Figures(runs, target, kind, rate)
        title = "closed loop (wrk)" if kind == "closed" else f"fixed rate {rate}/s (oha)"
        out += [f"### {target}, {title}", "", table([f.row(m) for m in observers.COMPARE_MODES if f.of(m)]), ""]
    if meta.get("syscall_cost"):
        out += [syscall_section(meta["syscall_cost"]), ""]
    if meta.get("paired"):
        out += [paired_section(meta["paired"]), ""]
    soak = [r for r in runs if r["kind"] == "soak"]
    if soak:
        f = Figures(runs, "nginx", "soak", soak[0]["rate"])
        out += [f"### nginx, {s['soak_seconds']} s at {soak[0]['rate']}/s (oha, BPF run-time accounting off)", "",
                table([f.row(m) for m in observers.COMPARE_MODES if f.of(m)]), ""]
    return "\n".join(out)


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in data["runs"] if r["target"] == "nginx" and r["kind"] == "rate"]
    rates = sorted({r["rate"] for r in runs})
    if not rates:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    closed = Figures(data["runs"], "nginx", "closed", None)
    got = [Figures(runs, "nginx", "rate", q) for q in rates]
    for mode in observers.MODES:
        if not any(g.of(mode) for g in got):
            continue
        (line,) = a.plot(rates, [g.m(mode, "rps") for g in got], marker="o", label=mode)
        b.plot(rates, [g.m(mode, "p99_ms") for g in got], marker="o", label=mode, color=line.get_color())
        if closed.of(mode):
            a.axhline(closed.m(mode, "rps"), linestyle=":", linewidth=1, color=line.get_color())
    a.set(xlabel="offered rate (requests/s)", ylabel="achieved requests/s",
          title="nginx throughput (dotted: closed-loop wrk)")
    b.set(xlabel="offered rate (requests/s)", ylabel="p99 latency (ms)", title="nginx p99 latency")
    b.set_yscale("log")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write(raw_path):
    raw_path = Path(raw_path)
    data = json.loads(raw_path.read_text())
    md = markdown(data)
    md_path = raw_path.with_suffix(".md")
    png_path = raw_path.with_suffix(".png")
    has_plot = plot(data, png_path)
    body = md + (f"\n![throughput and p99 vs rate]({png_path.name})\n" if has_plot else "")
    md_path.write_text(f"# Benchmark {data['meta']['stamp']}\n\n" + body)
    shutil.copy(md_path, HERE / "results" / "latest.md")
    if has_plot:
        shutil.copy(png_path, HERE / "results" / "latest.png")
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        readme_md = md.replace("### ", "#### ")
        if has_plot:
            readme_md += "\n![throughput and p99 vs rate](bench/results/latest.png)\n"
        README.write_text(f"{head}{START}\n{readme_md}\n{END}{tail}")
    print(f"bench: wrote {md_path} and {png_path if has_plot else 'no plot'}; README updated")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        write(sys.argv[1])
    else:
        newest = sorted((HERE / "results").glob("2*.json"))
        if not newest:
            sys.exit("bench: no results yet: run make bench")
        write(newest[-1])
