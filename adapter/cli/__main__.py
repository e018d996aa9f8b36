"""``python -m adapter.cli``: the same as ``hf-adapter`` (``python -m adapter`` starts faster:
there the modules load with the garbage collector paused, see `cli_startup`)."""

from cli_startup import run

raise SystemExit(run("adapter.cli"))
