"""Privileges and kernel faults: missing capabilities, unreadable BTF, missing
tracepoints, two instances, SIGKILL, and a restart in the middle of traffic."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from conftest import BINARY, keepalive_client, of_port, our_programs
from test_errors import one_line_error, run


def test_root_without_capabilities_names_the_fix():
    r = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", str(BINARY), "--output", "-"],
        capture_output=True, text=True, timeout=60,
    )
    line = one_line_error(r)
    assert "run as root" in line and "CAP_BPF" in line


def test_not_root_without_inherited_capabilities_names_the_fix():
    r = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", str(BINARY), "-o", "-"],
        capture_output=True, text=True, timeout=60,
    )
    line = one_line_error(r)
    assert "run as root" in line


def test_garbage_and_empty_btf_name_the_fix(tmp_path):
    garbage = tmp_path / "garbage.btf"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.btf"
    empty.write_bytes(b"")
    for btf in (garbage, empty):
        line = one_line_error(run("--output", str(tmp_path / "o.jsonl"), "--btf", str(btf)))
        assert str(btf) in line and "--btf" in line and "CONFIG_DEBUG_INFO_BTF" in line


def test_a_missing_tracepoint_is_named_and_the_rest_captured(tmp_path, echo_server):
    _, port = echo_server
    out = tmp_path / "o.jsonl"
    env = dict(os.environ, HTTP_PROFILER_ASSUME_MISSING_TRACEPOINTS="sys_exit_readv")
    stderr = open(tmp_path / "stderr", "w+")
    proc = subprocess.Popen([str(BINARY), "-o", str(out), "--port", str(port)], env=env, stderr=stderr)
    try:
        deadline = time.time() + 30
        while "capturing" not in (tmp_path / "stderr").read_text():
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "stderr").read_text()
            time.sleep(0.05)
        client = keepalive_client(port, "GET:/still-seen")
        client.communicate(timeout=30)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    text = (tmp_path / "stderr").read_text()
    assert "syscalls:sys_exit_readv: traffic through it is not captured" in text, text
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert len([l for l in of_port(lines, port) if l.get("url") == "/still-seen"]) == 2


def test_two_instances_both_capture(start_profiler, echo_server):
    _, port = echo_server
    first = start_profiler("--port", str(port))
    second = start_profiler("--port", str(port))
    client = keepalive_client(port, "GET:/both", "POST:/both:100")
    client.communicate(timeout=30)
    a, b = first.stop(), second.stop()
    assert first.returncode == 0 and second.returncode == 0
    for lines in (a, b):
        mine = of_port(lines, port)
        assert len(mine) == 8, mine
        assert all(not l["incomplete"] for l in mine)


def all_programs():
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True, check=True).stdout)
    return {p["id"] for p in progs}


def test_sigkill_leaves_no_program_attached_and_nothing_pinned(start_profiler):
    pinned_before = set(os.listdir("/sys/fs/bpf")) if os.path.isdir("/sys/fs/bpf") else set()
    profiler = start_profiler("--port", "9")
    ids = our_programs(profiler.proc.pid)
    # One program per probe: the copy program and each enter/exit hook.
    assert len(ids) >= 15, ids
    assert ids <= all_programs()
    profiler.proc.send_signal(signal.SIGKILL)
    profiler.proc.wait(timeout=30)
    deadline = time.time() + 10
    while ids & all_programs() and time.time() < deadline:
        time.sleep(0.1)  # the kernel frees programs once their last reference goes
    assert not ids & all_programs(), ids & all_programs()
    pinned_after = set(os.listdir("/sys/fs/bpf")) if os.path.isdir("/sys/fs/bpf") else set()
    assert pinned_after == pinned_before
    # No tracepoint link survives: perf events of the program ids are gone with them.
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "list"], capture_output=True, text=True, check=True).stdout)
    assert not [l for l in links if l.get("prog_id") in ids]


def test_a_restart_during_traffic_loses_only_the_gap(start_profiler, echo_server, monkeypatch):
    """A keep-alive client sends continuously across a restart: the second profiler picks
    the connection up at the next message, and every exchange after that is whole.
    The second one takes its time attaching its hooks (100 ms each): a capture that began
    before the last hook was in would see requests without their responses and pair the
    next response with the wrong request."""
    _, port = echo_server
    sock = socket.create_connection(("127.0.0.1", port))
    sent = []
    stop = threading.Event()

    def send():
        i = 0
        f = sock.makefile("rb")
        while not stop.is_set():
            sock.sendall(b"GET /r%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
            status = f.readline()
            length = 0
            while (line := f.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            assert status.startswith(b"HTTP/1.1 200")
            sent.append((i, time.time()))
            i += 1
            time.sleep(0.01)

    sender = threading.Thread(target=send)
    sender.start()
    first = start_profiler("--port", str(port))
    time.sleep(1)
    a = first.stop()
    monkeypatch.setenv("HTTP_PROFILER_ATTACH_DELAY_MS", "100")
    second = start_profiler("--port", str(port))
    started = time.time()
    time.sleep(1.5)
    stop.set()
    sender.join()
    b = second.stop()
    sock.close()
    assert first.returncode == 0 and second.returncode == 0

    def client_requests(lines):
        return sorted(int(l["url"][2:]) for l in lines if l.get("direction") == "send" and "url" in l
                      and l["dest_port"] == port)

    ra, rb = client_requests(a), client_requests(b)
    assert ra and rb
    # Each run saw a contiguous run of requests, once each: no message split or doubled.
    for r in (ra, rb):
        assert r == list(range(r[0], r[-1] + 1)), r
    assert rb[0] > ra[-1]
    # The second run missed only what was sent before it attached (plus the one in flight).
    sent_after_start = [i for i, t in sent if t > started]
    assert rb[0] <= sent_after_start[0] + 1, (rb[0], sent_after_start[:3])
    assert rb[-1] == sent[-1][0]
    # Every response the second run saw is whole and paired with its own request.
    for l in of_port(b, port):
        assert not l["capture_gap"]
        if "status_code" in l and l["direction"] == "recv" and "request" in l:
            assert l["status_code"] == 200 and l["body"].startswith('{"path": "/r')
            assert json.loads(l["body"])["path"] == l["request"]["url"]
