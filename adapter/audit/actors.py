"""Who acts, as the audit trail records them."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Actor:
    """Who acts: a person or service with an SSO token, or the adapter itself."""

    kind: str  # user | service | system
    subject: str | None = None
    client: str | None = None


SYSTEM_SYNC: Final = Actor("system", "hf-adapter sync")
WORKER: Final = Actor("system", "hf-adapter worker")
# The audit trail's client for actions taken at the console (beside SSO clients' ids).
CLI_CLIENT: Final = "hf-adapter-cli"


def command_line_operator() -> Actor:
    """Who runs an ``hf-adapter`` command by hand: the OS user (its uid when the system has
    no name for it)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (some containers)
        name = f"uid:{os.getuid()}"
    return Actor("user", name, CLI_CLIENT)
