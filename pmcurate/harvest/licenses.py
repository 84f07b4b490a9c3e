"""License normalization: the many ways JATS and source metadata state a license → one code.

Codes (DESIGN.md): ``CC0``, ``CC BY``, ``CC BY-SA``, ``CC BY-ND``, ``CC BY-NC``, ``CC BY-NC-SA``,
``CC BY-NC-ND``, ``PD`` (also US-government works), ``TDM`` (PMC author manuscripts released for
text mining), ``other`` (a license is stated but is none of those), or None
(nothing machine-readable was found). Evidence is weighed from the most to the least reliable:
a Creative Commons URL, then a ``license-type`` value, then the prose.
"""

from __future__ import annotations

import re

from pmcurate.schema import COMMERCIAL_LICENSES, NONCOMMERCIAL_LICENSES

_CC_URL = re.compile(
    r"creativecommons\.org/(?:licenses/(?P<kind>by(?:-(?:nc|sa|nd))*)|publicdomain/(?P<pd>zero|mark))",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)

_LICENSE_TYPES = {
    "cc0": "CC0",
    "cc-zero": "CC0",
    "cc-by": "CC BY",
    "cc by": "CC BY",
    "cc-by-sa": "CC BY-SA",
    "cc-by-nd": "CC BY-ND",
    "cc-by-nc": "CC BY-NC",
    "cc-by-nc-sa": "CC BY-NC-SA",
    "cc-by-nc-nd": "CC BY-NC-ND",
    "public-domain": "PD",
    "publicdomain": "PD",
    "tdm": "TDM",
}

_CODE_ALIASES = {
    "cc by": "CC BY",
    "cc-by": "CC BY",
    "cc by-sa": "CC BY-SA",
    "cc by-nd": "CC BY-ND",
    "cc by-nc": "CC BY-NC",
    "cc by-nc-sa": "CC BY-NC-SA",
    "cc by-nc-nd": "CC BY-NC-ND",
    "cc0": "CC0",
    "cc 0": "CC0",
    "pd": "PD",
    "public domain": "PD",
    "tdm": "TDM",
}

_PROSE_CODE = re.compile(r"\bCC[- ]BY(?P<rest>(?:[- ](?:NC|SA|ND))*)\b", re.IGNORECASE)
_ATTRIBUTION = re.compile(r"creative\s+commons\s+attribution|attribution\s+(?:\d\.\d\s+)?license", re.I)
_NONCOMMERCIAL = re.compile(r"non[-\s]?commercial", re.IGNORECASE)
_NODERIVS = re.compile(r"no[-\s]?deriv", re.IGNORECASE)
_SHAREALIKE = re.compile(r"share[-\s]?alike", re.IGNORECASE)
_CC0 = re.compile(r"\bCC0\b|creative\s+commons\s+zero|public\s+domain\s+dedication", re.IGNORECASE)
_PUBLIC_DOMAIN = re.compile(r"public\s+domain", re.IGNORECASE)
# "This article is a U.S. Government work and is not subject to copyright in the USA", "written by
# US Government employees", "a work of the United States Government": public domain (17 U.S.C. § 105).
_US_GOVERNMENT_WORK = re.compile(
    r"\b(?:U\.\s?S\.|US|USA|United\s+States)\s+(?:Federal\s+)?Government\s+(?:work|employees?)"
    r"|work\s+of\s+the\s+(?:U\.\s?S\.|US|United\s+States)\s+(?:Federal\s+)?Government"
    r"|not\s+subject\s+to\s+copyright\s+(?:protection\s+)?in\s+the\s+(?:United\s+States|U\.\s?S\.(?:A\.)?|USA?)\b",
    re.IGNORECASE,
)
# PMC author manuscripts: "This file is available for text mining. It may also be used consistent
# with the principles of fair use under the copyright law."
_TEXT_MINING = re.compile(r"available\s+for\s+text\s+(?:and\s+data\s+)?mining", re.IGNORECASE)


