"""Real peers, the real binary, the running kernel: what each exchange writes."""

import datetime
import json
import os
import random
import socket
import subprocess
import sys
import time

from conftest import HERE, SEEDING, SOCKET_FILE_OPS, TCP_OPS_INET, keepalive_client, of_port, of_url

CLIENT, SERVER = "client", "server"


def parse_ts(s):
    # RFC 3339 with nanoseconds; Python parses microseconds.
    head, frac = s.rstrip("Z").split(".")
    return datetime.datetime.fromisoformat(f"{head}.{frac[:6]}+00:00").timestamp()


def check_exchange(lines, *, client_pid, server_pid, port, method, url, status, req_body=b"", resp_body=None, t0, t1):
    """Exactly the four lines of one exchange, each with the right fields."""
    assert len(lines) == 4, json.dumps(lines, indent=1)
    by_role = {}
    for l in lines:
        role = SERVER if l["pid"] == server_pid else CLIENT
        kind = "request" if "method" in l else "response"
        by_role[(role, kind)] = l
    assert set(by_role) == {(r, k) for r in (CLIENT, SERVER) for k in ("request", "response")}, lines
    c_req, s_req = by_role[(CLIENT, "request")], by_role[(SERVER, "request")]
    c_resp, s_resp = by_role[(CLIENT, "response")], by_role[(SERVER, "response")]
    assert c_req["pid"] == client_pid and c_resp["pid"] == client_pid
    assert c_req["direction"] == "send" and s_req["direction"] == "recv"
    assert s_resp["direction"] == "send" and c_resp["direction"] == "recv"
    for l in (c_req, s_req):
        assert l["method"] == method and l["url"] == url
        assert l["dest_port"] == port and l["source_ip"] == "127.0.0.1" and l["dest_ip"] == "127.0.0.1"
        assert l["body"].encode() == req_body and not l["body_truncated"]
        assert l["bytes"] == c_req["bytes"]
        assert "latency_ms" not in l
    for l in (c_resp, s_resp):
        assert l["status_code"] == status and l["source_port"] == port
        assert l["request"] == {"method": method, "url": url}
        assert l["latency_ms"] >= 0
        assert l["headers"]["X-Echo-Server"] == "1"
        if resp_body is not None:
            assert l["body"].encode() == resp_body and not l["body_truncated"]
        assert l["bytes"] == s_resp["bytes"]
    # Both ends see the same ports, mirrored.
    assert c_req["source_port"] == s_req["source_port"] == c_resp["dest_port"] == s_resp["dest_port"]
    for l in lines:
        assert not l["incomplete"] and not l["capture_gap"]
        assert t0 - 1 <= parse_ts(l["timestamp"]) <= t1 + 1, (l["timestamp"], t0, t1)
        assert l["http_version"] == "1.1"
    return by_role


def curl(*args):
    proc = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return proc.pid, int(out)


def test_curl_get_and_100k_post_each_write_four_lines(start_profiler, echo_server, tmp_path):
    server_pid, port = echo_server
    profiler = start_profiler("--port", str(port), "--max-body-bytes", "200000")
    body = bytes(random.Random(1).choice(b"abcdefghij") for _ in range(100 * 1024))
    (tmp_path / "body").write_bytes(body)
    t0 = time.time()
    get_pid, get_status = curl(f"http://127.0.0.1:{port}/hello?x=1")
    post_pid, post_status = curl("--data-binary", f"@{tmp_path / 'body'}", "-H", "Content-Type: text/plain", f"http://127.0.0.1:{port}/echo")
    t1 = time.time()
    lines = profiler.stop()
    assert profiler.returncode == 0
    assert (get_status, post_status) == (200, 200)
    lines = of_port(lines, port)
    get_lines = [l for l in lines if l["pid"] == get_pid or l.get("url") == "/hello?x=1" or (l.get("request") or {}).get("url") == "/hello?x=1"]
    post_lines = [l for l in lines if l not in get_lines]
    check_exchange(get_lines, client_pid=get_pid, server_pid=server_pid, port=port, method="GET", url="/hello?x=1",
                   status=200, resp_body=b'{"path": "/hello?x=1", "ok": true}', t0=t0, t1=t1)
    roles = check_exchange(post_lines, client_pid=post_pid, server_pid=server_pid, port=port, method="POST", url="/echo",
                           status=200, req_body=body, resp_body=body, t0=t0, t1=t1)
    assert roles[(CLIENT, "request")]["headers"]["Content-Length"] == str(len(body))
    assert roles[(CLIENT, "request")]["comm"] == "curl"
    assert "curl" in roles[(CLIENT, "request")]["cmdline"] and "/echo" in roles[(CLIENT, "request")]["cmdline"]
    assert roles[(SERVER, "response")]["headers"]["Content-Type"] == "text/plain"


