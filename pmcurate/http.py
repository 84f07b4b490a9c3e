"""What every HTTP client of pmcurate (harvest sources, the LLM teacher) reads the same way."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit


def public_url(url: str) -> str:
    """``url`` without user info or query string (where credentials hide): what logs and
    provenance may record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
