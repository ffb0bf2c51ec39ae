"""This machine's ``send()`` floor: what one syscall writing one frame costs.

A tight loop of ``socket.send`` of one 102-byte WebSocket frame (a 100-byte
message and its 2-byte header) to loopback TCP peers that a separate process
reads as fast as it can. On loopback the kernel delivers into the receiver's
socket inside the sender's syscall, so the sender's CPU time per call is the
whole price of one delivered frame: no server written in any language can
push a frame per syscall for less. Measured twice: to one peer (the figure the
targets use) and round-robin over many peers, as a fan-out writes.
"""

from __future__ import annotations

import multiprocessing
import select
import socket
import statistics
import time
from typing import Any

__all__ = ["send_floor"]

FRAME = b"\x81\x64" + b"x" * 100


def _reader(listener: socket.socket, peers: int, pipe: Any) -> None:
    conns = [listener.accept()[0] for _ in range(peers)]
    ep = select.epoll()
    for conn in conns:
        conn.setblocking(False)
        ep.register(conn.fileno(), select.EPOLLIN)
    by_fd = {conn.fileno(): conn for conn in conns}
    pipe.send("ready")
    open_ = len(conns)
    deadline = time.monotonic() + 300
    while open_ and time.monotonic() < deadline:
        for fd, _ in ep.poll(1.0):
            try:
                data = by_fd[fd].recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                ep.unregister(fd)
                open_ -= 1


def send_floor(calls: int = 200_000, peers: int = 1, repeats: int = 5) -> dict[str, float]:
    """CPU and wall µs per ``send()`` of one frame, over ``peers`` loopback connections."""
    ctx = multiprocessing.get_context("fork")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(peers + 16)
    ours, theirs = ctx.Pipe()
    reader = ctx.Process(target=_reader, args=(listener, peers, theirs), daemon=True)
    reader.start()
    socks = [socket.create_connection(listener.getsockname()) for _ in range(peers)]
    for sock in socks:
        # As a push server's sockets are: no Nagle delay on small frames.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not ours.poll(30):
        raise TimeoutError("floor reader did not start")
    ours.recv()
    sends = [sock.send for sock in socks]
    # Warm up the path (page faults, first allocations) before timing it.
    for i in range(min(calls // 10, 10_000)):
        sends[i % peers](FRAME)
    # Several rounds and their median: one round is at the mercy of where the
    # scheduler put the reader (an awake reader makes the sender's wake-up free).
    rounds = []
    per_round = max(1, calls // repeats)
    for _ in range(repeats):
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for i in range(per_round):
            sends[i % peers](FRAME)
        cpu1, wall1 = time.thread_time(), time.perf_counter()
        rounds.append(((cpu1 - cpu0) / per_round * 1e6, (wall1 - wall0) / per_round * 1e6))
    for sock in socks:
        sock.close()
    reader.join(30)
    listener.close()
    cpu = sorted(r[0] for r in rounds)
    return {"cpu_us": statistics.median(cpu), "cpu_us_min": cpu[0], "cpu_us_max": cpu[-1],
            "wall_us": statistics.median(r[1] for r in rounds), "calls": per_round * repeats, "peers": peers}