def test_http_client_keepalive_connection_pairs_every_exchange(start_profiler, echo_server):
    server_pid, port = echo_server
    profiler = start_profiler("--port", str(port))
    t0 = time.time()
    client = keepalive_client(port, "GET:/a", "POST:/b:1000", "GET:/c?q=2", "POST:/d:5")
    out, _ = client.communicate(timeout=30)
    t1 = time.time()
    lines = of_port(profiler.stop(), port)
    assert [json.loads(l)["status"] for l in out.splitlines()] == [200] * 4
    assert len(lines) == 16
    # One connection per end: the client's and the server's.
    assert len({l["conn_id"] for l in lines}) == 2
    for url, method in [("/a", "GET"), ("/b", "POST"), ("/c?q=2", "GET"), ("/d", "POST")]:
        ex = [l for l in lines if l.get("url") == url or (l.get("request") or {}).get("url") == url]
        size = {"/b": 1000, "/d": 5}.get(url, 0)
        i = ["/a", "/b", "/c?q=2", "/d"].index(url)
        req_body = bytes((i * 7 + j) % 26 + 97 for j in range(size))
        roles = check_exchange(ex, client_pid=client.pid, server_pid=server_pid, port=port, method=method, url=url,
                               status=200, req_body=req_body, resp_body=req_body if method == "POST" else None, t0=t0, t1=t1)
        assert roles[(CLIENT, "request")]["headers"]["X-Test"] == f"req-{i}"
        assert roles[(CLIENT, "request")]["comm"].startswith("python")


def test_a_program_execd_over_a_kept_connection_is_named_anew(start_profiler, echo_server, tmp_path):
    # The kernel sends a thread's name with its first record on a connection only, and
    # the exec'd program's records on the connection it kept carry none: the exec itself
    # has to tell userspace to read the name and command line again, even when, as for
    # python3 exec'ing python3, the name stays the same.
    server_pid, port = echo_server
    renamed = tmp_path / "renamed-client"
    renamed.symlink_to(os.path.realpath(sys.executable))
    profiler = start_profiler("--port", str(port))
    t0 = time.time()
    client = subprocess.Popen(
        [sys.executable, str(HERE / "exec_client.py"), "--port", str(port), "/first",
         sys.executable, "/second", str(renamed), "/third"],
        stdout=subprocess.PIPE, text=True)
    out, _ = client.communicate(timeout=60)
    t1 = time.time()
    assert client.returncode == 0 and out.split() == ["200"] * 3, out
    lines = of_port(profiler.stop(), port)
    names = {}
    for url in ("/first", "/second", "/third"):
        roles = check_exchange(of_url(lines, url), client_pid=client.pid, server_pid=server_pid, port=port,
                               method="GET", url=url, status=200, t0=t0, t1=t1)
        request, response = roles[(CLIENT, "request")], roles[(CLIENT, "response")]
        assert (request["comm"], request["cmdline"]) == (response["comm"], response["cmdline"]), url
        names[url] = (request["comm"], request["cmdline"].split()[2:5])
    python = os.path.basename(sys.executable)[:15]
    assert names == {
        "/first": (python, ["--port", str(port), "/first"]),
        "/second": (python, ["--fd", names["/second"][1][1], "/second"]),
        "/third": ("renamed-client", ["--fd", names["/second"][1][1], "/third"]),
    }, names


