"""Where the web app's log lines go when nothing else has said.

gunicorn configures its own loggers, not Python's root logger; without a
handler our ERROR lines ("message N was stored but not pushed") reached
stderr through logging's last-resort handler, bare: no time, no level, no
logger. A deployment that configures logging itself (a root handler) keeps
its own setup.
"""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "init_logging"]

#: Like gunicorn's own error log lines: time, level, where, what.
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def init_logging() -> None:
    """Give the ``web_app`` loggers a timestamped, levelled stderr handler unless logging is configured."""
    package = logging.getLogger("web_app")
    if logging.getLogger().handlers or package.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    package.addHandler(handler)
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
