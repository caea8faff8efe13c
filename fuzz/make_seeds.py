"""Writes the seed corpus: real HTTP/1.x exchanges, each cut into syscall-sized pieces
for both directions, in the input format of fuzz/src/lib.rs. Run from the repository
root: python3 fuzz/make_seeds.py"""

import struct
from pathlib import Path

EXCHANGES = {
    "get_keepalive": [
        (0, b"GET /api/items?id=7 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"),
        (1, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"items\":[7]}"),
        (0, b"GET /healthz HTTP/1.1\r\nHost: example.test\r\n\r\n"),
        (1, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
    "post_body": [
        (0, b"POST /echo HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc\r\nContent-Length: 11\r\n\r\nhello world"),
        (1, b"HTTP/1.1 201 Created\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\nok"),
    ],
    "chunked_trailers": [
        (0, b"GET /chunked HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n"),
        (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"),
    ],
    "continue_100": [
        (0, b"PUT /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        (1, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (0, b"data"),
        (1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ],
    "head_and_304": [
        (0, b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\nGET /cached HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n"),
        (1, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
    ],
    "http10_until_close": [
        (0, b"GET / HTTP/1.0\r\n\r\n"),
        (1, b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\n<html>until close</html>"),
    ],
    "upgrade_101": [
        (0, b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        (1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"),
    ],
}


def encode(pieces, config=0, split=7):
    ops, data = [], b""
    for direction, payload in pieces:
        # Cut each message into two syscalls at an arbitrary point.
        cut = min(split, len(payload))
        for part in (payload[:cut], payload[cut:]):
            if part:
                ops.append(struct.pack("<BBH", 0, direction, len(part)))
                data += part
    ops.append(struct.pack("<BBH", 4, 0, 0))  # close
    return bytes([config, len(ops)]) + b"".join(ops) + data


def start_line_of(length, method=b"GET"):
    """A request line of exactly `length` bytes with its CRLF."""
    fixed = len(method) + len(b" / HTTP/1.1\r\n")
    return method + b" /" + b"u" * (length - fixed) + b" HTTP/1.1\r\n"


# For known_fields: start lines parsed in turn with the same field lines after them.
KNOWN_FIELDS = {
    "requests": (
        [b"GET /a HTTP/1.1\r\n", b"POST /b?q=1 HTTP/1.0\r\n", b"GET /c HTTP/1.1\n"],
        b"Host: example.test\r\nAccept: */*\r\nContent-Length: 5\r\n\r\n",
    ),
    "responses": (
        [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 404 Not Found\r\n", b"HTTP/1.1 204 \xffNo\r\n"],
        b"Date: Mon, 07 Dec 2026 02:00:00 GMT\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    ),
    "bad_start_lines": (
        [b"GET / HTTP/1.1\r\n", b"GET / HTTP/9.1\r\n", b"HTTP/1.1 2000 OK\r\n", b"G\x01T / HTTP/1.1\r\n"],
        b"A: 1\r\n\r\n",
    ),
    "no_fields": ([b"GET / HTTP/1.1\r\n", b"PUT /p HTTP/1.1\r\n"], b"\r\n"),
    # Around the longest start line parsed alone (512 bytes with its line end).
    "long_start_lines": (
        [start_line_of(n) for n in (64, 511, 512, 513, 514, 515)],
        b"Host: h\r\n\r\n",
    ),
}


def main():
    root = Path(__file__).resolve().parent / "corpus"
    for target in ("pipeline", "parser"):
        out = root / target
        out.mkdir(parents=True, exist_ok=True)
        for name, pieces in EXCHANGES.items():
            (out / f"seed_{name}").write_bytes(encode(pieces))
            (out / f"seed_{name}_small_limits").write_bytes(encode(pieces, config=1, split=3))
    out = root / "known_fields"
    out.mkdir(parents=True, exist_ok=True)
    for name, (start_lines, field_lines) in KNOWN_FIELDS.items():
        seed = bytes([len(start_lines) - 1]) + b"".join(start_lines) + field_lines
        (out / f"seed_{name}").write_bytes(seed)


if __name__ == "__main__":
    main()