def test_connection_opened_before_the_profiler_is_captured(start_profiler, echo_server):
    server_pid, port = echo_server
    client = keepalive_client(port, "GET:/before", "GET:/after", wait_before=1)
    assert json.loads(client.stdout.readline())["status"] == 200
    assert client.stdout.readline().strip() == "ready"
    profiler = start_profiler("--port", str(port))
    # The server's thread is still blocked in a read it entered before the hooks were
    # attached: the server-side request below proves that its exit found the arguments
    # (in the saved registers; with enter hooks, in the entry the profiler seeded for it).
    # With enter hooks, the entries have stopped looking for stale seeds: a thread
    # blocked for good must not cost every data syscall of the host a lookup.
    assert profiler.state()[SEEDING] == 0
    t0 = time.time()
    client.stdin.write("go\n")
    client.stdin.flush()
    out, _ = client.communicate(timeout=30)
    t1 = time.time()
    assert json.loads(out.splitlines()[0])["status"] == 200
    lines = of_port(profiler.stop(), port)
    assert not [l for l in lines if "/before" in (l.get("url"), (l.get("request") or {}).get("url"))]
    check_exchange(lines, client_pid=client.pid, server_pid=server_pid, port=port, method="GET", url="/after",
                   status=200, t0=t0, t1=t1)


DATA_SYSCALLS = ("read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg")
COMMON_PROGRAMS = {"exit_accept", "enter_close", "exit_exec", "copy_chunks"}
# Linux 5.15+: each data syscall's exit reads the arguments from the saved registers.
REGISTER_PROGRAMS = {f"exit_{s}" for s in DATA_SYSCALLS} | {"exit_sendfile", "exit_splice", "exit_connect"}
# Before: enter hooks save them for one exit program.
ENTER_HOOK_PROGRAMS = {f"enter_{s}" for s in DATA_SYSCALLS} | {
    "enter_sendfile", "enter_splice", "enter_connect", "exit_data", "exit_connect_saved"}


def test_data_syscalls_are_hooked_at_exit_only_where_the_kernel_hands_over_registers(start_profiler):
    """`make integration` runs the capture tests twice: as this kernel allows, and with
    HTTP_PROFILER_ASSUME_NO_USER_REGS as on a kernel before 5.15. Each pass must really
    run its own way."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    profiler = start_profiler()
    # Kernels without BTF for the programs show 15 characters of a name.
    names = {n[:15] for n in profiler.programs()}
    if os.environ.get("HTTP_PROFILER_ASSUME_NO_USER_REGS") or release < (5, 15):
        expected = COMMON_PROGRAMS | ENTER_HOOK_PROGRAMS
    else:
        expected = COMMON_PROGRAMS | REGISTER_PROGRAMS
    assert names == {n[:15] for n in expected}, names


def test_kernel_memory_is_read_by_plain_loads_where_the_kernel_allows(start_profiler, echo_server, monkeypatch):
    """From Linux 6.2 (the kfunc bpf_rdonly_cast) the walk from an fd to its socket reads
    kernel memory by plain loads, not helper calls. A kernel that refuses those programs
    gets them again with helper calls, and the profiler says so and captures the same.
    The pass that assumes a kernel before 5.15 runs the helper calls from the start."""
    _, port = echo_server
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    by_loads = release >= (6, 2) and not os.environ.get("HTTP_PROFILER_ASSUME_NO_USER_REGS")
    refusal = "the kernel refused the probes that read its memory by plain loads"
    for refused in (False, True):
        if refused:
            monkeypatch.setenv("HTTP_PROFILER_ASSUME_CAST_REFUSED", "1")
        profiler = start_profiler("-v", "--port", str(port))
        _, status = curl(f"http://127.0.0.1:{port}/loads")
        lines = of_port(profiler.stop(), port)
        assert profiler.returncode == 0 and status == 200
        assert sorted((l["direction"], l.get("url") or l["request"]["url"]) for l in lines) == sorted(
            (d, "/loads") for d in ("send", "recv") for _ in range(2)), lines
        stderr = profiler.stderr_path.read_text()
        assert (refusal in stderr) == (refused and by_loads), stderr
        assert ("read kernel memory by plain loads" in stderr) == (by_loads and not refused), stderr


def test_sigterm_during_traffic_exits_cleanly_and_detaches(start_profiler, echo_server):
    _, port = echo_server
    profiler = start_profiler()
    load = subprocess.Popen(
        ["bash", "-c", f"for i in $(seq 400); do curl -s -o /dev/null http://127.0.0.1:{port}/load$i || exit 1; done"]
    )
    time.sleep(1.5)
    assert load.poll() is None, "the load ended before the signal: it must still be running"
    held = set()
    for fd in os.listdir(f"/proc/{profiler.proc.pid}/fdinfo"):
        with open(f"/proc/{profiler.proc.pid}/fdinfo/{fd}") as f:
            held.update(int(l.split()[1]) for l in f if l.startswith("prog_id:"))
    assert len(held) >= 10, held
    profiler.proc.send_signal(15)
    assert profiler.proc.wait(timeout=30) == 0
    load.wait(timeout=120)
    raw = profiler.raw()
    assert raw.endswith(b"\n")
    lines = [json.loads(l) for l in raw.decode().splitlines()]
    assert len(lines) > 10
    # The programs it had loaded are gone (other profilers on the host may hold their own).
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout)
    assert not held & {p["id"] for p in progs}, held


def test_a_threads_file_reads_and_writes_between_its_socket_ones_give_no_record(start_profiler, tmp_path):
    """The probes keep a thread's saved syscall arguments after the exit that used them
    (marked used) and write its next ones over them. A thread that reads and writes a
    socket with read(2) and write(2), and between them reads and writes files holding
    HTTP with the same syscalls, must have its exchanges written once each and nothing
    of the files."""
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"GET /from-file HTTP/1.1\r\nHost: x\r\n\r\n")
    script = f"""
