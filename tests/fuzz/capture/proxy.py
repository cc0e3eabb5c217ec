#!/usr/bin/python3
"""Recording TCP proxy for the PostgreSQL v3 protocol (capture only; CI never
runs it).

    proxy.py --listen-port-file FILE --upstream HOST:PORT --out DIR [--label-file F]

Listens on 127.0.0.1 on a port the kernel picks (written to FILE once it
listens), forwards every connection to HOST:PORT and writes each one, both
directions, as framed messages to DIR/<label>-<nnnn>.rec, where <label> is
the current first line of the label file (capture.sh writes the name of the
client session it is about to run there).

Record format, one record per message, in the order the proxy saw them:
    1 byte  direction: b'F' (frontend, client to server) or b'B' (backend)
    1 byte  kind: b'U' untyped startup-phase packet (length word first:
            StartupMessage, SSLRequest, GSSENCRequest, CancelRequest),
            b'M' typed message (type byte, length word, body), b'1' the
            one-byte answer to SSLRequest/GSSENCRequest, b'R' raw bytes that
            could not be framed (a stream after an accepted SSLRequest)
    4 bytes payload length, big-endian
    payload: the message bytes exactly as they were on the wire
Concatenating one direction's payloads gives back its byte stream.
make_seeds.py turns the records into fuzz seeds.

It runs until SIGTERM; stops cleanly then (open connections are closed).
"""

import argparse
import asyncio
import os
import signal
import struct
import sys

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


class Recorder:
    def __init__(self, path):
        self.f = open(path, "wb")

    def write(self, direction, kind, payload):
        self.f.write(direction + kind + struct.pack(">I", len(payload)) + payload)

    def close(self):
        self.f.close()


class Framer:
    """Cuts one direction's byte stream into messages."""

    def __init__(self, direction, rec, conn):
        self.direction = direction
        self.rec = rec
        self.conn = conn
        self.buf = b""
        self.raw = False

    def feed(self, data):
        self.buf += data
        while self.buf:
            if self.raw:
                self.rec.write(self.direction, b"R", self.buf)
                self.buf = b""
                return
            if self.direction == b"F" and self.conn.startup_phase:
                if len(self.buf) < 8:
                    return
                (n,) = struct.unpack(">I", self.buf[:4])
                if n < 8 or n > 1 << 20:
                    self.raw = True
                    continue
                if len(self.buf) < n:
                    return
                pkt, self.buf = self.buf[:n], self.buf[n:]
                (code,) = struct.unpack(">I", pkt[4:8])
                self.rec.write(b"F", b"U", pkt)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    self.conn.pending_single += 1
                else:
                    self.conn.startup_phase = False
                continue
            if self.direction == b"B" and self.conn.pending_single:
                b, self.buf = self.buf[:1], self.buf[1:]
                self.rec.write(b"B", b"1", b)
                self.conn.pending_single -= 1
                if b != b"N":
                    # TLS or GSS encryption accepted: no more framing
                    self.conn.encrypted = True
                    self.raw = True
                    self.conn.front.raw = True
                continue
            if len(self.buf) < 5:
                return
            (n,) = struct.unpack(">I", self.buf[1:5])
            if n < 4:
                self.raw = True
                continue
            if len(self.buf) < 1 + n:
                return
            msg, self.buf = self.buf[: 1 + n], self.buf[1 + n :]
            self.rec.write(self.direction, b"M", msg)


class Conn:
    def __init__(self, rec):
        self.startup_phase = True
        self.pending_single = 0
        self.encrypted = False
        self.front = Framer(b"F", rec, self)
        self.back = Framer(b"B", rec, self)


async def pump(reader, writer, framer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            framer.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port-file", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--label-file")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    os.makedirs(args.out, exist_ok=True)
    counter = [0]

    def label():
        if args.label_file and os.path.exists(args.label_file):
            with open(args.label_file) as f:
                s = f.readline().strip()
            if s:
                return s
        return "session"

    async def handle(creader, cwriter):
        counter[0] += 1
        rec = Recorder(os.path.join(args.out, "%s-%04d.rec" % (label(), counter[0])))
        conn = Conn(rec)
        try:
            sreader, swriter = await asyncio.open_connection(host, int(port))
        except OSError as e:
            print("proxy: upstream: %s" % e, file=sys.stderr)
            cwriter.close()
            rec.close()
            return
        await asyncio.gather(pump(creader, swriter, conn.front), pump(sreader, cwriter, conn.back))
        rec.close()

    async def run():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_ = server.sockets[0].getsockname()[1]
        tmp = args.listen_port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port_)
        os.rename(tmp, args.listen_port_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
