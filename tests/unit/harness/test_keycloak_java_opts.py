"""The JVM options a quick-start (test) Keycloak gets: the client compiler and the serial
collector before the caller's own options, and never a second collector beside the caller's."""

from __future__ import annotations

import pytest

from harness.keycloak import QUICK_START_COLLECTOR, QUICK_START_COMPILER, quick_start_java_opts

OURS = f"{QUICK_START_COMPILER} {QUICK_START_COLLECTOR}"


def test_without_options_of_the_callers_ours_alone() -> None:
    assert quick_start_java_opts({}) == OURS
    assert "-XX:+UseSerialGC" in OURS
    assert "-XX:-UseG1GC" in OURS  # kc.sh's own default turned off, or the JVM refuses two


def test_the_callers_options_come_last_so_they_win() -> None:
    assert quick_start_java_opts({"JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=4 -Xmx1g"}) == (
        f"{OURS} -XX:TieredStopAtLevel=4 -Xmx1g"
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"JAVA_OPTS_APPEND": "-XX:+UseZGC"},
        {"JAVA_OPTS_APPEND": "-Xmx1g -XX:+UseG1GC"},
        {"JAVA_OPTS": "-XX:+UseParallelGC -Xms64m"},
    ],
    ids=["append ZGC", "append G1", "JAVA_OPTS parallel"],
)
def test_a_collector_the_caller_chose_is_the_only_one(environ: dict[str, str]) -> None:
    opts = quick_start_java_opts(environ)
    assert opts.startswith(QUICK_START_COMPILER)
    assert "UseSerialGC" not in opts
    assert "-XX:-UseG1GC" not in opts
    assert opts.endswith(environ.get("JAVA_OPTS_APPEND", QUICK_START_COMPILER))


def test_turning_a_collector_off_is_not_choosing_one() -> None:
    assert quick_start_java_opts({"JAVA_OPTS_APPEND": "-XX:-UseG1GC"}).startswith(OURS)
