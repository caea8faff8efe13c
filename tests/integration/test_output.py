"""The output file: owner-only, credentials hidden, reopened on SIGHUP, and a full disk
that loses no line once space is back."""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

from conftest import free_port

SECRETS = {
    "Authorization": "Bearer tok-9f8e7d",
    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
    "Cookie": "session=cookie-5a4b3c",
    "X-Api-Key": "key-1a2b3c",
}
SET_COOKIE = "sid=server-set-77aa; HttpOnly"


class CookieServer:
    """A keep-alive server that answers every request with a Set-Cookie header."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)
                body = b"ok"
                conn.sendall(
                    f"HTTP/1.1 200 OK\r\nSet-Cookie: {SET_COOKIE}\r\nX-Plain: visible\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                )

    def close(self):
        self.sock.close()


class Client:
    """One kept-alive connection sending GET requests with credentials."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sent = 0

    def get(self, path="/r"):
        head = "".join(f"{k}: {v}\r\n" for k, v in SECRETS.items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Plain: visible\r\n{head}\r\n".encode())
        got = b""
        while not got.endswith(b"ok"):
            got += self.sock.recv(65536)
        self.sent += 1


def summary_counts(stderr):
    m = re.search(r"(\d+) messages written .* (\d+) write failures, (\d+) lines dropped by them", stderr)
    assert m, stderr
    return tuple(map(int, m.groups()))


def test_credentials_are_redacted_by_default(start_profiler):
    server = CookieServer()
    profiler = start_profiler("--port", str(server.port), "--redact-header", "x-api-key")
    client = Client(server.port)
    for _ in range(3):
        client.get()
    lines = profiler.stop()
    server.close()
    raw = profiler.raw().decode()
    assert len(lines) == 12, lines
    for secret in [*SECRETS.values(), SET_COOKIE, "tok-9f8e7d", "cookie-5a4b3c", "server-set-77aa"]:
        assert secret not in raw
    for l in lines:
        assert l["headers"]["X-Plain"] == "visible"
        assert "X-Plain: visible" in l["raw_payload"]
        names = SECRETS if "method" in l else {"Set-Cookie": SET_COOKIE}
        for name in names:
            assert l["headers"][name] == "[REDACTED]", l
            assert f"{name}: [REDACTED]\r\n" in l["raw_payload"], l["raw_payload"]


def test_no_redact_keeps_credentials_and_warns(start_profiler):
    server = CookieServer()
    profiler = start_profiler("--port", str(server.port), "--no-redact")
    client = Client(server.port)
    client.get()
    lines = profiler.stop()
    server.close()
    assert "--no-redact" in profiler.stderr_path.read_text()
    requests = [l for l in lines if "method" in l]
    responses = [l for l in lines if "status_code" in l]
    assert len(requests) == 2 and len(responses) == 2
    for l in requests:
        for name, value in SECRETS.items():
            assert l["headers"][name] == value
            assert f"{name}: {value}" in l["raw_payload"]
    for l in responses:
        assert l["headers"]["Set-Cookie"] == SET_COOKIE


def test_output_file_is_owner_only(tmp_path, start_profiler):
    os.umask(0)
    try:
        profiler = start_profiler("--port", "9")
        assert stat.S_IMODE(os.stat(profiler.output).st_mode) == 0o600
        profiler.stop()
        # An existing file that others could read is narrowed before anything is written.
        wide = tmp_path / "profiler1.jsonl"
        wide.write_text("")
        os.chmod(wide, 0o644)
        profiler = start_profiler("--port", "9")
        assert profiler.output == wide
        assert stat.S_IMODE(os.stat(wide).st_mode) == 0o600
        profiler.stop()
        assert "now 600" in profiler.stderr_path.read_text()
    finally:
        os.umask(0o022)


def test_sighup_reopens_the_file_and_loses_nothing(start_profiler):
    server = CookieServer()
    profiler = start_profiler("--port", str(server.port))
    client = Client(server.port)
    stop = threading.Event()

    def send():
        while not stop.is_set():
            client.get()
            time.sleep(0.002)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1)
    rotated = profiler.output.with_suffix(".jsonl.1")
    os.rename(profiler.output, rotated)
    profiler.proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    stop.set()
    sender.join()
    new_lines = profiler.stop()
    server.close()
    assert profiler.returncode == 0
    old_lines = [json.loads(l) for l in rotated.read_text().splitlines()]
    assert old_lines and new_lines, (len(old_lines), len(new_lines))
    assert stat.S_IMODE(os.stat(profiler.output).st_mode) == 0o600
    # Every request the client sent, once per side, across the two files.
    sent_requests = [l for l in old_lines + new_lines if "method" in l and l["direction"] == "send"]
    assert len(sent_requests) == client.sent, (len(sent_requests), client.sent)
    assert len(old_lines) + len(new_lines) == 4 * client.sent
    assert summary_counts(profiler.stderr_path.read_text())[1:] == (0, 0)


def test_a_full_disk_is_logged_once_and_writing_resumes(tmp_path, start_profiler):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], check=True)
    try:
        server = CookieServer()
        out = disk / "events.jsonl"
        profiler = start_profiler("--port", str(server.port), output=out)
        client = Client(server.port)
        client.get()
        time.sleep(0.5)
        # Fill the disk to the last byte.
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
        for _ in range(20):
            client.get()
            time.sleep(0.05)
        time.sleep(1)
        stderr = profiler.stderr_path.read_text()
        assert stderr.count("No space left on device") == 1, stderr
        filler.unlink()
        for _ in range(5):
            client.get()
        lines = profiler.stop()
        server.close()
        stderr = profiler.stderr_path.read_text()
        assert stderr.count("No space left on device") == 1, stderr
        assert "works again" in stderr
        written, failures, dropped = summary_counts(stderr)
        assert (failures, dropped) == (1, 0)
        # Every line whole and valid (lines() parses each), none lost while the disk was full.
        assert len(lines) == written == 4 * client.sent == 4 * 26
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
