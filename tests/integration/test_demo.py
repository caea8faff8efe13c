"""demo-server and traffic-gen under the profiler: every request exactly once per side,
paired, with bodies and latencies right; and `make demo` end to end."""

import collections
import json
import os
import re
import subprocess
import time

from conftest import ROOT, of_port

BIN = ROOT / "target" / "release"
CHUNKS = "first chunk\nsecond chunk\nthird chunk\nfourth chunk\nlast chunk\n"


def endpoint(method, url):
    return f"{method} {url.split('?')[0]}"


def test_every_traffic_gen_request_is_captured_once_per_side(start_profiler, tmp_path):
    server = subprocess.Popen([str(BIN / "demo-server"), "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+)$", server.stderr.readline().strip()).group(1))
        profiler = start_profiler("--port", str(port), "--max-body-bytes", "300000")
        summary_path = tmp_path / "summary.json"
        gen = subprocess.run(
            [str(BIN / "traffic-gen"), "--target", f"http://127.0.0.1:{port}", "--count", "300", "--rps", "0",
             "--concurrency", "4", "--slow-ms", "60", "--large-bytes", "200000", "--json-summary", str(summary_path)],
            capture_output=True, text=True, timeout=120,
        )
        assert gen.returncode == 0, gen.stdout + gen.stderr
        lines = of_port(profiler.stop(), port)
    finally:
        server.terminate()
        server.wait()
    summary = json.loads(summary_path.read_text())
    assert summary["sent"] == 300 and summary["errors"] == 0
    expected = {e: c["sent"] for e, c in summary["endpoints"].items()}

    def side(comm, direction, kind):
        return [l for l in lines if l["comm"] == comm and l["direction"] == direction and (kind in l)]

    sides = {
        "client requests": side("traffic-gen", "send", "method"),
        "server requests": side("demo-server", "recv", "method"),
        "server responses": side("demo-server", "send", "status_code"),
        "client responses": side("traffic-gen", "recv", "status_code"),
    }
    assert sum(len(v) for v in sides.values()) == len(lines) == 1200
    for name, got in sides.items():
        key = (lambda l: endpoint(l["method"], l["url"])) if "requests" in name else (lambda l: endpoint(**l["request"]))
        assert dict(collections.Counter(map(key, got))) == expected, name
        assert not [l for l in got if l["incomplete"] or l["capture_gap"]], name
    for name in ("client responses", "server responses"):
        responses = sides[name]
        requests = sides[name.replace("responses", "requests")]
        echo_in = sorted(l["body"] for l in requests if l["url"] == "/echo")
        echo_out = sorted(l["body"] for l in responses if l["request"]["url"] == "/echo")
        assert echo_in == echo_out and len(echo_in) == expected["POST /echo"]
        for l in responses:
            url = l["request"]["url"]
            if url.startswith("/slow"):
                assert l["latency_ms"] >= 60, l["latency_ms"]
            if url == "/chunked":
                assert l["headers"]["transfer-encoding"] == "chunked"
                assert l["body"] == CHUNKS and l["body_size"] == len(CHUNKS)
            if url.startswith("/large"):
                assert l["body_size"] == 200000 and not l["body_truncated"]
                assert l["body"] == "".join(chr(97 + i % 26) for i in range(200000))
            if url.startswith("/status/"):
                assert l["status_code"] == int(url.rsplit("/", 1)[1])


def ours():
    """Processes running a binary built in this tree (other checkouts may run their own)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe.startswith(str(ROOT / "target") + "/"):
            found[int(pid)] = os.path.basename(exe)
    return found


def assert_nothing_left_behind():
    time.sleep(0.5)
    assert ours() == {}, ours()
    # Without pinning a program lives only as long as a process holds its fd: every
    # profiler program still loaded must be held by a live process (another checkout's).
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout)
    held = held_program_ids()
    leaked = [p["id"] for p in progs if p.get("name") == "exit_accept" and p["id"] not in held]
    assert leaked == [], leaked


def held_program_ids():
    held = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    held.update(int(l.split()[1]) for l in f if l.startswith("prog_id:"))
        except OSError:
            continue
    return held


def test_make_demo_reconciles_and_leaves_nothing_behind():
    r = subprocess.run(["make", "demo", "DURATION=10"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = re.search(r"traffic-gen sent (\d+) requests; captured (\d+) exchanges \(client side\) and (\d+) \(server side\): captured == sent", r.stdout)
    assert m, r.stdout[-2000:]
    sent, client, server = map(int, m.groups())
    assert sent == client == server and sent >= 100
    # The live view showed the exchanges.
    assert re.search(r"traffic-gen:\d+ -> demo-server:8080  POST /echo -> 200", r.stdout)
    assert_nothing_left_behind()


def test_ctrl_c_stops_make_demo_and_everything_it_started():
    import os
    import signal

    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group.
    demo = subprocess.Popen(["make", "demo", "DURATION=60"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen = []
    for line in demo.stdout:
        seen.append(line)
        if "-> demo-server:8080" in line:
            break
    time.sleep(2)
    os.killpg(demo.pid, signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    out = "".join(seen) + rest
    assert "interrupted" in out, out[-2000:]
    assert "reconciliation" in out, out[-2000:]
    assert_nothing_left_behind()
