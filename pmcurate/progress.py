"""When progress bars are drawn: one rule for every command.

Bars go to a terminal only. They are off when stderr is not a TTY (a log file, CI), when
``TQDM_DISABLE`` is set to a true value (tqdm's own switch, honoured here because stages pass
``disable=`` explicitly, which tqdm lets win over its environment), and under ``pmcurate --quiet``
(which sets ``TQDM_DISABLE=1`` for the process and its workers).
"""

from __future__ import annotations

import os
import sys

_TRUE = ("1", "true", "yes", "on")


def enabled(requested: bool = True) -> bool:
    """Whether a bar asked for (``requested``) is drawn."""
    if not requested or os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE:
        return False
    return sys.stderr.isatty()
