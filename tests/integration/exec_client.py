"""Sends requests over one kept-alive connection from a chain of programs, each exec'd by
the one before it with the connection left open across the exec.

Usage: exec_client.py --port PORT PATH [PROGRAM PATH]...
       exec_client.py --fd FD PATH [PROGRAM PATH]...
Sends GET PATH and reads the response (printing its status), waits a second, then execs
PROGRAM (a Python interpreter, under whatever name) with this script and the rest of
the steps, passing the connection's fd. The wait lets whoever watches read each
program's name and command line from /proc while it runs.
"""

import http.client
import os
import socket
import sys
import time


def main():
    how, where, path, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    if how == "--port":
        sock = socket.create_connection(("127.0.0.1", int(where)))
    else:
        sock = socket.socket(fileno=int(where))
    # http.client over the connection this program was handed: it opens none of its own.
    conn = http.client.HTTPConnection("127.0.0.1")
    conn.sock = sock
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    print(response.status, flush=True)
    time.sleep(1)
    if rest:
        os.set_inheritable(sock.fileno(), True)
        program, rest = rest[0], rest[1:]
        os.execv(program, [program, __file__, "--fd", str(sock.fileno()), *rest])
    sock.close()


if __name__ == "__main__":
    main()
