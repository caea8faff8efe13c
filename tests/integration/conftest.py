"""Fixtures for the privileged integration tests: the real http-profiler binary, loaded
into the running kernel, watching real peers. They need root and BPF; where those are
missing they fail with the reason, they never skip."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("HTTP_PROFILER", ROOT / "target" / "release" / "http-profiler"))
HERE = Path(__file__).resolve().parent

# Indexes of the probes' STATE map that the tests read (http_profiler_common::state).
SEEDING = 0
SOCKET_FILE_OPS = 3
TCP_OPS_INET = 4
TCP_OPS_INET6 = 5


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("the integration tests load eBPF probes: run them as root (make test does)", returncode=2)
    if not BINARY.exists():
        pytest.exit(f"{BINARY} is missing: run `make build` first (make test does)", returncode=2)


class Profiler:
    """A running http-profiler writing to a file in a temporary directory."""

    def __init__(self, tmp_path, *args, name="profiler", output=None):
        self.output = output or tmp_path / f"{name}.jsonl"
        self.stderr_path = tmp_path / f"{name}.stderr"
        self.stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(
            [str(BINARY), "--output", str(self.output), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        deadline = time.time() + 30
        while "capturing" not in self.stderr_path.read_text():
            if self.proc.poll() is not None:
                raise AssertionError(f"http-profiler exited {self.proc.returncode}: {self.stderr_path.read_text()}")
            if time.time() > deadline:
                raise AssertionError(f"http-profiler did not start: {self.stderr_path.read_text()}")
            time.sleep(0.05)
        self.returncode = None

    def stop(self, sig=signal.SIGTERM):
        """Stops the profiler; returns its parsed JSON lines."""
        # Records still in flight reach the ring buffer within microseconds; give the
        # reader a moment before the stop.
        time.sleep(0.5)
        self.proc.send_signal(sig)
        self.returncode = self.proc.wait(timeout=30)
        self.stderr.close()
        return self.lines()

    def raw(self):
        return self.output.read_bytes() if self.output.exists() else b""

    def lines(self):
        return [json.loads(line) for line in self.raw().decode().splitlines()]

    def map_entries(self, name):
        """The entries of the running profiler's BPF map `name`: (key, value) pairs of
        bytes (bpftool)."""
        ids = set()
        for fd in os.listdir(f"/proc/{self.proc.pid}/fdinfo"):
            with open(f"/proc/{self.proc.pid}/fdinfo/{fd}") as f:
                ids.update(int(l.split()[1]) for l in f if l.startswith("map_id:"))
        for map_id in ids:
            show = subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)], capture_output=True, text=True, check=True)
            if json.loads(show.stdout).get("name") == name:
                dump = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)], capture_output=True, text=True, check=True)
                return [tuple(bytes(int(b, 16) for b in e[part]) for part in ("key", "value")) for e in json.loads(dump.stdout)]
        raise AssertionError(f"the profiler holds no map {name} (maps {sorted(ids)})")

    def programs(self):
        """Names of the BPF programs the running profiler holds (bpftool; the kernel keeps
        15 characters of a name)."""
        progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True, check=True).stdout)
        held = our_programs(self.proc.pid)
        return {p["name"] for p in progs if p["id"] in held}

    def state(self):
        """The running profiler's STATE map: index -> value (unsigned)."""
        return {int.from_bytes(k, sys.byteorder): int.from_bytes(v, sys.byteorder) for k, v in self.map_entries("STATE")}

    def summary(self):
        """The counters of the exit summary."""
        text = self.stderr_path.read_text()
        m = re.search(
            r"(\d+) messages written .*ring buffer: (\d+) records, (\d+) dropped; (\d+) bytes not captured; "
            r"(\d+) syscalls on connections that are not HTTP; (\d+) connections left as not HTTP"
            r".*; (\d+) execs of selected processes",
            text,
        )
        assert m, f"no summary in stderr: {text}"
        keys = ["messages", "records", "dropped", "gap_bytes", "not_http", "left_not_http", "execs"]
        return dict(zip(keys, map(int, m.groups())))


def our_programs(pid):
    """IDs of the BPF programs process `pid` holds open (from /proc/PID/fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        ids |= {int(l.split()[1]) for l in info.splitlines() if l.startswith("prog_id:")}
    return ids


@pytest.fixture
def start_profiler(tmp_path):
    started = []

    def start(*args, output=None):
        p = Profiler(tmp_path, *args, name=f"profiler{len(started)}", output=output)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture
def echo_server():
    """A Python http.server that echoes POST bodies; yields (pid, port)."""
    with running_echo_server() as server:
        yield server


@contextmanager
def running_echo_server():
    """Runs echo_server.py (a Python http.server that echoes POST bodies); yields (pid, port)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "echo_server.py")], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.pid, int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def python_server(script):
    """Runs a Python server `script` that prints its port first; yields (process, port)."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        yield proc, int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait()


def keepalive_client(port, *requests, wait_before=None):
    args = [sys.executable, str(HERE / "keepalive_client.py"), str(port)]
    if wait_before is not None:
        args += ["--wait-before", str(wait_before)]
    return subprocess.Popen(args + list(requests), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def of_port(lines, port):
    """The lines of connections to or from `port`."""
    return [l for l in lines if port in (l["source_port"], l["dest_port"])]


@pytest.fixture
def demo_server():
    """demo-server on an ephemeral port; yields (pid, port)."""
    proc = subprocess.Popen([str(ROOT / "target" / "release" / "demo-server"), "--listen", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+)$", proc.stderr.readline().strip()).group(1))
    yield proc.pid, port
    proc.terminate()
    proc.wait()


@pytest.fixture
def node_server():
    """The Node.js server of node_peer.js; yields (pid, port)."""
    proc = subprocess.Popen(["node", str(HERE / "node_peer.js"), "server"], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    yield proc.pid, port
    proc.terminate()
    proc.wait()


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx(tmp_path, demo_server):
    """nginx serving a 2 MiB static file (sendfile on) and proxying /proxy/ to demo-server
    over kept-alive upstream connections; yields (port, static file bytes, demo port)."""
    _, demo_port = demo_server
    root = tmp_path / "nginx"
    (root / "www").mkdir(parents=True)
    (root / "tmp").mkdir()
    static = os.urandom(2 * 1024 * 1024)
    (root / "www" / "file.bin").write_bytes(static)
    port = free_port()
    temp = "".join(f"    {k}_temp_path {root}/tmp;\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (root / "nginx.conf").write_text(f"""
daemon off;
user root;  # the worker reads the static file from a root-only temp directory
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
{temp}
    upstream demo {{ server 127.0.0.1:{demo_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location /proxy/ {{ proxy_pass http://demo/; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)])
    for _ in range(100):
        if subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/proxy/healthz"]).returncode == 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"nginx did not start: {(root / 'error.log').read_text()}")
    yield port, static, demo_port
    proc.terminate()
    proc.wait()


def of_url(lines, url):
    """The lines of the exchanges for `url`: requests to it and responses to those."""
    return [l for l in lines if url in (l.get("url"), (l.get("request") or {}).get("url"))]
