"""The load generator: raw WebSocket clients in worker processes, driven over pipes.

The same generator drives webchat and python-socketio, so the two systems are
measured with one yardstick. It must not be the bottleneck, so each worker is
a bare ``select.epoll`` loop over non-blocking sockets (no asyncio, no
per-connection objects beyond one small slotted record) and it does the least
it can per frame: it walks the WebSocket frame headers, counts the frames that
carry the benchmark's marker and, only when latency is being recorded, reads
the sequence number and send time that the pusher wrote into the message at a
fixed place after the marker.

Every benchmark message contains ``~L<seq:8><send time:17>~``, the send time
being ``time.time()`` in the pusher's process just before its push call. While
latency is recorded, sockets are read with ``recvmsg`` and the kernel's receive
timestamp (SO_TIMESTAMPNS, the same CLOCK_REALTIME) says when the frame reached
the recipient's socket: so the figure is push call → delivered, and does not
grow when the generator itself is slow to get the CPU on a small machine.

Each worker binds its sockets to its own 127.0.0.x source address (with
IP_BIND_ADDRESS_NO_PORT, so ports are picked per destination) and holds at
most :data:`MAX_PER_WORKER` connections, below the machine's 20,000 open-files
limit per process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import select
import socket
import struct
import time
from typing import Any

__all__ = ["MARK", "MAX_PER_WORKER", "LoadGen", "make_message"]

MARK = b"~L"
_SEQ_END = 2 + 8
_TS_END = _SEQ_END + 17
MAX_PER_WORKER = 19_000
#: Connections a worker has in flight (TCP connect or HTTP upgrade) at once;
#: more would overflow the servers' accept backlogs and cost SYN retries.
_CONNECTING_AT_ONCE = 256
#: Bytes asked of one read. Measured here: recv(262144) cost ~18 µs even for a
#: 102-byte frame (glibc maps and unmaps a buffer that size on every call),
#: recv(65536) ~2.5 µs; in paced runs, where each read finds one frame, the
#: larger size made the generator spend ~29 µs per frame and take CPU from
#: the server it measures.
_READ_SIZE = 65536
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")

_WEBCHAT, _SOCKETIO = "webchat", "socketio"
# Connection states.
_CONNECTING, _UPGRADING, _HANDSHAKING, _OPEN, _CLOSED = range(5)


def make_message(seq: int, size: int = 100, sent_at: float | None = None) -> str:
    """A benchmark message of ``size`` characters carrying ``seq`` and its send time."""
    head = f"~L{seq:08d}{time.time() if sent_at is None else sent_at:017.6f}~"
    return head + "x" * (size - len(head))


def _client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame; a zero mask is legal and leaves the payload as it is."""
    if len(payload) >= 126:
        raise ValueError("control frames of the generator are short")
    return bytes((0x80 | opcode, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload


_SIO_CONNECT = _client_frame(b"40")
_SIO_PONG = _client_frame(b"3")
_WEBCHAT_PONG = _client_frame(b'{"type":"pong"}')


class _Conn:
    __slots__ = ("buf", "client_id", "sock", "stalled", "state")

    def __init__(self, sock: socket.socket, stalled: bool) -> None:
        self.sock = sock
        self.state = _CONNECTING
        self.buf = b""
        self.client_id = ""
        self.stalled = stalled


class _Worker:
    """One load-generating process: its connections, counters and command loop."""

    def __init__(self, pipe: Any, source_ip: str) -> None:
        self.pipe = pipe
        self.source_ip = source_ip
        self.ep = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.stalled: list[_Conn] = []
        self.frames = 0
        self.last_arrival = 0.0
        self.record = False
        # seq -> [frames seen, largest latency]; the largest is the last recipient's.
        self.seqs: dict[int, list[float]] = {}
        self.closed_by_server = 0
        self.pending_connect: dict[str, Any] | None = None

    # -- connection set-up ------------------------------------------------------

    def _start_connect(self, job: dict[str, Any]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if job["stall"]:
            # A small receive buffer makes a client that never reads push back on
            # the server after a few kilobytes, as a stuck browser does after its
            # network buffers fill; loopback buffers would otherwise swallow megabytes.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((self.source_ip, 0))
        err = sock.connect_ex((job["host"], job["port"]))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            job["failed"] += 1
            return
        conn = _Conn(sock, job["stall"])
        self.conns[sock.fileno()] = conn
        self.ep.register(sock.fileno(), select.EPOLLOUT)
        job["inflight"] += 1

    def _finish_setup(self, conn: _Conn, ok: bool) -> None:
        job = self.pending_connect
        if job is None:
            return
        job["inflight"] -= 1
        if ok:
            job["ready"] += 1
            job["client_ids"].append(conn.client_id)
            if conn.stalled:
                # From here on nobody reads this socket: it is the never-reading client.
                self.ep.unregister(conn.sock.fileno())
                del self.conns[conn.sock.fileno()]
                self.stalled.append(conn)
        else:
            job["failed"] += 1
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            del self.conns[fd]
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(fd)
        conn.state = _CLOSED
        conn.sock.close()

    def _on_writable(self, conn: _Conn) -> None:
        job = self.pending_connect
        if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or job is None:
            self._finish_setup(conn, False)
            return
        request = (
            f"GET {job['path']} HTTP/1.1\r\nHost: {job['host']}:{job['port']}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        conn.sock.send(request)
        conn.state = _UPGRADING
        self.ep.modify(conn.sock.fileno(), select.EPOLLIN)

    def _on_upgrade_data(self, conn: _Conn, data: bytes) -> None:
        buf = conn.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            conn.buf = buf
            return
        if b" 101 " not in buf[: buf.find(b"\r\n")]:
            self._finish_setup(conn, False)
            return
        conn.buf = b""
        conn.state = _HANDSHAKING
        if len(buf) > end + 4:
            self._on_frames(conn, buf[end + 4 :], time.time(), time.monotonic())

    def _on_handshake_frame(self, conn: _Conn, payload: bytes) -> None:
        job = self.pending_connect
        kind = job["kind"] if job else _WEBCHAT
        if kind == _WEBCHAT:
            try:
                first = json.loads(payload)
            except ValueError:
                return
            if isinstance(first, dict) and first.get("type") == "init":
                conn.client_id = str(first.get("client_id"))
                conn.state = _OPEN
                self._finish_setup(conn, True)
        elif payload[:1] == b"0":
            # Engine.IO "open": now connect to the default Socket.IO namespace.
            conn.sock.send(_SIO_CONNECT)
        elif payload[:2] == b"40":
            conn.client_id = payload[2:].decode(errors="replace")
            conn.state = _OPEN
            self._finish_setup(conn, True)
        elif payload[:2] == b"44":
            self._finish_setup(conn, False)

    # -- the hot path -----------------------------------------------------------

    def _on_frames(self, conn: _Conn, data: bytes, now: float, mono: float) -> None:
        """Walk the frames in ``data``; ``now`` is when it arrived (CLOCK_REALTIME), ``mono`` on the monotonic clock."""
        buf = conn.buf + data if conn.buf else data
        i, n = 0, len(buf)
        while n - i >= 2:
            length = buf[i + 1] & 0x7F
            if length < 126:
                start = i + 2
            elif length == 126:
                if n - i < 4:
                    break
                length = (buf[i + 2] << 8) | buf[i + 3]
                start = i + 4
            else:
                if n - i < 10:
                    break
                length = int.from_bytes(buf[i + 2 : i + 10], "big")
                start = i + 10
            end = start + length
            if end > n:
                break
            opcode = buf[i] & 0x0F
            i = end
            if opcode == 1 or opcode == 2:
                j = buf.find(MARK, start, end)
                if j >= 0:
                    self.frames += 1
                    self.last_arrival = mono
                    if self.record:
                        latency = now - float(buf[j + _SEQ_END : j + _TS_END])
                        seq = int(buf[j + 2 : j + _SEQ_END])
                        seen = self.seqs.get(seq)
                        if seen is None:
                            self.seqs[seq] = [1, latency]
                        else:
                            seen[0] += 1
                            if latency > seen[1]:
                                seen[1] = latency
                    continue
                payload = buf[start:end]
                if conn.state == _HANDSHAKING:
                    self._on_handshake_frame(conn, payload)
                elif payload == b"2":
                    conn.sock.send(_SIO_PONG)
                elif payload.startswith(b'{"type":"ping"') or payload.startswith(b'{"type": "ping"'):
                    conn.sock.send(_WEBCHAT_PONG)
            elif opcode == 9:
                conn.sock.send(_client_frame(buf[start:end], 0xA))
            elif opcode == 8:
                self.closed_by_server += 1
                if conn.state != _OPEN:
                    self._finish_setup(conn, False)
                else:
                    self._drop(conn)
                return
        conn.buf = buf[i:] if i < n else b""

    def _on_readable(self, conn: _Conn) -> None:
        now = 0.0
        try:
            if self.record:
                data, ancillary, _flags, _addr = conn.sock.recvmsg(_READ_SIZE, 64)
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                        sec, nsec = _TIMESPEC.unpack_from(value)
                        now = sec + nsec * 1e-9
            else:
                data = conn.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if conn.state == _OPEN:
                self.closed_by_server += 1
                self._drop(conn)
            else:
                self._finish_setup(conn, False)
            return
        if conn.state == _UPGRADING:
            self._on_upgrade_data(conn, data)
        else:
            self._on_frames(conn, data, now or time.time(), time.monotonic())

    # -- commands -----------------------------------------------------------------

    def _command(self, cmd: tuple[Any, ...]) -> bool:
        """Handle one command from the driver; False means quit."""
        name = cmd[0]
        if name == "connect":
            _, kind, host, port, path, count, stall, inflight = cmd
            self.pending_connect = {
                "kind": kind,
                "host": host,
                "port": port,
                "path": path,
                "todo": count,
                "limit": inflight,
                "stall": stall,
                "inflight": 0,
                "ready": 0,
                "failed": 0,
                "client_ids": [],
                "deadline": time.monotonic() + 60 + count / 100,
            }
            return True
        if name == "reset":
            self.frames, self.last_arrival, self.seqs = 0, 0.0, {}
            self.record = bool(cmd[1])
            self.pipe.send(True)
        elif name == "stats":
            self.pipe.send(
                {
                    "frames": self.frames,
                    "last_arrival": self.last_arrival,
                    "seqs": self.seqs if cmd[1] else {},
                    "open": len(self.conns) + len(self.stalled),
                    "closed_by_server": self.closed_by_server,
                    "cpu": _own_cpu(),
                    "cpu_sys": os.times().system,
                }
            )
        elif name == "probe_stalled":
            self.pipe.send(self._probe_stalled())
        elif name == "close_all":
            for conn in list(self.conns.values()) + self.stalled:
                self._drop(conn)
            self.stalled = []
            self.closed_by_server = 0
            self.pipe.send(True)
        elif name == "quit":
            return False
        return True

    def _probe_stalled(self) -> dict[str, int]:
        """Read the never-read sockets to the end: how many did the server close?"""
        closed = alive = 0
        for conn in self.stalled:
            state = "open"
            for _ in range(100_000):
                try:
                    data = conn.sock.recv(_READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    state = "closed"
                    break
                if not data or data[:1] == b"\x88" or b"\x88" in data[-200:]:
                    state = "closed"
                    if not data:
                        break
            if state == "closed":
                closed += 1
            else:
                alive += 1
        return {"closed": closed, "open": alive}

    def _pump_connects(self) -> None:
        job = self.pending_connect
        if job is None:
            return
        while job["todo"] > 0 and job["inflight"] < job["limit"]:
            job["todo"] -= 1
            self._start_connect(job)
        if (job["todo"] == 0 and job["inflight"] == 0) or time.monotonic() > job["deadline"]:
            self.pending_connect = None
            self.pipe.send(
                {
                    "ready": job["ready"],
                    "failed": job["failed"] + job["inflight"] + job["todo"],
                    "client_ids": job["client_ids"],
                }
            )

    def run(self) -> None:
        pipe_fd = self.pipe.fileno()
        self.ep.register(pipe_fd, select.EPOLLIN)
        running = True
        while running:
            timeout = 0.005 if self.pending_connect else 0.2
            for fd, _events in self.ep.poll(timeout, 4096):
                if fd == pipe_fd:
                    running = self._command(self.pipe.recv())
                    continue
                conn = self.conns.get(fd)
                if conn is None:
                    continue
                if conn.state == _CONNECTING:
                    self._on_writable(conn)
                else:
                    self._on_readable(conn)
            self._pump_connects()


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _worker_main(pipe: Any, source_ip: str) -> None:
    _Worker(pipe, source_ip).run()


class LoadGen:
    """Several load-generating worker processes, driven as one."""

    def __init__(self, workers: int, first_source: int = 10) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes = []
        self._procs = []
        for index in range(workers):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(theirs, f"127.0.0.{first_source + index}"), daemon=True)
            proc.start()
            self._pipes.append(ours)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [proc.pid for proc in self._procs if proc.pid is not None]

    @property
    def workers(self) -> int:
        """How many worker processes there are."""
        return len(self._procs)

    def _ask(self, cmd: tuple[Any, ...], timeout: float = 60.0, pipes: list[Any] | None = None) -> list[Any]:
        pipes = self._pipes if pipes is None else pipes
        for pipe in pipes:
            pipe.send(cmd)
        answers = []
        for pipe in pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"load generator did not answer {cmd[0]!r} within {timeout}s")
            answers.append(pipe.recv())
        return answers

    def connect(
        self,
        kind: str,
        host: str,
        port: int,
        path: str,
        count: int,
        stall: bool = False,
        inflight: int = _CONNECTING_AT_ONCE,
    ) -> dict[str, Any]:
        """Open ``count`` WebSocket connections spread over the workers; wait until they are ready.

        ``inflight`` caps each worker's connections being set up at once.
        """
        share, extra = divmod(count, len(self._pipes))
        sizes = [share + (1 if i < extra else 0) for i in range(len(self._pipes))]
        busy = [(pipe, size) for pipe, size in zip(self._pipes, sizes, strict=False) if size]
        for pipe, size in busy:
            pipe.send(("connect", kind, host, port, path, size, stall, inflight))
        ready = failed = 0
        client_ids: list[str] = []
        for pipe, size in busy:
            if not pipe.poll(120 + size / 50):
                raise TimeoutError("load generator did not finish connecting")
            answer = pipe.recv()
            ready += answer["ready"]
            failed += answer["failed"]
            client_ids.extend(answer["client_ids"])
        return {"ready": ready, "failed": failed, "client_ids": client_ids}

    def reset(self, record: bool = False) -> None:
        """Zero the counters; ``record`` turns per-message latency recording on."""
        self._ask(("reset", record))

    def stats(self, seqs: bool = False) -> dict[str, Any]:
        """Counters summed over the workers; ``seqs`` merges per-message latency records."""
        answers = self._ask(("stats", seqs))
        merged: dict[int, list[float]] = {}
        for answer in answers:
            for seq, (count, latency) in answer["seqs"].items():
                seen = merged.get(seq)
                if seen is None:
                    merged[seq] = [count, latency]
                else:
                    seen[0] += count
                    seen[1] = max(seen[1], latency)
        return {
            "frames": sum(a["frames"] for a in answers),
            "last_arrival": max(a["last_arrival"] for a in answers),
            "open": sum(a["open"] for a in answers),
            "closed_by_server": sum(a["closed_by_server"] for a in answers),
            "cpu": sum(a["cpu"] for a in answers),
            "cpu_sys": sum(a["cpu_sys"] for a in answers),
            "seqs": merged,
        }

    def wait_frames(self, expected: int, timeout: float) -> dict[str, Any]:
        """Poll until ``expected`` marked frames arrived (or the time is up); the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["frames"] >= expected or time.monotonic() > deadline:
                return stats
            time.sleep(0.01)

    def probe_stalled(self) -> dict[str, int]:
        """How many never-reading connections the servers closed, and how many are still open."""
        answers = self._ask(("probe_stalled",))
        return {"closed": sum(a["closed"] for a in answers), "open": sum(a["open"] for a in answers)}

    def close_all(self) -> None:
        """Close every connection of every worker."""
        self._ask(("close_all",), timeout=120)

    def stop(self) -> None:
        """Stop the workers."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit",))
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
