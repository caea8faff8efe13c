"""Hostile and broken traffic: the profiler keeps running, captures a well-formed exchange
on another connection in the same run, and writes only valid JSON lines."""

import os
import selectors
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import HERE, free_port, keepalive_client, of_port
from many_connections import raise_fd_limit

MIB = 1024 * 1024


class DrainServer:
    """Accepts any number of connections and reads them to the end, with one selector
    thread (10,000 connections need no 10,000 threads). With `reply`, answers each
    connection once, when it has sent a blank line."""

    def __init__(self, reply=False):
        self.port = free_port()
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=0.1):
                if key.fileobj is self.sock:
                    while True:
                        try:
                            conn, _ = self.sock.accept()
                        except BlockingIOError:
                            break
                        conn.setblocking(False)
                        self.accepted += 1
                        self.sel.register(conn, selectors.EVENT_READ, data=[b"", False])
                    continue
                conn, state = key.fileobj, key.data
                try:
                    data = conn.recv(MIB)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.sel.unregister(conn)
                    conn.close()
                    continue
                if self.reply and not state[1]:
                    state[0] = (state[0] + data)[-4:]
                    if b"\r\n\r\n" in state[0]:
                        state[1] = True
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.stopping = True
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def send_all(port, payload, shut=True):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(payload)
    if shut:
        s.shutdown(socket.SHUT_WR)
    return s


def random_bytes(port):
    return [send_all(port, os.urandom(64 * 1024))]


def long_request_line(port):
    return [send_all(port, b"GET /" + b"a" * MIB + b" HTTP/1.1\r\nHost: h\r\n\r\n")]


def many_headers(port):
    head = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(10_000))
    return [send_all(port, b"GET /many HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n")]


def negative_content_length(port):
    return [send_all(port, b"POST /neg HTTP/1.1\r\nContent-Length: -5\r\n\r\nhelloGET /after-neg HTTP/1.1\r\n\r\n")]


def absurd_content_length(port):
    return [
        send_all(port, b"POST /absurd HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\nbody"),
        send_all(port, b"POST /max HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nbody"),
        send_all(port, b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nbody"),
    ]


def invalid_chunk_sizes(port):
    chunked = b"POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [
        send_all(port, chunked + b"zz\r\nhello\r\n0\r\n\r\n"),
        send_all(port, chunked + b"FFFFFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n"),
        send_all(port, chunked + b"-1\r\nx\r\n0\r\n\r\n"),
        send_all(port, chunked + b"5;" + b"e" * 100_000 + b"\r\nhello\r\n0\r\n\r\n"),
    ]


def slowloris(port):
    s = socket.create_connection(("127.0.0.1", port))
    for b in b"GET /slow":
        s.send(bytes([b]))
        time.sleep(1)
    return [s]


def half_closed(port):
    # A request then the write side shut; a head cut short then shut, the socket kept open.
    a = send_all(port, b"GET /half HTTP/1.1\r\nHost: h\r\n\r\n")
    b = send_all(port, b"GET /half-cut HTTP/1.1\r\nHo")
    return [a, b]


class Held:
    """A helper process holding connections open; closing it closes them."""

    def __init__(self, proc):
        self.proc = proc

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def concurrent_connections(port):
    # The clients run in their own process: each side needs 10,000 descriptors.
    raise_fd_limit(10_000 + 200)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "many_connections.py"), str(port), "10000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "done", f"many_connections.py failed (exit {proc.wait()})"
    return [Held(proc)]


SCENARIOS = [
    random_bytes,
    long_request_line,
    many_headers,
    negative_content_length,
    absurd_content_length,
    invalid_chunk_sizes,
    slowloris,
    half_closed,
    concurrent_connections,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_hostile_traffic_leaves_other_connections_captured(scenario, start_profiler, echo_server):
    server_pid, echo_port = echo_server
    drain = DrainServer(reply=scenario is concurrent_connections)
    profiler = start_profiler("--port", str(drain.port), "--port", str(echo_port))
    socks = scenario(drain.port)
    # A well-formed exchange on another connection while the hostile ones are still open.
    client = keepalive_client(echo_port, "GET:/well-formed", "POST:/well-formed-post:300")
    out, _ = client.communicate(timeout=60)
    assert client.returncode == 0, out
    if scenario is concurrent_connections:
        assert drain.accepted == 10_000
    assert profiler.proc.poll() is None, profiler.stderr_path.read_text()
    lines = profiler.stop()  # parses every line as JSON
    for s in socks:
        s.close()
    drain.close()
    assert profiler.returncode == 0, profiler.stderr_path.read_text()

    good = of_port(lines, echo_port)
    assert len(good) == 8, good
    for url, method, body in (("/well-formed", "GET", ""), ("/well-formed-post", "POST", None)):
        reqs = [l for l in good if l.get("url") == url]
        resps = [l for l in good if (l.get("request") or {}).get("url") == url]
        assert len(reqs) == 2 and len(resps) == 2, good
        for l in reqs:
            assert l["method"] == method and not l["incomplete"] and not l["capture_gap"]
            if body is not None:
                assert l["body"] == body
            else:
                assert len(l["body"]) == 300
        for l in resps:
            assert l["status_code"] == 200 and not l["incomplete"]
            assert l["pid"] in (server_pid, client.pid)

    hostile = of_port(lines, drain.port)
    for l in hostile:
        assert l["bytes"] >= 0 and l["body_size"] >= 0
        assert len(l.get("raw_payload", "")) <= 4096 * 2
    if scenario is concurrent_connections:
        urls = {l["url"] for l in hostile if "url" in l and l["direction"] == "send"}
        assert len(urls) == 10_000, len(urls)
    if scenario is many_headers:
        assert any(l.get("incomplete_reason") == "bad_head" or l.get("url") == "/many" for l in hostile), hostile
