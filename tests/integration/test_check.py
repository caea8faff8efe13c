"""`http-profiler check`, the checker the VM tests use, on a real capture of demo-server and
traffic-gen: it passes the capture as taken, and fails (exit 1, naming the problem) when
the profiler wrote nothing or lost a response."""

import json
import subprocess

from conftest import BINARY, ROOT


def check(path, *args):
    return subprocess.run([str(BINARY), "check", str(path), *args], capture_output=True, text=True, timeout=60)


def test_check_passes_a_real_capture_and_fails_broken_ones(start_profiler, demo_server, tmp_path):
    _, port = demo_server
    profiler = start_profiler("--port", str(port))
    gen = subprocess.run(
        [str(ROOT / "target" / "release" / "traffic-gen"), "--target", f"http://127.0.0.1:{port}",
         "--count", "21", "--rps", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert gen.returncode == 0, gen.stdout + gen.stderr
    profiler.stop()
    capture = profiler.output

    good = check(capture, "--expect-requests", "21", "--port", str(port))
    assert good.returncode == 0, good.stdout
    assert good.stdout.startswith("PASS 21 requests") and good.stdout.count("\n") == 1, good.stdout

    wrong_count = check(capture, "--expect-requests", "22", "--port", str(port))
    assert wrong_count.returncode == 1
    assert "requests sent (client side): 21, expected 22" in wrong_count.stdout

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = check(empty, "--expect-requests", "21")
    assert r.returncode == 1
    assert "no HTTP message in the capture" in r.stdout and r.stdout.splitlines()[-1].startswith("FAIL ")

    lines = capture.read_text().splitlines()
    # Drop the client's view of one response.
    dropped = next(i for i, l in enumerate(lines)
                   if json.loads(l)["direction"] == "recv" and "status_code" in json.loads(l))
    request = json.loads(lines[dropped])["request"]
    missing = tmp_path / "missing.jsonl"
    missing.write_text("\n".join(lines[:dropped] + lines[dropped + 1:]) + "\n")
    r = check(missing, "--expect-requests", "21", "--port", str(port))
    assert r.returncode == 1, r.stdout
    assert "final responses received (client side): 20, expected 21" in r.stdout
    assert f"request {request['method']} {request['url']} from" in r.stdout and "no response captured" in r.stdout

    r = check(tmp_path / "nonexistent.jsonl", "--expect-requests", "1")
    assert r.returncode == 1 and "cannot read" in r.stdout
