"""pmcurate: curated training corpora from PubMed Central Open Access."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pmcurate.build import Build, open_build

__all__ = ["Build", "__version__", "open_build"]


def __getattr__(name: str) -> Any:
    """``open_build`` and ``Build`` are imported on first use: ``pmcurate --help`` stays fast."""
    if name in ("Build", "open_build"):
        from pmcurate import build

        return getattr(build, name)
    raise AttributeError(f"module 'pmcurate' has no attribute {name!r}")