def normalize_code(code: str | None) -> str | None:
    """A license code from source metadata (``CC BY``, ``cc by-nc``, ``CC0``…) in its canonical spelling.

    Unrecognised non-empty codes (e.g. PMC's ``NO-CC CODE``) become ``other``.
    """
    if code is None or not code.strip():
        return None
    key = " ".join(code.strip().lower().split())
    if key in _CODE_ALIASES:
        return _CODE_ALIASES[key]
    match = _PROSE_CODE.fullmatch(code.strip())
    return _code_from_parts(match.group("rest")) if match else "other"


def normalize_license(
    urls: list[str] | str | None = None, license_type: str | None = None, text: str | None = None
) -> tuple[str | None, str | None]:
    """The license code and URL stated by a JATS ``license`` element.

    ``urls`` are the candidate URLs (``ali:license_ref``, ``@xlink:href``, ``ext-link`` hrefs);
    URLs inside ``text`` are considered too. Returns ``(code, url)``; the URL is the one that
    decided the code, or the first URL found.
    """
    if isinstance(urls, str):
        urls = [urls]
    candidates = [u.strip() for u in urls or [] if u and u.strip()]
    if text:
        candidates += _URL.findall(text)
    for url in candidates:
        code = _code_from_url(url)
        if code:
            return code, url
    first_url = candidates[0] if candidates else None
    if license_type:
        code = _LICENSE_TYPES.get(license_type.strip().lower())
        if code:
            return code, first_url
    if text:
        code = _code_from_prose(text)
        if code:
            return code, first_url
    if first_url or (text and text.strip()) or license_type:
        return "other", first_url
    return None, None


def commercial_use(code: str | None) -> bool | None:
    """True for licenses that allow commercial reuse, False for NC licenses, None when unknown."""
    if code in COMMERCIAL_LICENSES:
        return True
    if code in NONCOMMERCIAL_LICENSES:
        return False
    return None


def _code_from_url(url: str) -> str | None:
    match = _CC_URL.search(url)
    if not match:
        return None
    if match.group("pd"):
        return "CC0" if match.group("pd").lower() == "zero" else "PD"
    return _code_from_parts(match.group("kind")[2:])


def _code_from_parts(rest: str) -> str:
    """``-nc-nd`` (any order, any separator) → ``CC BY-NC-ND``."""
    parts = set(re.findall(r"nc|sa|nd", rest.lower()))
    suffix = "".join(f"-{p.upper()}" for p in ("nc", "sa", "nd") if p in parts)
    if suffix == "-SA-ND" or suffix == "-NC-SA-ND":  # contradictory; keep the most restrictive reading
        suffix = suffix.replace("-SA", "")
    return "CC BY" + suffix


def _code_from_prose(text: str) -> str | None:
    match = _PROSE_CODE.search(text)
    if match:
        return _code_from_parts(match.group("rest"))
    if _CC0.search(text):
        return "CC0"
    if _ATTRIBUTION.search(text):
        rest = ""
        if _NONCOMMERCIAL.search(text):
            rest += "-nc"
        if _SHAREALIKE.search(text):
            rest += "-sa"
        if _NODERIVS.search(text):
            rest += "-nd"
        return _code_from_parts(rest)
    if _PUBLIC_DOMAIN.search(text) or _US_GOVERNMENT_WORK.search(text):
        return "PD"
    if _TEXT_MINING.search(text):
        return "TDM"
    return None


def states_a_license(text: str) -> bool:
    """Whether prose outside a ``license`` element (a copyright statement, an acknowledgement, a
    note) grants a license: a Creative Commons or public-domain statement, a US-government work,
    or a text-mining grant. Other prose there (thanks, funding) says nothing of the license."""
    return bool(
        _STATES_A_LICENSE.search(text) or _US_GOVERNMENT_WORK.search(text) or _TEXT_MINING.search(text)
    )


_STATES_A_LICENSE = re.compile(r"creative\s+commons|public\s+domain", re.IGNORECASE)
