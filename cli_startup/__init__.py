"""Start a command with its modules loaded under a paused cyclic garbage collector, then frozen.

`hf-adapter`, `hf-mock` and `hf-conformance` (and `python -m adapter`, `mocks`, `conformance`)
import a thousand modules before they do anything. With the collector running, the growing heap
is traversed again and again during those imports, and once more, whole, when the process
exits. The modules live as long as the process, so there is nothing to collect among them:
`run` imports the command with the collector paused, then moves everything loaded into the
permanent generation (`gc.freeze`), which no later collection walks. A forked child (gunicorn's
workers) inherits the frozen generation: its collections do not walk those objects either, nor
write to their pages (reference counts still do).

Measured on 2 cores (docs/benchmarks.md, "Process start"): the CPU time of a process that only
imports `adapter.cli` and exits, 1.47 s → 0.95 s (median of 8); `mocks.cli` 0.79 s → 0.60 s.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable
from typing import cast


def run(module: str) -> int:
    """Import `module` with the collector paused, freeze what was loaded, then return what its
    ``main()`` returns. The collector is enabled again afterwards (if it was), even when the
    import fails."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        main = cast(Callable[[], int], importlib.import_module(module).main)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
    return main()
