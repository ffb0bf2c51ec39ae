"""Connection limits: the whole node (``PUSH_MAX_CONNECTIONS``) and per address (``PUSH_MAX_CONNECTIONS_PER_IP``).

Why: without a bound, one machine opening WebSockets as fast as it can used
every file descriptor of the process in seconds, and from then on the internal
API (same process) could not accept a connection either. The node limit is
therefore kept below the open-files limit with a reserve for the API's
connections, Redis and the process's own files.

Every accepted socket counts, finished handshake or not, since each holds a
descriptor. A handshake that arrives over a limit is answered 503 (the page
tries again later). Sockets beyond the node limit plus half the reserve are
not even read: they are dropped at accept, so a flood of sockets that never
send a request cannot eat the reserve before the handshake deadline reaps them.

Whatever the settings, a socket is also dropped at accept when fewer than
``FD_RESERVE`` descriptors would be left under the *live* open-files limit
(which ``prlimit`` can lower at run time, or a setting can exceed): without
it the accept itself hits EMFILE, uvloop then closes waiting connections
without a word, asyncio stops accepting for a second, and the API and Redis
are starved too.

Refusals are logged at most once a second, with how many since the last
line; the last refusals of a burst get their line a second later, so the
counts in the log add up to every refusal, and a flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys

log = logging.getLogger(__name__)

#: Descriptors kept free for the API, Redis and the process: at least this many...
MIN_RESERVE = 256
#: ...or this share of the open-files limit, whichever is more.
RESERVE_SHARE = 0.1
#: Descriptors always left free under the live open-files limit, whatever the settings.
FD_RESERVE = 128


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one (allowed without privileges); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def reserve_for(open_files: int) -> int:
    """Descriptors kept free for everything that is not a browser's WebSocket."""
    return max(MIN_RESERVE, int(open_files * RESERVE_SHARE))


def default_max_connections(open_files: int) -> int:
    """The node limit when none is set: the open-files limit minus the reserve."""
    return max(1, open_files - reserve_for(open_files))


class ConnectionLimits:
    """Counts this node's sockets and WebSockets, in total and by address, and says which to refuse."""

    __slots__ = ("_refused", "_report", "by_ip", "hard_total", "max_per_ip", "max_total", "open", "sockets")

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        #: 0 means "derive from the open-files limit".
        if max_total <= 0:
            max_total = default_max_connections(raise_open_files_limit())
        self.max_total = max_total
        #: 0 means no per-address limit.
        self.max_per_ip = max_per_ip
        #: Past this many sockets (open or still in their handshake), new ones
        #: are dropped at accept without a word.
        self.hard_total = max_total + reserve_for(max_total) // 2
        self.sockets = 0
        #: WebSockets whose handshake was accepted, in total and by address.
        self.open = 0
        self.by_ip: dict[str, int] = {}
        #: Refusals since the last log line, by limit; the timer that writes the next line.
        self._refused: dict[str, int] = {}
        self._report: asyncio.TimerHandle | None = None

    def opened(self, peername: object) -> str | None:
        """Count a new socket by its ``peername``; its address, or None to drop it at once."""
        if self.sockets >= self.hard_total:
            self._note_refusal("node")
            return None
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and self.sockets >= soft - FD_RESERVE:
            self._note_refusal("open_files")
            return None
        self.sockets += 1
        # Interned: connections from one address share one string, not one each.
        return sys.intern(str(peername[0])) if isinstance(peername, tuple) and peername else ""

    def admit(self, ip: str) -> str | None:
        """Count a handshake about to be accepted; or why it must be refused (503)."""
        if self.open >= self.max_total:
            self._note_refusal("node")
            return "too many connections on this server, try again later"
        if self.max_per_ip:
            count = self.by_ip.get(ip, 0)
            if count >= self.max_per_ip:
                self._note_refusal("ip")
                return "too many connections from your address, try again later"
            self.by_ip[ip] = count + 1
        self.open += 1
        return None

    def closed(self, ip: str, admitted: bool) -> None:
        """A counted socket is gone (``admitted``: its handshake had been accepted)."""
        self.sockets -= 1
        if not admitted:
            return
        self.open -= 1
        if self.max_per_ip:
            count = self.by_ip.get(ip, 0) - 1
            if count > 0:
                self.by_ip[ip] = count
            else:
                self.by_ip.pop(ip, None)

    def _note_refusal(self, limit: str) -> None:
        from .. import metrics

        metrics.CONNECTIONS_REFUSED.labels(limit=limit).inc()
        self._refused[limit] = self._refused.get(limit, 0) + 1
        if self._report is None:
            self._log_refusals()

    def _log_refusals(self) -> None:
        """Log the refusals since the last line (if any), and look again in a second."""
        if not self._refused:
            self._report = None
            return
        files = self._refused.pop("open_files", 0)
        if files:
            log.warning(
                "open-files limit: refused %d WebSocket connection(s) (%d open; RLIMIT_NOFILE %d, %d kept free); raise LimitNOFILE / ulimit -n",
                files,
                self.sockets,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                FD_RESERVE,
            )
        if self._refused:
            log.warning(
                "connection limit reached (%d open, node limit %d, per address %s): refused %d connection(s) since the last such line",
                self.open,
                self.max_total,
                self.max_per_ip or "off",
                sum(self._refused.values()),
            )
        self._refused = {}
        self._report = asyncio.get_running_loop().call_later(1.0, self._log_refusals)
