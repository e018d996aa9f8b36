"""A command's own peak memory, CPU and exit code, whatever the benchmark that starts it holds."""

from __future__ import annotations

import os
import sys

from bench.processes import run_measured

MIB = 1024 * 1024


def test_a_small_command_started_by_a_large_process_reports_its_own_peak_memory() -> None:
    # A child started straight from this process would report at least this process's peak
    # (Linux counts the memory a child had before its exec in ru_maxrss): over 300 MiB here.
    held = bytearray(300 * MIB)
    held[:: os.sysconf("SC_PAGE_SIZE")] = b"\1" * len(held[:: os.sysconf("SC_PAGE_SIZE")])
    small = run_measured([sys.executable, "-c", "print('small')"], os.environ)
    large = run_measured(
        [sys.executable, "-c", f"b = bytearray({120 * MIB}); b[::4096] = b'1' * len(b[::4096])"],
        os.environ,
    )
    del held
    assert (small.exit_code, small.stdout) == (0, "small\n")
    assert small.peak_rss_mib < 60, small
    assert 120 <= large.peak_rss_mib < 200, large
    assert small.wall_s > 0
    assert small.cpu_s > 0


def test_the_command_s_exit_code_is_its_own() -> None:
    failed = run_measured([sys.executable, "-c", "raise SystemExit(7)"], os.environ)
    assert failed.exit_code == 7
