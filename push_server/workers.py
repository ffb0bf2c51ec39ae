"""``push-server --workers N``: N server processes on one machine, one cluster over Redis.

Each worker is a whole push server (its own event loop, sockets and node id in
the cluster) bound to the same WebSocket and API ports with ``SO_REUSEPORT``:
the kernel spreads new connections across them, so N processes use N cores with
no proxy in front. They share everything else through Redis, exactly like
nodes on different machines.

The parent only supervises: it forwards SIGTERM/SIGINT to the workers, waits
for them, restarts them one by one on SIGHUP (below), and replaces a worker that dies (its clients are reaped by the
others when its lease runs out). A worker that dies within
:data:`MIN_UPTIME` of starting is a configuration problem (a port taken,
Redis URL wrong), not a crash: the parent then stops everything and exits
rather than restart it forever.

**Rolling restart (SIGHUP).** Each worker in turn is replaced: a new worker is
started first and the parent waits until its WebSocket listener is bound
(the worker says so through a pipe), and only then is the old one sent
SIGTERM. The old worker closes its listeners at once, so new connections go
to the others, then closes its browsers with 1001 (they reconnect, with
jitter, to the workers still listening) and ends. At no moment is the port
without a listener. Connections that the kernel had queued on the old
worker's listener but that it had not yet accepted are reset when it closes,
unless ``net.ipv4.tcp_migrate_req=1`` (Linux 5.14+), which moves them to
another worker; docs/operations.md says so. The replacements are started
with ``spawn`` (a new interpreter), not forked from the parent, so they run
the code now on disk: a deploy followed by SIGHUP upgrades without a
refused connection.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType

from .config import Config
from .serve import serve

log = logging.getLogger(__name__)

#: A worker that exits sooner than this after starting is not restarted.
MIN_UPTIME = 5.0
#: How long the parent waits for workers to finish after forwarding a signal.
STOP_GRACE = 15.0


#: How long a rolling restart waits for a new worker to listen before giving up.
READY_WAIT = 30.0


def _worker(config: Config, ready: Connection | None = None) -> None:
    """A worker process: one ordinary push server; says on ``ready`` once it listens."""
    # The parent's handlers are inherited through fork; the worker wants the
    # defaults that web.run_app installs its own graceful shutdown over.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Its own process group: Ctrl-C in a terminal reaches only the parent, which
    # forwards it once. A second signal in the middle of a graceful shutdown
    # would cut it short (no leave signals, no retired lease).
    os.setpgid(0, 0)
    _stop_with_parent()
    # A spawned worker (rolling restart) starts without the parent's logging set-up.
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    if ready is not None:
        from . import metrics

        metrics.ON_READY.append(lambda: ready.send(True))
    try:
        serve(config)
    except OSError as exc:
        sys.exit(f"push-server worker {os.getpid()}: cannot listen: {exc}")


def _stop_with_parent() -> None:
    """SIGTERM this worker if the parent dies (SIGKILL leaves it no chance to forward)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_workers(config: Config) -> None:
    """Run ``config.workers`` processes sharing the ports until SIGTERM/SIGINT; exit when they do."""
    if not config.redis_url:
        # Config refuses this already; kept so the function is safe on its own.
        sys.exit("push-server: --workers needs PUSH_REDIS_URL (workers share state through Redis)")
    if config.ws_port == 0 or config.api_port == 0:
        sys.exit("push-server: --workers needs fixed ports: each worker would get a different random port")
    child_config = config.replace(workers=1, reuse_port=True)
    # fork: the parent has no event loop or sockets yet, and workers start at once.
    context = multiprocessing.get_context("fork")
    # Replacements in a rolling restart: a fresh interpreter, so new code is loaded.
    fresh = multiprocessing.get_context("spawn")
    workers: dict[int, tuple[BaseProcess, float]] = {}
    #: Workers being replaced by a rolling restart: their exit is expected.
    retiring: set[int] = set()
    stopping = False
    reload_requested = False

    def start_one(wait_ready: bool = False) -> int | None:
        """Start a worker; with ``wait_ready``, a fresh one and its pid once it listens (None if it never did)."""
        maker = fresh if wait_ready else context
        receiver, sender = maker.Pipe(duplex=False)
        process = maker.Process(target=_worker, args=(child_config, sender), name="push-server-worker")
        process.start()
        sender.close()
        assert process.pid is not None
        workers[process.pid] = (process, time.monotonic())
        log.info("worker %d started", process.pid)
        if not wait_ready:
            return process.pid
        try:
            if receiver.poll(READY_WAIT):
                receiver.recv()
                return process.pid
        except EOFError:
            pass  # it died before listening
        finally:
            receiver.close()
        return None

    def roll() -> None:
        """Replace every worker, one at a time, never leaving the ports without a listener."""
        log.info("SIGHUP: rolling restart of %d workers", len(workers))
        for old_pid in list(workers):
            if stopping:
                return
            new_pid = start_one(wait_ready=True)
            if new_pid is None:
                log.error("a new worker did not start listening within %.0fs; rolling restart abandoned", READY_WAIT)
                return
            old_process, _ = workers[old_pid]
            retiring.add(old_pid)
            os.kill(old_pid, signal.SIGTERM)
            old_process.join(STOP_GRACE)
            if old_process.exitcode is None:
                old_process.kill()
                old_process.join()
            del workers[old_pid]
            retiring.discard(old_pid)
            log.info("worker %d replaced by %d", old_pid, new_pid)
        log.info("rolling restart done")

    def request_reload(_signum: int, _frame: FrameType | None) -> None:
        nonlocal reload_requested
        reload_requested = True

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in workers.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, request_reload)
    for _ in range(config.workers):
        start_one()
    log.info("%d workers sharing ws port %d and api port %d", config.workers, config.ws_port, config.api_port)

    failed = False
    deadline: float | None = None
    while workers:
        if reload_requested and not stopping:
            reload_requested = False
            roll()
        if stopping and deadline is None:
            deadline = time.monotonic() + STOP_GRACE
        if deadline is not None and time.monotonic() > deadline:
            for process, _ in workers.values():
                process.kill()
        for pid, (process, started) in list(workers.items()):
            process.join(timeout=0.2 / max(1, len(workers)))
            if process.exitcode is None:
                continue
            del workers[pid]
            if stopping or pid in retiring:
                continue
            uptime = time.monotonic() - started
            if uptime < MIN_UPTIME:
                log.error("worker %d exited with %s right after starting; stopping all workers", pid, process.exitcode)
                failed = True
                forward(signal.SIGTERM, None)
            else:
                log.warning("worker %d died (exit %s) after %.0fs; starting a new one", pid, process.exitcode, uptime)
                start_one()
    if failed:
        sys.exit(1)
