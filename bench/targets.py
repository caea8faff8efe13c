"""The services under load: nginx returning a small fixed body from its own config in a
temporary directory, and demo-server. Each listens on a port of its own on loopback."""

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# reuseport: each worker has its own listening socket and the kernel spreads the
# connections over them by their addresses. Without it, whichever worker wakes first
# accepts most of wrk's 50 connections, and the no-profiler baseline swung between 147k
# and 344k requests/s from one run to the next on a 2-CPU machine (200k-214k with it).
NGINX_CONF = """daemon off;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=16384 reuseport;
        location / {{ default_type text/plain; return 200 "hello from nginx\\n"; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target:
    """A running service: its name, the comm its processes have, its URL."""

    def __init__(self, name, comm, proc, port):
        self.name, self.comm, self.proc, self.port = name, comm, proc, port
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{name} did not start on port {port}")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def nginx(workdir: Path) -> Target:
    d = workdir / "nginx"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, port=port))
    proc = subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)])
    return Target("nginx", "nginx", proc, port)


def demo_server(workdir: Path) -> Target:
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / "target/release/demo-server"), "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    return Target("demo-server", "demo-server", proc, port)
