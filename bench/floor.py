"""This machine's ``send()`` floor: what one syscall writing one frame costs.

Bursts of ``socket.send`` of one 102-byte WebSocket frame (a 100-byte message
and its 2-byte header) to loopback TCP peers that a separate process reads as
fast as it can. After each burst the sender waits, untimed, until the reader
has drained it: like a fan-out's writes, no timed send ever blocks on a full
socket buffer. (A tight loop to one peer does fill it, and then the sender's
CPU per call halves or not depending on who waits for whom: 1.6 or 4.1 µs
here from one run to the next.) On loopback the kernel delivers into the receiver's
socket inside the sender's syscall, so the sender's CPU time per call is the
whole price of one delivered frame: no server written in any language can
push a frame per syscall for less. Measured twice: to one peer (the figure the
targets use) and round-robin over many peers, as a fan-out writes. The sender
has the priority over the reader that the benchmark gives the server over the
load generator.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import socket
import statistics
import time
from typing import Any

from bench.systems import FIRST_NICE

__all__ = ["send_floor"]


FRAME = b"\x81\x64" + b"x" * 100


def _reader(listener: socket.socket, peers: int, pipe: Any, drained: Any) -> None:
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
            drained.value += len(data)


def send_floor(calls: int = 200_000, peers: int = 1, repeats: int = 5) -> dict[str, float]:
    """CPU and wall µs per ``send()`` of one frame, over ``peers`` loopback connections."""
    ctx = multiprocessing.get_context("fork")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(peers + 16)
    ours, theirs = ctx.Pipe()
    drained = ctx.Value("q", 0, lock=False)  # bytes the reader has read so far
    reader = ctx.Process(target=_reader, args=(listener, peers, theirs, drained), daemon=True)
    reader.start()
    socks = [socket.create_connection(listener.getsockname()) for _ in range(peers)]
    for sock in socks:
        # As a push server's sockets are: no Nagle delay on small frames.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not ours.poll(30):
        raise TimeoutError("floor reader did not start")
    ours.recv()
    sends = [sock.send for sock in socks]
    # One frame per peer per burst, and at least 100 frames (10 KB: far below a
    # socket buffer, so one peer's burst never blocks either).
    burst = max(peers, 100)
    sent = 0

    def timed_burst() -> tuple[float, float]:
        nonlocal sent
        deadline = time.monotonic() + 30
        while drained.value < sent and time.monotonic() < deadline:
            time.sleep(0.0002)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for i in range(burst):
            sends[i % peers](FRAME)
        cpu1, wall1 = time.thread_time(), time.perf_counter()
        sent += burst * len(FRAME)
        return cpu1 - cpu0, wall1 - wall0

    # The sender has the priority the benchmark gives the server under test
    # over the load generator (see scenarios.isolate).
    before = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, FIRST_NICE)
    # Warm up the path (page faults, first allocations) before timing it.
    for _ in range(max(1, min(calls // 10, 10_000) // burst)):
        timed_burst()
    # Several rounds and their median: one round is at the mercy of where the
    # scheduler put the reader (an awake reader makes the sender's wake-up free).
    rounds = []
    bursts = max(1, calls // repeats // burst)
    for _ in range(repeats):
        cpu = wall = 0.0
        for _ in range(bursts):
            burst_cpu, burst_wall = timed_burst()
            cpu += burst_cpu
            wall += burst_wall
        rounds.append((cpu / (bursts * burst) * 1e6, wall / (bursts * burst) * 1e6))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, before)
    for sock in socks:
        sock.close()
    reader.join(30)
    listener.close()
    cpu_sorted = sorted(r[0] for r in rounds)
    return {
        "cpu_us": statistics.median(cpu_sorted),
        "cpu_us_min": cpu_sorted[0],
        "cpu_us_max": cpu_sorted[-1],
        "wall_us": statistics.median(r[1] for r in rounds),
        "calls": bursts * burst * repeats,
        "peers": peers,
        "burst": burst,
    }
