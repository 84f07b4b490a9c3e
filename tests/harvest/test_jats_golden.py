"""Golden tests: exact metadata and row counts of every real article in ``tests/data/jats``.

Every expected value below was read from the XML by hand or by a small lxml XPath written for
this table (never by calling the parser), then checked by eye on a few articles. The fixtures
hold 15 articles in 12 files (the ``pmc-articleset`` file holds 4).

Rules the expectations follow (the parser must agree, or one of us is wrong):

- ``article_id`` is ``PMC<digits>``: ``pub-id-type="pmc"`` (bare number) and ``pub-id-type="pmcid"``
  (bare number in the articleset file) both normalize to it; ``version`` is null for these
  legacy files, none of which carries a ``pmcid-ver``.
- ``pub_year`` is the year the article first became public: the earliest year among its
  publication dates (``epub``, ``ppub``, ``collection``…), ``pmc-release`` excluded. Three
  fixtures differ by date type: mds526 (epub 2012, ppub 2013), PMC6398430 (epub 2018, ppub 2019)
  and PMC6358585 (epub 2018, ppub 2019); they expect 2012, 2018 and 2018.
- ``license`` is the DESIGN.md code; ``license_url`` a URL naming the license wherever the XML
  puts it (``license/@xlink:href`` or an ``ext-link`` in ``license-p``), compared here by the part
  that names the license so ``http``/``https`` and a trailing slash do not matter; null when the
  license is only prose (pntd.0002065, pone.0046493) or absent (6605965a, pone.0000217).
- ``n_figures`` counts every ``<fig>`` of the main article wherever it sits (body, inside ``<p>``,
  ``floats-group``, ``back/app``, ``boxed-text``), not in ``sub-article``; ``n_tables`` the same
  for ``<table-wrap>``.
- ``n_paragraphs`` (paragraph-count rule): one row per ``<p>`` of the main article's abstracts
  (all ``abstract`` elements, whatever their ``abstract-type``: PMC6398430's teaser and
  pntd.0002065's author summary count) and ``body`` that is

  * not nested in another ``<p>`` (the outer one carries the text),
  * not inside ``fig``, ``table-wrap``, ``caption``, ``fn``/``fn-group``, ``supplementary-material``,
    ``ref-list``, ``sub-article`` or ``back`` (those belong to their objects, or are not text),
  * not without text: 1472-6831-8-11 ``body/sec[7]/p[2]`` holds only an empty ``ext-link`` and
    is not expected as a row.

  A float nested in a counted ``<p>`` (mds526, PMC7417471, PMC6358585 put ``fig``/``table-wrap``
  inside ``<p>``) is not a paragraph of its own, and by DESIGN.md its text is not the paragraph's
  either: the surrounding text flows around it, and the caption lives in the figures/tables rows
  (``/work/shared/tools/fidelity.py`` reads a paragraph the same way). PMC6358585
  ``body/sec[4]/sec/p``, which holds only two ``supplementary-material`` items, has no text of its
  own and is not a row (28 paragraphs).

  No fixture has ``disp-quote``, ``def-list``, ``boxed-text`` or a ``list`` outside a ``<p>`` in
  its body, so the rule does not depend on how those are emitted. One does have block formulas
  outside any ``<p>``: PMC6398430's two ``disp-formula`` directly in ``body/sec[2]/sec[…]``; the
  count assumes they are NOT separate paragraph rows (45); if the parser makes them rows, the
  count is 47 and the lead decides which is right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from lxml import etree

from pmcurate.harvest import jats
from pmcurate.schema import ARTICLES, FIGURES, PARAGRAPHS, TABLES, to_table


@dataclass(frozen=True)
class Golden:
    """One article of a fixture file, with the values read from its XML."""

    file: str
    index: int
    pmcid: str
    pmid: str | None
    doi: str
    title: str
    journal: str
    publisher: str
    pub_year: int
    article_type: str
    license: str | None
    license_url: str | None
    commercial_use: bool | None
    n_figures: int
    n_tables: int
    n_paragraphs: int

    @property
    def name(self) -> str:
        stem = self.file.rsplit(".", 1)[0]
        return f"{stem}[{self.index}]" if self.file.endswith("articleset.xml") else stem


GOLDEN = (
    Golden(
        "1471-2180-11-174.nxml",
        0,
        pmcid="PMC3166277",
        pmid="21810267",
        doi="10.1186/1471-2180-11-174",
        title="Factors influencing lysis time stochasticity in bacteriophage λ",
        journal="BMC Microbiology",
        publisher="BioMed Central",
        pub_year=2011,
        article_type="research-article",
        license="CC BY",
        license_url="creativecommons.org/licenses/by/2.0",
        commercial_use=True,
        n_figures=4,
        n_tables=3,
        n_paragraphs=43,
    ),
    Golden(
        "1472-6831-8-11.nxml",
        0,
        pmcid="PMC2329613",
        pmid="18405359",
        doi="10.1186/1472-6831-8-11",
        title=(
            "The Dutch version of the Oral Health Impact Profile (OHIP-NL): Translation, reliability "
            "and construct validity"
        ),
        journal="BMC Oral Health",
        publisher="BioMed Central",
        pub_year=2008,
        article_type="research-article",
        license="CC BY",
        license_url="creativecommons.org/licenses/by/2.0",
        commercial_use=True,
        n_figures=0,
        n_tables=4,
        n_paragraphs=37,
    ),
    Golden(
        "6605965a.nxml",
        0,
        pmcid="PMC2994229",
        pmid="21045829",
        doi="10.1038/sj.bjc.6605965",
        title=(
            "Oral contraceptives, reproductive history and risk of colorectal cancer in the European "
            "Prospective Investigation into Cancer and Nutrition"
        ),
        journal="British Journal of Cancer",
        publisher="Nature Publishing Group",
        pub_year=2010,
        article_type="research-article",
        license=None,
        license_url=None,
        commercial_use=None,
        n_figures=0,
        n_tables=2,
        n_paragraphs=15,
    ),
    Golden(
        "PMC5828200.nxml",
        0,
        pmcid="PMC5828200",
        pmid="29535835",
        doi="10.18632/oncotarget.24369",
        title=(
            "Curcuminoid submicron particle ameliorates cognitive deficits and decreases amyloid "
            "pathology in Alzheimer’s disease mouse model"
        ),
        journal="Oncotarget",
        publisher="Impact Journals LLC",
        pub_year=2018,
        article_type="research-article",
        license="CC BY",
        license_url="creativecommons.org/licenses/by/3.0",
        commercial_use=True,
        n_figures=11,
        n_tables=1,
        n_paragraphs=42,
    ),
    Golden(
        "PMC6358576-PMC6358585-articleset.xml",
        0,
        pmcid="PMC6358576",
        pmid=None,
        doi="10.14309/crj.2018.87",
        title="Endoscopic versus Surgical Intervention for Jejunal Bezoar Formation",
        journal="ACG Case Reports Journal",
        publisher="American College of Gastroenterology",
        pub_year=2018,
        article_type="case-report",
        license="CC BY-NC-ND",
        license_url="creativecommons.org/licenses/by-nc-nd/4.0",
        commercial_use=False,
        n_figures=3,
        n_tables=0,
        n_paragraphs=13,
    ),
    Golden(
        "PMC6358576-PMC6358585-articleset.xml",
        1,
        pmcid="PMC6358577",
        pmid=None,
        doi="10.14309/crj.2018.94",
        title="Chronic Pancreatitis with Spontaneously Disappearing Calcifications",
        journal="ACG Case Reports Journal",
        publisher="American College of Gastroenterology",
        pub_year=2018,
        article_type="case-report",
        license="CC BY-NC-ND",
        license_url="creativecommons.org/licenses/by-nc-nd/4.0",
        commercial_use=False,
        n_figures=5,
        n_tables=0,
        n_paragraphs=14,
    ),
    Golden(
        "PMC6358576-PMC6358585-articleset.xml",
        2,
        pmcid="PMC6358578",
        pmid=None,
        doi="10.14309/crj.2018.88",
        title="Bile Cast Nephropathy Caused by Obstructive Pancreatic Carcinoma and Failed ERCP",
        journal="ACG Case Reports Journal",
        publisher="American College of Gastroenterology",
        pub_year=2018,
        article_type="case-report",
        license="CC BY-NC-ND",
        license_url="creativecommons.org/licenses/by-nc-nd/4.0",
        commercial_use=False,
        n_figures=2,
        n_tables=0,
        n_paragraphs=11,
    ),
    Golden(
        "PMC6358576-PMC6358585-articleset.xml",
        3,
        pmcid="PMC6358585",
        pmid="29362510",
        doi="10.1038/s41435-017-0010-z",
        title=(
            "Choriodecidual leukocytes display a unique gene expression signature in spontaneous labor "
            "at term"
        ),
        journal="Genes and Immunity",
        publisher="Nature Publishing Group UK",
        pub_year=2018,
        article_type="research-article",
        license="CC BY-NC-SA",
        license_url="creativecommons.org/licenses/by-nc-sa/4.0",
        commercial_use=False,
        n_figures=3,
        n_tables=3,
        n_paragraphs=28,
    ),
    Golden(
        "PMC6398430.nxml",
        0,
        pmcid="PMC6398430",
        pmid="30846892",
        doi="10.1093/beheco/ary157",
        title="Counting crows: population structure and group size variation in an urban population of crows",
        journal="Behavioral Ecology",
        publisher="Oxford University Press",
        pub_year=2018,
        article_type="research-article",
        license="CC BY",
        license_url="creativecommons.org/licenses/by/4.0",
        commercial_use=True,
        n_figures=4,
        n_tables=4,
        n_paragraphs=45,
    ),
    Golden(
        "PMC7417471.nxml",
        0,
        pmcid="PMC7417471",
        pmid="32776254",
        doi="10.1186/s40580-020-00237-4",
        title=(
            "Graphene impregnated electrospun nanofiber sensing materials: a comprehensive overview on "
            "bridging laboratory set-up to industry"
        ),
        journal="Nano Convergence",
        publisher="Springer Singapore",
        pub_year=2020,
        article_type="review-article",
        license="CC BY",
        license_url="creativecommons.org/licenses/by/4.0",
        commercial_use=True,
        n_figures=6,
        n_tables=4,
        n_paragraphs=32,
    ),
    Golden(
        "ehp-116-1694.nxml",
        0,
        pmcid="PMC2599765",
        pmid="19079722",
        doi="10.1289/ehp.11570",
        title=(
            "Dietary Exposure to 2,2′,4,4′-Tetrabromodiphenyl Ether (PBDE-47) Alters Thyroid Status and"
            " Thyroid Hormone–Regulated Gene Transcription in the Pituitary and Brain"
        ),
        journal="Environmental Health Perspectives",
        publisher="National Institute of Environmental Health Sciences",
        pub_year=2008,
        article_type="research-article",
        license="PD",
        license_url="creativecommons.org/publicdomain/mark/1.0",
        commercial_use=True,
        n_figures=3,
        n_tables=0,
        n_paragraphs=38,
    ),
    Golden(
        "mds526.nxml",
        0,
        pmcid="PMC3574550",
        pmid="23149571",
        doi="10.1093/annonc/mds526",
        title=(
            "Socio-demographic inequalities in stage of cancer diagnosis: evidence from patients with "
            "female breast, lung, colon, rectal, prostate, renal, bladder, melanoma, ovarian and "
            "endometrial cancer"
        ),
        journal="Annals of Oncology",
        publisher="Oxford University Press",
        pub_year=2012,
        article_type="research-article",
        license="CC BY-NC",
        license_url="creativecommons.org/licenses/by-nc/3.0",
        commercial_use=False,
        n_figures=2,
        n_tables=4,
        n_paragraphs=29,
    ),
    Golden(
        "pntd.0002065.nxml",
        0,
        pmcid="PMC3585041",
        pmid="23469300",
        doi="10.1371/journal.pntd.0002065",
        title=(
            "Serological Evidence of Rift Valley Fever Virus Circulation in Sheep and Goats in Zambézia"
            " Province, Mozambique"
        ),
        journal="PLoS Neglected Tropical Diseases",
        publisher="Public Library of Science",
        pub_year=2013,
        article_type="research-article",
        license="CC BY",
        license_url=None,
        commercial_use=True,
        n_figures=1,
        n_tables=5,
        n_paragraphs=29,
    ),
    Golden(
        "pone.0000217.nxml",
        0,
        pmcid="PMC1790863",
        pmid="17299597",
        doi="10.1371/journal.pone.0000217",
        title="Quantifying Organismal Complexity using a Population Genetic Approach",
        journal="PLoS ONE",
        publisher="Public Library of Science",
        pub_year=2007,
        article_type="research-article",
        license="CC BY",
        license_url=None,
        commercial_use=True,
        n_figures=3,
        n_tables=0,
        n_paragraphs=54,
    ),
    Golden(
        "pone.0046493.nxml",
        0,
        pmcid="PMC3460867",
        pmid="23029536",
        doi="10.1371/journal.pone.0046493",
        title=(
            "MmPPOX Inhibits Mycobacterium tuberculosis Lipolytic Enzymes Belonging to the "
            "Hormone-Sensitive Lipase Family and Alters Mycobacterial Growth"
        ),
        journal="PLoS ONE",
        publisher="Public Library of Science",
        pub_year=2012,
        article_type="research-article",
        license="CC BY",
        license_url=None,
        commercial_use=True,
        n_figures=4,
        n_tables=3,
        n_paragraphs=35,
    ),
)

ARTICLES_PER_FILE = {
    "1471-2180-11-174.nxml": ["PMC3166277"],
    "1472-6831-8-11.nxml": ["PMC2329613"],
    "6605965a.nxml": ["PMC2994229"],
    "PMC5828200.nxml": ["PMC5828200"],
    "PMC6358576-PMC6358585-articleset.xml": ["PMC6358576", "PMC6358577", "PMC6358578", "PMC6358585"],
    "PMC6398430.nxml": ["PMC6398430"],
    "PMC7417471.nxml": ["PMC7417471"],
    "ehp-116-1694.nxml": ["PMC2599765"],
    "mds526.nxml": ["PMC3574550"],
    "pntd.0002065.nxml": ["PMC3585041"],
    "pone.0000217.nxml": ["PMC1790863"],
    "pone.0046493.nxml": ["PMC3460867"],
}

ParseFixture = Callable[[str], list[jats.ParsedArticle]]


def golden_params() -> list:
    return [pytest.param(g, id=g.name) for g in GOLDEN]


def parsed_article(parsed_fixture: ParseFixture, golden: Golden) -> jats.ParsedArticle:
    return parsed_fixture(golden.file)[golden.index]


def test_golden_table_covers_every_fixture_file(fixture_path: Callable) -> None:
    folder = fixture_path("jats/PROVENANCE.md").parent
    on_disk = {p.name for p in folder.iterdir() if p.suffix in {".xml", ".nxml"}}
    assert on_disk == set(ARTICLES_PER_FILE) == {g.file for g in GOLDEN}


@pytest.mark.parametrize("file", sorted(ARTICLES_PER_FILE))
def test_file_yields_its_articles_in_document_order(parsed_fixture: ParseFixture, file: str) -> None:
    assert [a.article["article_id"] for a in parsed_fixture(file)] == ARTICLES_PER_FILE[file]


@pytest.mark.parametrize("golden", golden_params())
def test_article_id_and_pmcid(parsed_fixture: ParseFixture, golden: Golden) -> None:
    article = parsed_article(parsed_fixture, golden).article
    assert (article["article_id"], article["pmcid"], article["version"]) == (golden.pmcid, golden.pmcid, None)


@pytest.mark.parametrize("golden", golden_params())
def test_pmid(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["pmid"] == golden.pmid


@pytest.mark.parametrize("golden", golden_params())
def test_doi(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["doi"] == golden.doi


@pytest.mark.parametrize("golden", golden_params())
def test_title(parsed_fixture: ParseFixture, golden: Golden) -> None:
    title = parsed_article(parsed_fixture, golden).article["title"]
    assert " ".join(title.split()) == golden.title


@pytest.mark.parametrize("golden", golden_params())
def test_journal(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["journal"] == golden.journal


@pytest.mark.parametrize("golden", golden_params())
def test_publisher(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["publisher"] == golden.publisher


@pytest.mark.parametrize("golden", golden_params())
def test_pub_year_is_the_earliest_publication_year(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["pub_year"] == golden.pub_year


@pytest.mark.parametrize("golden", golden_params())
def test_article_type_is_verbatim(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["article_type"] == golden.article_type


@pytest.mark.parametrize("golden", golden_params())
def test_license_code(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["license"] == golden.license


@pytest.mark.parametrize("golden", golden_params())
def test_license_url(parsed_fixture: ParseFixture, golden: Golden) -> None:
    url = parsed_article(parsed_fixture, golden).article["license_url"]
    if golden.license_url is None:
        assert url is None
    else:
        assert url is not None and golden.license_url in url


@pytest.mark.parametrize("golden", golden_params())
def test_commercial_use(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert parsed_article(parsed_fixture, golden).article["commercial_use"] is golden.commercial_use


@pytest.mark.parametrize("golden", golden_params())
def test_figure_count(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert len(parsed_article(parsed_fixture, golden).figures) == golden.n_figures


@pytest.mark.parametrize("golden", golden_params())
def test_table_count(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert len(parsed_article(parsed_fixture, golden).tables) == golden.n_tables


@pytest.mark.parametrize("golden", golden_params())
def test_paragraph_count(parsed_fixture: ParseFixture, golden: Golden) -> None:
    assert len(parsed_article(parsed_fixture, golden).paragraphs) == golden.n_paragraphs


@pytest.mark.parametrize("golden", golden_params())
def test_article_row_counts_match_its_rows(parsed_fixture: ParseFixture, golden: Golden) -> None:
    parsed = parsed_article(parsed_fixture, golden)
    counts = (parsed.article["n_paragraphs"], parsed.article["n_figures"], parsed.article["n_tables"])
    assert counts == (len(parsed.paragraphs), len(parsed.figures), len(parsed.tables))


@pytest.mark.parametrize("golden", golden_params())
def test_rows_fit_their_arrow_schemas(parsed_fixture: ParseFixture, golden: Golden) -> None:
    parsed = parsed_article(parsed_fixture, golden)
    tables = [
        to_table([parsed.article], ARTICLES),
        to_table(parsed.paragraphs, PARAGRAPHS),
        to_table(parsed.figures, FIGURES),
        to_table(parsed.tables, TABLES),
    ]
    assert [t.num_rows for t in tables] == [
        1,
        len(parsed.paragraphs),
        len(parsed.figures),
        len(parsed.tables),
    ]


@pytest.mark.parametrize("golden", golden_params())
def test_every_row_keys_on_the_article_id(parsed_fixture: ParseFixture, golden: Golden) -> None:
    parsed = parsed_article(parsed_fixture, golden)
    rows = parsed.paragraphs + parsed.figures + parsed.tables
    assert {row["article_id"] for row in rows} <= {golden.pmcid}


@pytest.mark.parametrize("golden", golden_params())
def test_figure_ids_match_the_xml_fig_ids(
    parsed_fixture: ParseFixture, source_articles: Callable, golden: Golden
) -> None:
    source = source_articles(golden.file)[golden.index]
    expected = [f.get("id") for f in source.iter("fig") if not _in_sub_article(f)]
    got = [f["xml_id"] for f in parsed_article(parsed_fixture, golden).figures]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("golden", golden_params())
def test_table_ids_match_the_xml_table_wrap_ids(
    parsed_fixture: ParseFixture, source_articles: Callable, golden: Golden
) -> None:
    source = source_articles(golden.file)[golden.index]
    expected = [t.get("id") for t in source.iter("table-wrap") if not _in_sub_article(t)]
    got = [t["xml_id"] for t in parsed_article(parsed_fixture, golden).tables]
    assert sorted(got) == sorted(expected)


def _in_sub_article(el: etree._Element) -> bool:
    return any(a.tag == "sub-article" for a in el.iterancestors())
