"""The other syscall shapes (sendmsg/readv with many iovec segments), messages cut short,
process filters, and connections userspace hands back to the kernel as not HTTP."""

import json
import subprocess
import sys
import time

from conftest import TCP_OPS_INET, TCP_OPS_INET6, of_port, python_server, running_echo_server

IOVEC_CLIENT = r"""
import os, socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
body = b"0123456789abcdef" * 64
head = b"POST /iov HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
# 2 + 20 segments: the head in two, the body in twenty.
segments = [head[:10], head[10:]] + [body[i:i + len(body) // 20 + 1] for i in range(0, len(body), len(body) // 20 + 1)]
assert len(segments) >= 18, len(segments)
sent = s.sendmsg(segments)
assert sent == len(head) + len(body)
got = b""
bufs = [bytearray(100) for _ in range(40)]
while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + len(body):
    n = os.readv(s.fileno(), bufs)
    assert n > 0
    got += b"".join(bytes(b) for b in bufs)[:n]
print(len(got))
"""


def test_sendmsg_and_readv_with_many_segments(start_profiler, echo_server):
    server_pid, port = echo_server
    profiler = start_profiler("--port", str(port))
    client = subprocess.run([sys.executable, "-c", IOVEC_CLIENT, str(port)], capture_output=True, text=True, timeout=30)
    assert client.returncode == 0, client.stderr
    lines = of_port(profiler.stop(), port)
    body = "0123456789abcdef" * 64
    assert len(lines) == 4, json.dumps(lines, indent=1)
    for l in lines:
        assert l["body"] == body and not l["body_truncated"] and not l["incomplete"] and not l["capture_gap"]
    assert sorted(l["direction"] for l in lines) == ["recv", "recv", "send", "send"]
    assert all(l["request"] == {"method": "POST", "url": "/iov"} for l in lines if "status_code" in l)
    # Small segments share a record: the 22-segment sendmsg is one record, each readv one,
    # the server's reads and write a few. One record per segment would be 22 or more.
    records = profiler.summary()["records"]
    assert records <= 10, records


SEGMENTS_CLIENT = r"""
import os, socket, sys
port = int(sys.argv[1])
def request(name, body, split, pad=0):
    head = b"POST /%s HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\nContent-Length: %d\r\n\r\n" % (
        name.encode(), b"p" * pad, len(body))
    return split(head, body)
cases = {
    # Head and body in one record, as nginx and hyper write a response.
    "two": request("two", b"b" * 300, lambda h, b: [h, b]),
    "one": request("one", b"c" * 300, lambda h, b: [h + b]),
    # The first bytes of a new connection, which decide whether it is HTTP, are in the
    # second segment.
    "empty-first": request("empty-first", b"d" * 300, lambda h, b: [b"", h + b]),
    # A first segment of 4 KiB or more, or a second beyond what a record has room for
    # after it: two records or more.
    "long-head": request("long-head", b"e" * 300, lambda h, b: [h, b], pad=5000),
    "long-body": request("long-body", b"f" * 13000, lambda h, b: [h, b]),
}
for name, segments in cases.items():
    s = socket.create_connection(("127.0.0.1", port))
    want = sum(map(len, segments))
    sent = os.writev(s.fileno(), segments) if name in ("two", "long-body") else s.sendmsg(segments)
    assert sent == want, (name, sent, want)
    got = b""
    while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + int(
            got.split(b"Content-Length: ")[1].split(b"\r\n")[0]):
        chunk = s.recv(65536)
        assert chunk, name
        got += chunk
    s.close()
"""


