"""Harvest sources: what every source does, what it gives back, and the registry of sources by kind.

A *source* (``local`` files, the ``pmc`` bucket, ``europepmc``, ``eutils``) turns a selection into
*work items* (``plan``: a batch of input files, a batch of ids), and reads each work item into
documents to parse or *rejections*: inputs it could not use, each with a short reason code and a
one-line message, which become rows of ``tables/quarantine`` (``Rejection.record``).

What happens next is the same for every source, in ``store``: a shard's quarantine rows are
written first, then its tables, ``articles`` last (``store.write_harvest_shard``); copies of one
article inside a shard keep the winner of the version rule (``store.ShardRows``), and across
shards ``store.settle_versions`` applies the same rule (highest version, then the most recent
copy: the source says what "recent" is, see ``Source.recency``).

Registry: ``get(kind)`` gives the source class registered under ``kind`` (``register``); the
modules holding sources are imported on first use only (``MODULES``), so a command that harvests
local files never imports the HTTP client. Adding a source: one module defining a class with
``kind``, ``plan`` and ``read``, decorated with ``@register``, and its line in ``MODULES``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

_API_KEY = re.compile(r"(api_key=)[^&\s#\"']+", re.IGNORECASE)

MODULES = {
    "local": "pmcurate.harvest.local",
    "pmc": "pmcurate.harvest.pmc",
    "europepmc": "pmcurate.harvest.europepmc",
    "eutils": "pmcurate.harvest.eutils",
}
"""Kind → the module that registers it (imported on first ``get``)."""


def redact(text: str) -> str:
    """``text`` with every ``api_key=…`` value replaced by ``***``."""
    return _API_KEY.sub(r"\1***", text)


@dataclass(frozen=True)
class Rejection:
    """An input a source could not use: the row of ``tables/quarantine`` saying which and why.

    ``source``: the input file, or the network source; ``member``: the archive member, object key
    or URL; ``stage``: ``read``, ``select``, ``fetch``, ``media`` or ``parse``; ``reason``: a short
    snake_case code to group by; ``error``: one line for a person, naming the input."""

    source: str
    member: str | None
    stage: str
    reason: str
    error: str
    article_id: str | None = None

    def record(self) -> dict[str, Any]:
        """The quarantine row (``schema.QUARANTINE`` without ``at``), API keys redacted."""
        return {
            "source": self.source,
            "member": None if self.member is None else redact(self.member),
            "article_id": self.article_id,
            "stage": self.stage,
            "error": redact(self.error),
            "reason": self.reason,
        }


def reason_code(error_type: str) -> str:
    """``TooLarge`` → ``too_large``, ``EOFError`` → ``eof_error``: the short quarantine reason of an
    error class name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", error_type).lower()


Item = TypeVar("Item")
Read = TypeVar("Read", covariant=True)


class Source(Protocol[Item, Read]):
    """What a harvest source does: plan work items, read each into documents or rejections."""

    kind: ClassVar[str]

    def plan(self) -> list[Item]:
        """The work items of the selection, in the order that makes a later item the more recent."""
        ...

    def read(self, item: Item) -> Iterator[Read | Rejection]:
        """The documents of ``item`` in reading order, and a ``Rejection`` for each input it could not use."""
        ...

    def recency(self, shards: Iterable[str]) -> Mapping[str, Any] | None:
        """A sortable recency per shard, for copies of an article of equal version
        (``store.settle_versions``); None: the shards' ``harvested_at``."""
        ...


_REGISTRY: dict[str, type[Any]] = {}
S = TypeVar("S", bound=type[Any])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` the source of kind ``cls.kind``."""
    kind = cls.kind
    if kind not in MODULES:
        raise ValueError(f"source kind {kind!r} has no module in source.MODULES")
    _REGISTRY[kind] = cls
    return cls


def kinds() -> tuple[str, ...]:
    """Every source kind, in registry order."""
    return tuple(MODULES)


def get(kind: str) -> type[Any]:
    """The source class of ``kind``; ``ValueError`` naming the known kinds for any other."""
    if kind not in MODULES:
        raise ValueError(f"unknown source kind {kind!r}: one of {', '.join(MODULES)}")
    if kind not in _REGISTRY:
        importlib.import_module(MODULES[kind])
    return _REGISTRY[kind]
