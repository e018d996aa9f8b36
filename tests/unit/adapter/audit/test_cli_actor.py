"""The console's audit actor is the process's real user, whatever the environment says."""

from __future__ import annotations

import os
import pwd

import pytest

from adapter.audit.actors import CLI_CLIENT, command_line_operator


def test_the_operator_is_the_real_uids_user_not_a_variable_anyone_can_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "someone-else")

    actor = command_line_operator()

    assert actor.subject == pwd.getpwuid(os.getuid()).pw_name
    assert actor.client == CLI_CLIENT


def test_a_uid_without_a_name_is_named_by_its_number(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    assert command_line_operator().subject == f"uid:{os.getuid()}"
