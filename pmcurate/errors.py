"""pmcurate's errors: one base, and three policies that say what a run does when one is raised.

Every error pmcurate raises on purpose subclasses one of the policies below (never
:class:`PmcurateError` directly), so the step runner and the CLI decide from the class alone:

- :class:`Fatal` — the run cannot go on as asked (a manifest, an option, a missing extra, a build
  that lacks a table): the CLI prints the message as one line and exits 2.
- :class:`SkipItem` — one item (an article, a file, an image, an answer) is bad: the stage writes it
  to quarantine or the drop records with the message as its reason and goes on. One that reaches
  the CLI (a command given only that item) is printed like a fatal error (exit 2).
- :class:`Retry` — the transport failed (a service unreachable or failing): it was retried with
  backoff where raised; once it escapes, the run fails resumably — exit 1, finished work is kept
  and the same command run again resumes.

A message is one line written for the user: it names the file or article and the reason, and never
a secret (tokens and keys come from the environment and are redacted from URLs before they reach a
message). Errors that are not pmcurate's are classified by :func:`policy_of` (a full disk, a
transport error that escaped a stage); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import enum
import errno
import sys
from typing import Any, ClassVar


class Policy(enum.Enum):
    """What a run does with an error."""

    FATAL = "fatal"
    SKIP_ITEM = "skip_item"
    RETRY = "retry"


class PmcurateError(Exception):
    """Base of pmcurate's errors; subclass a policy (:class:`Fatal`, :class:`SkipItem`, :class:`Retry`)."""

    policy: ClassVar[Policy]
    exit_status: ClassVar[int]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its args and attributes, whatever its ``__init__`` takes, so an error raised in a
        worker process (the local pool, Ray) reaches the runner whole (its class, so its policy)."""
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[PmcurateError], args: tuple[Any, ...], state: dict[str, Any]) -> PmcurateError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class Fatal(PmcurateError):
    """Stop the run: something the user must fix first. Exit status 2."""

    policy = Policy.FATAL
    exit_status = 2


class SkipItem(PmcurateError):
    """This item is bad input: quarantine or drop it with the message as its reason, and go on."""

    policy = Policy.SKIP_ITEM
    exit_status = 2


class Retry(PmcurateError):
    """A transport failure: retry with backoff, then fail the run resumably (exit status 1)."""

    policy = Policy.RETRY
    exit_status = 1


class UserError(Fatal):
    """A command's arguments or environment that cannot work (the CLI's own checks)."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
RESUME = "run the same command again to resume"


def policy_of(exc: BaseException) -> Policy | None:
    """The policy for any exception; None for a bug (it keeps its traceback).

    pmcurate's errors carry theirs. A full disk is fatal (the run cannot go on) and an httpx
    transport error that escaped a stage is a transport failure; DuckDB errors are SQL the user
    wrote (fatal)."""
    if isinstance(exc, PmcurateError):
        return exc.policy
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return Policy.FATAL
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        return Policy.RETRY
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.Error):
        return Policy.FATAL
    return None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (newlines and runs of spaces collapsed), or its class name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def report(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status the CLI gives for ``exc``; None for a bug.

    Exit 2 for what the user must fix, 1 for what a rerun fixes (a transport failure, a full disk:
    nothing half-written is kept, so the same command resumes)."""
    if isinstance(exc, PmcurateError):
        message = one_line(exc)
        if isinstance(exc, Retry) and "resume" not in message:
            message = f"{message}; {RESUME}"
        return message, exc.exit_status
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"disk full ({exc}); nothing half-written was kept: free some space and {RESUME}", 1
    policy = policy_of(exc)
    if policy is Policy.RETRY:
        request = getattr(exc, "_request", None)
        where = f"{request.url.host}: " if request is not None else ""
        return f"network: {where}{one_line(exc)}; {RESUME}", 1
    if policy is Policy.FATAL:
        return f"SQL error: {one_line(exc)}", 2
    return None
