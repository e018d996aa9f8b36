"""`MetricSet`: a group of Prometheus metrics registered once per registry.

Registering a metric name twice in one registry raises, so every caller of `for_registry` gets the
set made first; tests pass their own `CollectorRegistry`.
"""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from typing import Any, Self, cast

from prometheus_client import REGISTRY, CollectorRegistry

# Weak keys: the registries tests make are dropped with their metrics.
_made: weakref.WeakKeyDictionary[CollectorRegistry, dict[type[Any], Any]] = (
    weakref.WeakKeyDictionary()
)
_made_lock = threading.Lock()


class MetricSet(ABC):
    """Subclasses say how to `register` their metrics; `for_registry` makes them once."""

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> Self:
        """The set registered in `registry` (the default one when ``None``), made once."""
        target = registry if registry is not None else REGISTRY
        with _made_lock:
            made = _made.setdefault(target, {})
            existing = made.get(cls)
            if existing is None:
                existing = made[cls] = cls.register(target)
            return cast(Self, existing)

    @classmethod
    @abstractmethod
    def register(cls, registry: CollectorRegistry) -> Self:
        """Create the metrics in `registry`; called once per registry by `for_registry`."""
