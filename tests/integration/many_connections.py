"""Opens N connections to 127.0.0.1:PORT at once, sends one GET on each, reads each
answer, prints "done", and holds them all open until stdin closes.

Usage: many_connections.py PORT N"""

import resource
import socket
import sys


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError):
        if hard < need:
            sys.exit(f"need {need} open files, the hard limit is {hard}: raise it (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    raise_fd_limit(n + 100)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /c%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
        socks.append(s)
    for s in socks:
        answer = s.recv(100)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
    print("done", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
