"""Sends requests with Python's http.client over one keep-alive connection.

Usage: keepalive_client.py PORT [--wait-before N] REQUEST...
where REQUEST is GET:/path or POST:/path:SIZE. With --wait-before N, the client opens the
connection, sends the first N requests, prints "ready", and waits for a line on stdin
before it sends the rest. For each response it prints a JSON line with its status and body
length.
"""

import http.client
import json
import sys


def main():
    port = int(sys.argv[1])
    args = sys.argv[2:]
    wait_before = None
    if args and args[0] == "--wait-before":
        wait_before = int(args[1])
        args = args[2:]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i, spec in enumerate(args):
        if wait_before is not None and i == wait_before:
            print("ready", flush=True)
            sys.stdin.readline()
        parts = spec.split(":")
        method, path = parts[0], parts[1]
        body = None
        headers = {"X-Test": f"req-{i}"}
        if method == "POST":
            size = int(parts[2])
            body = bytes((i * 7 + j) % 26 + 97 for j in range(size))
            headers["Content-Type"] = "text/plain"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        print(json.dumps({"status": resp.status, "length": len(data)}), flush=True)
    conn.close()


if __name__ == "__main__":
    sys.exit(main())
