"""Memory with many kept-alive connections: more connections than --max-connections,
each sending requests in rounds, while the profiler captures the service. Its table must
reach the cap, count what it evicts, and stop growing; what the profiler's CPU costs per
request there shows what an eviction costs."""

import resource
import socket
import time

import observers

ROUNDS = 3


def _round(socks, request, body_end):
    for s in socks:
        s.sendall(request)
    for s in socks:
        got = b""
        while not got.endswith(body_end):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("the service closed a kept-alive connection")
            got += chunk


def check(target, workdir, count, cap):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 1024
    if hard < want:
        raise RuntimeError(f"{count} connections need {want} open files, the hard limit is {hard}: "
                           f"raise it (ulimit -Hn) or lower BENCH_CONNS")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), hard))
    pids = observers.pids_of(target.proc)
    obs = observers.Profiler(workdir, ["--max-connections", str(cap),
                                       *[a for p in pids for a in ("--pid", str(p))]])
    socks = []
    rss = []
    try:
        start_rss = observers.peak_rss_kib(obs.pid)
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", target.port))
            socks.append(s)
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n\r\n".encode()
        cpu_start = observers.cpu_seconds(obs.pid)
        for _ in range(ROUNDS):
            _round(socks, request, b"hello from nginx\n")
            time.sleep(1)
            status = open(f"/proc/{obs.pid}/status").read()
            rss.append(int(status.split("VmRSS:")[1].split()[0]))
        cpu = observers.cpu_seconds(obs.pid) - cpu_start
        result = obs.finish()
    finally:
        for s in socks:
            s.close()
        obs.stop()
    return {"connections": count, "cap": cap, "rounds": ROUNDS, "rss_kib_start": start_rss,
            "rss_kib_after_round": rss, "peak_rss_kib": result["rss_kib"],
            "evicted": result["evicted"], "drops": result["drops"],
            "captured": result["captured"], "requests": count * ROUNDS,
            "cpu_us_per_request": cpu * 1e6 / (count * ROUNDS)}
