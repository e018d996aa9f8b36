"""Logging as a test process had it, put back after code that sets up logging for a process of
its own (`hf-adapter`'s `main`, run in-process: handlers on the stderr of the moment, levels,
structlog). Without it, later tests in the same worker log to a closed capture stream."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog


@contextmanager
def logging_kept() -> Iterator[None]:
    """`main` sets up logging for its process (handlers on the stderr of the moment, levels,
    structlog): this test process's own is put back afterwards."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_level = root.level
    config = structlog.get_config() if structlog.is_configured() else None
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(root_level)
        for name, logger in logging.Logger.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))
        if config is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**config)
