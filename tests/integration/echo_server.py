"""A keep-alive HTTP/1.1 server built on Python's http.server for the integration tests.

GET answers a small JSON document; POST echoes the request body with its Content-Type.
It prints its port on the first line of stdout once it listens.
"""

import http.server
import json
import sys


# A read of the whole body at once lets one recv return everything the socket holds, and a
# server scheduled late finds more than the probes' 4 MiB copy cap there: the tests that say
# "the server read it in pieces" need every server read below that cap, whatever the timing.
READ_PIECE = 1024 * 1024


def read_in_pieces(stream, length):
    pieces = []
    while length > 0:
        piece = stream.read1(min(length, READ_PIECE))
        if not piece:
            break
        pieces.append(piece)
        length -= len(piece)
    return b"".join(pieces)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Echo-Server", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        body = json.dumps({"path": self.path, "ok": True}).encode()
        self._reply(200, body, "application/json")

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = read_in_pieces(self.rfile, length)
        self._reply(200, body, self.headers.get("Content-Type", "application/octet-stream"))

    do_PUT = do_POST


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