def test_writes_in_one_or_two_segments_are_copied_whole(start_profiler, echo_server):
    """writev and sendmsg with one or two segments, packed into one record or not, and
    with an empty first segment on a new connection: each request arrives whole, on both
    sides."""
    _, port = echo_server
    profiler = start_profiler("--port", str(port))
    client = subprocess.run([sys.executable, "-c", SEGMENTS_CLIENT, str(port)], capture_output=True, text=True, timeout=30)
    assert client.returncode == 0, client.stderr
    lines = of_port(profiler.stop(), port)
    bodies = {"two": "b" * 300, "one": "c" * 300, "empty-first": "d" * 300, "long-head": "e" * 300,
              "long-body": "f" * 13000}
    for name, body in bodies.items():
        mine = [l for l in lines if (l.get("url") or (l.get("request") or {}).get("url")) == f"/{name}"]
        assert sorted((l["direction"], "method" in l) for l in mine) == [
            ("recv", False), ("recv", True), ("send", False), ("send", True)], (name, json.dumps(mine, indent=1))
        for l in mine:
            assert l["body"] == body and not l["incomplete"] and not l["capture_gap"], (name, l)
        if name == "long-head":
            assert all(len(l["headers"]["X-Pad"]) == 5000 for l in mine if "method" in l), name


CUT_SHORT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly-this-much")
s.close()
"""


def test_a_message_cut_short_by_a_close_is_written_flagged(start_profiler, echo_server):
    _, port = echo_server
    profiler = start_profiler("--port", str(port))
    subprocess.run([sys.executable, "-c", CUT_SHORT, str(port)], check=True, timeout=30)
    time.sleep(0.5)
    lines = of_port(profiler.stop(), port)
    cut = [l for l in lines if l.get("url") == "/cut"]
    # The client's copy ends at its close; the server's when it closes after its timeout
    # on the short read or at the profiler's stop: both are written, flagged.
    assert len(cut) == 2, lines
    for l in cut:
        assert l["incomplete"] and l["incomplete_reason"] in ("closed", "shutdown")
        assert l["body"] == "only-this-much" and l["body_truncated"]


def test_comm_and_pid_filters_select_processes(start_profiler, echo_server):
    server_pid, port = echo_server
    profiler = start_profiler("--comm", "curl")
    subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/c"], check=True)
    lines = of_port(profiler.stop(), port)
    assert len(lines) == 2 and {l["comm"] for l in lines} == {"curl"}, lines
    profiler = start_profiler("--pid", str(server_pid))
    subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/p"], check=True)
    lines = of_port(profiler.stop(), port)
    assert len(lines) == 2 and {l["pid"] for l in lines} == {server_pid}, lines


def test_port_filter_selects_connections(start_profiler, echo_server):
    _, port = echo_server
    with running_echo_server() as (_, other_port):
        profiler = start_profiler("--port", str(port))
        for p, path in [(other_port, "/other-before"), (port, "/selected"), (other_port, "/other-after")]:
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{p}{path}"], check=True)
        # The kernel's connection table: the ends of the selected connection, none of the
        # other port's, though its server accepted and curl connected while the probes ran.
        # (ConnState: the local and the remote port are u16s at bytes 26 and 28.)
        table_ports = {int.from_bytes(v[at:at + 2], sys.byteorder) for _, v in profiler.map_entries("CONNS") for at in (26, 28)}
        lines = profiler.stop()
    assert other_port not in table_ports, (other_port, table_ports)
    assert port in table_ports, (port, table_ports)
    # curl's request and response, and the server's: nothing of the other port's server.
    assert of_port(lines, other_port) == [], of_port(lines, other_port)
    selected = of_port(lines, port)
    assert len(selected) == 4 and {l.get("url") or l["request"]["url"] for l in selected} == {"/selected"}, selected


JUNK_AFTER_GET = r"""
import os, socket, sys
sys.stdin.readline()                    # starts once the profiler watches this process
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname())
a, _ = srv.accept()
# Starts like a request, is not one: the kernel copies it until userspace says stop.
c.sendall(b"GET ")
for _ in range(40):
    c.sendall(os.urandom(65536))
    n = 0
    while n < 65536:
        n += len(a.recv(1 << 20))
