"""License normalization: real-world license URLs, ``license-type`` values and prose → DESIGN.md codes.

``normalize_license(url, license_type, text)`` returns ``(code, url)``: ``code`` one of ``CC0``,
``CC BY``, ``CC BY-SA``, ``CC BY-ND``, ``CC BY-NC``, ``CC BY-NC-SA``, ``CC BY-NC-ND``, ``PD``,
``TDM``, ``other`` or None (unknown); ``url`` the URL naming the license (the one given, else one
found in the text), None when there is none. The strings below are copied from real PMC articles
(the fixtures in tests/data/jats and well-known publisher boilerplate).
"""

from __future__ import annotations

import pytest

from pmcurate.harvest.licenses import commercial_use, normalize_license


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://creativecommons.org/licenses/by/4.0/", "CC BY"),
        ("http://creativecommons.org/licenses/by/2.0", "CC BY"),
        ("https://creativecommons.org/licenses/by/4.0/legalcode", "CC BY"),
        ("http://creativecommons.org/licenses/by/3.0/igo", "CC BY"),
        ("http://creativecommons.org/licenses/by-sa/4.0/", "CC BY-SA"),
        ("https://creativecommons.org/licenses/by-nd/4.0/", "CC BY-ND"),
        ("http://creativecommons.org/licenses/by-nc/3.0", "CC BY-NC"),
        ("https://creativecommons.org/licenses/by-nc/4.0/deed.en", "CC BY-NC"),
        ("http://creativecommons.org/licenses/by-nc-sa/4.0/", "CC BY-NC-SA"),
        ("http://creativecommons.org/licenses/by-nc-nd/4.0/", "CC BY-NC-ND"),
        ("https://creativecommons.org/licenses/by-nc-nd/3.0/igo/", "CC BY-NC-ND"),
        ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0"),
        ("http://creativecommons.org/publicdomain/mark/1.0/", "PD"),
        (" http://creativecommons.org/licenses/by/4.0/ ", "CC BY"),
    ],
)
def test_creative_commons_url_gives_its_code(url: str, code: str) -> None:
    assert normalize_license(url, None, None)[0] == code


def test_license_url_is_returned_with_the_code() -> None:
    code, url = normalize_license("http://creativecommons.org/licenses/by-nc/3.0", "creative-commons", None)
    assert (code, url) == ("CC BY-NC", "http://creativecommons.org/licenses/by-nc/3.0")


@pytest.mark.parametrize(
    "url",
    [
        "http://www.elsevier.com/open-access/userlicense/1.0/",
        "https://www.elsevier.com/tdm/userlicense/1.0/",
        "https://www.springer.com/tdm",
    ],
)
def test_publisher_specific_license_url_gives_other(url: str) -> None:
    """Publisher licenses (Elsevier's user license, TDM-only terms) are neither CC nor public domain.
    ``TDM`` is PMC's source-metadata code for author manuscripts released for text mining
    (SOURCES.md), not something a publisher URL tells."""
    assert normalize_license(url, None, None)[0] == "other"


def test_pmc_tdm_code_is_kept() -> None:
    """The PMC Cloud Service metadata ``license_code`` ``TDM`` passed through as a license type."""
    assert normalize_license(None, "TDM", None)[0] == "TDM"


@pytest.mark.parametrize(
    ("license_type", "code"),
    [
        ("cc-by", "CC BY"),
        ("CC BY", "CC BY"),
        ("cc-by-sa", "CC BY-SA"),
        ("cc-by-nc", "CC BY-NC"),
        ("cc-by-nc-nd", "CC BY-NC-ND"),
        ("cc0", "CC0"),
        ("public-domain", "PD"),
    ],
)
def test_license_type_alone_gives_its_code(license_type: str, code: str) -> None:
    assert normalize_license(None, license_type, None)[0] == code


