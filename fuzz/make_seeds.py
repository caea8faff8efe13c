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


def main():
    root = Path(__file__).resolve().parent / "corpus"
    for target in ("pipeline", "parser"):
        out = root / target
        out.mkdir(parents=True, exist_ok=True)
        for name, pieces in EXCHANGES.items():
            (out / f"seed_{name}").write_bytes(encode(pieces))
            (out / f"seed_{name}_small_limits").write_bytes(encode(pieces, config=1, split=3))


if __name__ == "__main__":
    main()