"""


def test_userspace_stops_the_kernel_copying_a_connection_that_is_not_http(start_profiler):
    # Only this process is watched, so other traffic on the host cannot add records.
    junk = subprocess.Popen([sys.executable, "-c", JUNK_AFTER_GET], stdin=subprocess.PIPE, text=True)
    profiler = start_profiler("--pid", str(junk.pid))
    junk.communicate("go\n", timeout=60)
    assert junk.returncode == 0
    lines = profiler.stop()
    s = profiler.summary()
    assert lines == []
    # 2.5 MiB went each way through the socket; copied in full it would take over 300
    # records of 16 KiB. Once userspace gave up on the connection the kernel stopped.
    assert s["records"] < 150, s
    assert s["not_http"] > 0, s


DUAL_STACK_SERVER = r"""
import http.server, socket, sys
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = Server(("::", 0), Quiet)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def test_ipv6_and_ipv4_mapped_addresses_print_as_the_peer_sees_them(start_profiler):
    with python_server(DUAL_STACK_SERVER) as (_, port):
        profiler = start_profiler("--port", str(port))
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-g", f"http://[::1]:{port}/six"], check=True)
        subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/four"], check=True)
        # The probes learned the operations of TCP over both, which differ.
        state = profiler.state()
        assert state[TCP_OPS_INET] != 0 and state[TCP_OPS_INET6] != 0, state
        assert state[TCP_OPS_INET] != state[TCP_OPS_INET6], state
        lines = of_port(profiler.stop(), port)
    assert len(lines) == 8, lines
    for url, ip in (("/six", "::1"), ("/four", "127.0.0.1")):
        ex = [l for l in lines if url in (l.get("url"), (l.get("request") or {}).get("url"))]
        assert len(ex) == 4
        # The server's socket is IPv6; a v4 client reaches it as ::ffff:127.0.0.1, shown as IPv4.
        assert {(l["source_ip"], l["dest_ip"]) for l in ex} == {(ip, ip)}, ex


ONE_BIG_SEND = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
body = b"x" * int(sys.argv[2])
head = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
assert s.send(head + body) == len(head) + len(body)   # one syscall moves it all on loopback
resp = b""
while b"\r\n\r\n" not in resp or len(resp) < resp.index(b"\r\n\r\n") + 4 + len(body):
    resp += s.recv(1 << 20)
print(len(head) + len(body))
"""


def one_big_send(start_profiler, echo_server, size):
    """The client's request and the server's, for a body of `size` sent in one syscall."""
    server_pid, port = echo_server
    profiler = start_profiler("--port", str(port), "--max-body-bytes", str(8 * 1024 * 1024))
    r = subprocess.run([sys.executable, "-c", ONE_BIG_SEND, str(port), str(size)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wire = int(r.stdout)
    lines = of_port(profiler.stop(), port)
    reqs = {l["pid"] == server_pid: l for l in lines if l.get("url") == "/big"}
    return reqs[False], reqs[True], wire, profiler.summary()


def test_a_three_mib_body_in_one_write_is_copied_complete(start_profiler, echo_server):
    client, server, wire, summary = one_big_send(start_profiler, echo_server, 3 * 1024 * 1024)
    for side in (client, server):
        assert side["bytes"] == wire and side["body_size"] == 3 * 1024 * 1024
        assert not side["capture_gap"] and not side["body_truncated"] and not side["incomplete"]
        assert side["body"] == "x" * (3 * 1024 * 1024)
    assert summary["gap_bytes"] == 0, summary


def test_a_syscall_beyond_the_copy_cap_keeps_exact_sizes_and_is_flagged(start_profiler, echo_server):
    size = 5 * 1024 * 1024
    client, server, wire, summary = one_big_send(start_profiler, echo_server, size)
    # The client's single 5 MiB write: 4 MiB copied, the rest counted.
    assert client["bytes"] == wire and client["body_size"] == size
    assert client["capture_gap"] and client["body_truncated"] and not client["incomplete"]
    assert client["body"] == "x" * (4 * 1024 * 1024 - (wire - size))
    # The server read it in pieces: complete.
    assert server["bytes"] == wire and not server["capture_gap"] and not server["body_truncated"], (server["capture_gap"], summary)
    assert server["body"] == "x" * size
    # The echo server's single write of the body back is cut the same way.
    assert summary["gap_bytes"] == (wire - 4 * 1024 * 1024) + (size - 4 * 1024 * 1024), summary