@pytest.mark.parametrize("license_type", ["open-access", "OpenAccess", "free", "creative-commons"])
def test_license_type_that_names_no_license_claims_no_license(license_type: str) -> None:
    """ "open-access" alone says nothing about reuse: ``other`` or unknown, never a CC code."""
    code, url = normalize_license(None, license_type, None)
    assert code in {None, "other"} and commercial_use(code) is None and url is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # pntd.0002065, pone.0046493 (PLoS, no URL anywhere)
        (
            "This is an open-access article distributed under the terms of the Creative Commons Attribution "
            "License, which permits unrestricted use, distribution, and reproduction in any medium, provided "
            "the original author and source are credited.",
            "CC BY",
        ),
        (
            "This work is licensed under a Creative Commons Attribution-NonCommercial 4.0 "
            "International License.",
            "CC BY-NC",
        ),
        (
            "This is an open-access article. This work is licensed under a Creative Commons "
            "Attribution-NonCommercial-NoDerivatives 4.0 International License.",
            "CC BY-NC-ND",
        ),
        (
            "Open Access This article is licensed under a Creative Commons "
            "Attribution-NonCommercial-ShareAlike 4.0 International License, which permits any "
            "non-commercial use, sharing, adaptation, distribution and reproduction in any medium or format",
            "CC BY-NC-SA",
        ),
        (
            "This is an Open Access article distributed under the terms of the Creative Commons Attribution "
            "Non-Commercial License, which permits unrestricted non-commercial use, distribution, and "
            "reproduction in any medium, provided the original work is properly cited.",
            "CC BY-NC",
        ),
        (
            "This is an open access article distributed under the terms of the Creative Commons "
            "Attribution-NonCommercial-NoDerivs License, which permits use and distribution in any medium.",
            "CC BY-NC-ND",
        ),
        (
            "Distributed under a Creative Commons Attribution-ShareAlike 4.0 International License.",
            "CC BY-SA",
        ),
        (
            "Distributed under a Creative Commons Attribution-NoDerivatives 4.0 International License.",
            "CC BY-ND",
        ),
        (
            "This article is distributed under the terms of the Creative Commons Attribution License "
            "(CC-BY), which permits unrestricted use and redistribution",
            "CC BY",
        ),
        ("This is an open access article under the CC BY-NC-ND license.", "CC BY-NC-ND"),
        ("Published under the CC BY 4.0 license.", "CC BY"),
        # ehp-116-1694
        ("Publication of EHP lies in the public domain and is therefore without copyright.", "PD"),
    ],
    ids=[
        "plos-attribution",
        "attribution-noncommercial",
        "attribution-nc-noderivatives",
        "springer-nc-sharealike",
        "oup-non-commercial",
        "noderivs-spelling",
        "sharealike",
        "noderivatives",
        "cc-by-acronym",
        "cc-by-nc-nd-acronym",
        "cc-by-4.0-acronym",
        "public-domain-prose",
    ],
)
def test_license_prose_gives_its_code(text: str, code: str) -> None:
    assert normalize_license(None, "open-access", text)[0] == code


def test_prose_only_license_has_no_url() -> None:
    text = (
        "This is an open-access article distributed under the terms of the Creative Commons "
        "Attribution License."
    )
    assert normalize_license(None, None, text) == ("CC BY", None)


def test_url_inside_license_text_gives_code_and_url() -> None:
    """PMC7417471: ``license-type="OpenAccess"``, no href, the URL only inside ``license-p``."""
    text = (
        "Open AccessThis article is licensed under a Creative Commons Attribution 4.0 International License, "
        "which permits use, sharing, adaptation, distribution and reproduction in any medium or format. "
        "To view a copy of this licence, visit http://creativecommons.org/licenses/by/4.0/."
    )
    code, url = normalize_license(None, "OpenAccess", text)
    assert (
        code == "CC BY"
        and url is not None
        and url.rstrip("/.") == "http://creativecommons.org/licenses/by/4.0"
    )


def test_license_url_wins_over_license_type() -> None:
    """license-type says only "open-access"; the href names the exact license."""
    url = "http://creativecommons.org/licenses/by-nc-nd/4.0/"
    assert normalize_license(url, "cc-by", None)[0] == "CC BY-NC-ND"


def test_license_url_wins_over_loose_prose() -> None:
    url = "http://creativecommons.org/licenses/by-nc/3.0"
    text = (
        "This is an Open Access article distributed under the terms of the Creative Commons "
        "Attribution License."
    )
    assert normalize_license(url, None, text)[0] == "CC BY-NC"


def test_cc0_waiver_for_data_does_not_override_the_article_license() -> None:
    """BioMed Central boilerplate: the article is CC BY, the CC0 waiver applies to its data only."""
    text = (
        "This article is distributed under the terms of the Creative Commons Attribution 4.0 "
        "International License (http://creativecommons.org/licenses/by/4.0/), which permits unrestricted "
        "use, distribution, and reproduction in any medium, provided you give appropriate credit to the "
        "original author(s) and the source. The Creative Commons Public Domain Dedication waiver "
        "(http://creativecommons.org/publicdomain/zero/1.0/) applies to the data made available in this "
        "article, unless otherwise stated."
    )
    assert normalize_license(None, "OpenAccess", text)[0] == "CC BY"


def test_no_license_information_is_unknown() -> None:
    assert normalize_license(None, None, None) == (None, None)


def test_text_naming_no_license_claims_no_license() -> None:
    code, _ = normalize_license(None, None, "Copyright © 2010 Cancer Research UK. All rights reserved.")
    assert code in {None, "other"} and commercial_use(code) is None


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        ("CC0", True),
        ("CC BY", True),
        ("CC BY-SA", True),
        ("CC BY-ND", True),
        ("PD", True),
        ("CC BY-NC", False),
        ("CC BY-NC-SA", False),
        ("CC BY-NC-ND", False),
        ("TDM", None),
        ("other", None),
        (None, None),
    ],
)
def test_commercial_use_follows_the_code(code: str | None, allowed: bool | None) -> None:
    assert commercial_use(code) is allowed
