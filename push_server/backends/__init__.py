"""Backends: where the cluster's state lives (see base.Backend)."""

from .base import Backend, BackendUnavailable
from .memory import MemoryBackend

__all__ = ["Backend", "BackendUnavailable", "MemoryBackend"]