import os, socket
s = socket.create_server(('127.0.0.1', 0)); c = socket.create_connection(s.getsockname()); a, _ = s.accept()
f = os.open({str(decoy)!r}, os.O_RDONLY)
out = os.open({str(tmp_path / "out")!r}, os.O_WRONLY | os.O_CREAT)
for i in range(20):
    c.sendall(b'GET /%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' % i)
    while not os.read(a.fileno(), 65536).endswith(b'\\r\\n\\r\\n'):
        pass
    os.lseek(f, 0, 0)
    assert os.read(f, 65536).startswith(b'GET /from-file')
    os.write(a.fileno(), b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')
    os.write(out, b'HTTP/1.1 404 Not Found\\r\\nContent-Length: 2\\r\\n\\r\\nno')
    os.lseek(f, 0, 0)
    os.read(f, 65536)
    got = b''
    while not got.endswith(b'ok'):
        got += c.recv(65536)
"""
    profiler = start_profiler()
    subprocess.run(["python3", "-c", script], check=True, timeout=60)
    # The probes have learned the address of the kernel's socket file operations, by which
    # they tell sockets from files after the first socket: the lines below show that the
    # files' reads and writes were told apart from the socket's.
    state = profiler.state()
    assert state[SOCKET_FILE_OPS] != 0, state
    lines = profiler.stop()
    assert profiler.returncode == 0
    requests = sorted(l["url"] for l in lines if "method" in l)
    assert requests == sorted(f"/{i}" for i in range(20) for _ in ("sent", "received")), requests
    responses = [l for l in lines if "status_code" in l]
    assert len(responses) == 40, json.dumps(lines, indent=1)
    assert all(l["status_code"] == 200 and l["body"] == "ok" for l in responses), responses
    assert not any(l["incomplete"] or l["capture_gap"] for l in lines), lines


def test_sockets_on_either_side_of_the_first_fd_table_are_captured(start_profiler):
    """A process starts on the fd array inside its files_struct (64 entries); past 64 fds
    the kernel moves it to a larger table, and the first array is left as it was.
    Exchanges on low fds before the move, on a high fd, on a low fd after it, and on a low
    fd freed and reused for a socket after it (whose stale entry in the first array is
    the file it held before) are each written once: a walk from an fd to its socket that
    read the first array after the move, or kept an fd's socket from before, would lose
    the last."""
    script = """
import os, socket
s = socket.create_server(('127.0.0.1', 0))
def pair():
    c = socket.create_connection(s.getsockname()); a, _ = s.accept(); return c, a
def exchange(c, a, tag):
    c.sendall(b'GET /%s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' % tag)
    got = b''
    while not got.endswith(b'\\r\\n\\r\\n'):
        got += a.recv(65536)
    a.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')
    got = b''
    while not got.endswith(b'ok'):
        got += c.recv(65536)
c, a = pair()
assert a.fileno() < 64
exchange(c, a, b'low-before')
filler = [os.open('/dev/null', os.O_RDONLY) for _ in range(100)]
high = pair()
assert high[1].fileno() >= 64
exchange(*high, b'high')
exchange(c, a, b'low-after')
os.close(filler[0])
reused = pair()
assert reused[0].fileno() == filler[0], (reused[0].fileno(), filler[0])
exchange(*reused, b'reused')
"""
    profiler = start_profiler()
    subprocess.run(["python3", "-c", script], check=True, timeout=60)
    lines = profiler.stop()
    assert profiler.returncode == 0
    tags = ("low-before", "high", "low-after", "reused")
    requests = sorted(l["url"] for l in lines if "method" in l)
    assert requests == sorted(f"/{t}" for t in tags for _ in ("sent", "received")), requests
    responses = [l for l in lines if "status_code" in l]
    assert sorted(l["request"]["url"] for l in responses) == requests, responses
    assert not any(l["incomplete"] or l["capture_gap"] for l in lines), lines


def test_files_pipes_udp_and_non_http_tcp_give_no_record(start_profiler, tmp_path):
    profiler = start_profiler()
    big = tmp_path / "big"
    big.write_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 200000)
    subprocess.run(["cp", str(big), str(tmp_path / "copy")], check=True)
    subprocess.run(f"cat {big} | cat > /dev/null", shell=True, check=True)
    # UDP datagrams whose payload is HTTP text.
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(20):
        tx.sendto(b"GET /udp HTTP/1.1\r\nHost: x\r\n\r\n", rx.getsockname())
        rx.recvfrom(4096)
    # A TCP connection carrying random bytes, from another process so that the profiler
    # (which ignores the test runner only if it is itself) sees both ends; before and
    # after it, Unix stream sockets carrying HTTP text. The probes learn TCP's socket
    # operations from the TCP connection and tell TCP by them from then on: the Unix
    # sockets after it must still be told apart.
    script = (
        "import os, socket\n"
        "def unix():\n"
        "    u, v = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "    for _ in range(20):\n"
        "        u.sendall(b'GET /unix HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); v.recv(65536)\n"
        "        v.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'); u.recv(65536)\n"
        "unix()\n"
        "s = socket.create_server(('127.0.0.1', 0)); c = socket.create_connection(s.getsockname()); a, _ = s.accept()\n"
        "for _ in range(50):\n"
        "    c.sendall(b'\\x16\\x03' + os.urandom(4094)); n = 0\n"
        "    while n < 4096: n += len(a.recv(65536))\n"
        "    a.sendall(os.urandom(1000)); n = 0\n"
        "    while n < 1000: n += len(c.recv(65536))\n"
        "unix()\n"
    )
    subprocess.run(["python3", "-c", script], check=True)
    # The operations of TCP over IPv4 were learned.
    state = profiler.state()
    assert state[TCP_OPS_INET] != 0, state
    lines = profiler.stop()
    assert profiler.returncode == 0
    assert lines == []
    s = profiler.summary()
    assert s["records"] == 0, s
    # cp, two cats, python3 and the shell: their execs were noted, as no traffic.
    assert s["execs"] >= 5, s
    # The TCP connection was seen, examined and left alone in the kernel.
    assert s["not_http"] > 0, s
