"""Built-in filter rules: named SQL predicates, each with the reason it gives for a row it drops.

A rule is evaluated by DuckDB over one row of a subset's row view (see ``subset.py``): a paragraph
joined with its article, its labels and its article's label statistics; an article with those
statistics; or a figure joined with its article. Every view has ``text`` and ``n_words``, so rules
about words and language work on all of them. A predicate that is NULL counts as false: a row whose
license is unknown does not pass ``license=commercial``.

Rules are named on the command line or in a manifest as ``NAME`` or ``NAME=ARG``
(``min_words=100``, ``license=commercial``, ``license=CC BY,CC0``, ``domain=clinical,biomedical``).

``RULES`` is the registry of rules by name: the built-in ones below, and every module of this
package (``label.py``…). A new rule is one new module here: a function from the argument after
``=`` (None without one) to a ``Rule``, registered with ``@RULES.register("NAME")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pmcurate import schema
from pmcurate.errors import Fatal
from pmcurate.registry import Registry, UnknownNameError

UNITS = ("paragraph", "article", "figure")
MIN_WORDS = 48
"""Biomed-Enriched drops paragraphs under 64 tokens; at ~1.33 subword tokens per English word,
48 words is that length."""

BOILERPLATE_SECTIONS = (
    r"acknowledg",
    r"funding",
    r"financial (support|disclosure)",
    r"conflicts? of interests?",
    r"competing (financial )?interests?",
    r"declarations? of (competing )?interests?",
    r"disclosures?",
    r"authors?'? ?contributions?",
    r"contributors?(hip)?",
    r"data (and materials? )?(availability|access|sharing)",
    r"availability of (data|supporting data)",
    r"ethics (statement|approval|declarations?)",
    r"consent for publication",
    r"abbreviations",
    r"supplementary (materials?|information|data)",
)
"""Section-title patterns of back-matter boilerplate, matched case-insensitively anywhere in the
paragraph's section title or section path."""

BOILERPLATE_PATHS = r"(^|/)(ack|fn-group|notes|glossary)(\[|/|$)"
"""Paragraphs under these JATS elements are boilerplate whatever their titles say."""


class RuleError(Fatal):
    """A rule that does not exist, has a bad argument, or does not apply to the unit asked."""


RuleFactory = Callable[[str | None], "Rule"]
RULES: Registry[RuleFactory] = Registry("rule", package=__name__)


@dataclass(frozen=True)
class Rule:
    """A named filter: rows for which ``predicate`` is true pass; the others are dropped with ``reason``.

    ``predicate`` and ``reason`` are SQL expressions over a row view (``reason`` evaluates to a
    string). ``needs`` names the tables the rule reads (``labels``); ``units`` the row kinds it
    applies to; ``functions`` the SQL functions it calls that the subset must register
    (``detect_language``).
    """

    name: str
    predicate: str
    reason: str
    units: frozenset[str] = frozenset(UNITS)
    needs: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in values) + ")"


def _values(arg: str | None, default: Iterable[str]) -> list[str]:
    values = [v.strip() for v in arg.split(",")] if arg else list(default)
    if not values or any(not v for v in values):
        raise RuleError(f"empty value in list {arg!r}")
    return values


def _number(name: str, arg: str | None, default: float) -> float:
    if arg is None:
        return default
    try:
        return float(arg)
    except ValueError:
        raise RuleError(f"rule {name}: {arg!r} is not a number") from None


def _format_number(value: float) -> str:
    return f"{value:g}"


@RULES.register("min_words")
def min_words(arg: str | None) -> Rule:
    n = int(_number("min_words", arg, MIN_WORDS))
    return Rule(
        "min_words",
        f"n_words >= {n}",
        f"'fewer than {n} words (' || coalesce(n_words, 0) || ')'",
    )


@RULES.register("license")
def license_rule(arg: str | None) -> Rule:
    """``commercial`` / ``noncommercial`` use the article's ``commercial_use``; otherwise a code list."""
    kind = (arg or "commercial").strip()
    shown = "coalesce(license, 'unknown license')"
    if kind.lower() == "commercial":
        return Rule("license", "commercial_use", f"{shown} || ' does not allow commercial use'")
    if kind.lower() in {"noncommercial", "non-commercial", "nc"}:
        return Rule("license", "NOT commercial_use", f"{shown} || ' allows commercial use or is unknown'")
    codes = _values(kind, ())
    unknown = [c for c in codes if c not in schema.LICENSE_CODES and c != "other"]
    if unknown:
        raise RuleError(f"unknown license code(s) {unknown}; known: {', '.join(schema.LICENSE_CODES)}, other")
    return Rule("license", f"license IN {sql_list(codes)}", f"{shown} || ' is not one of {', '.join(codes)}'")


@RULES.register("clinical_case")
def clinical_case(arg: str | None) -> Rule:
    if arg is not None:
        raise RuleError("rule clinical_case takes no argument")
    return Rule(
        "clinical_case",
        "document_type = 'clinical_case'",
        "'document type ' || coalesce(document_type, 'unlabelled') || ', not clinical_case'",
        units=frozenset({"paragraph"}),
        needs=("labels",),
    )


@RULES.register("edu_min")
def edu_min(arg: str | None) -> Rule:
    score = _number("edu_min", arg, 3.0)
    shown = _format_number(score)
    return Rule(
        "edu_min",
        f"educational_score >= {score}",
        "'educational score ' || coalesce(round(educational_score, 2)::VARCHAR, 'unlabelled') "
        f"|| ' < {shown}'",
        units=frozenset({"paragraph"}),
        needs=("labels",),
    )


@RULES.register("domain")
def domain(arg: str | None) -> Rule:
    values = _values(arg, ("clinical",))
    unknown = [v for v in values if v not in schema.DOMAINS]
    if unknown:
        raise RuleError(f"unknown domain(s) {unknown}; known: {', '.join(schema.DOMAINS)}")
    return Rule(
        "domain",
        f"domain IN {sql_list(values)}",
        f"'domain ' || coalesce(domain, 'unlabelled') || ' is not {', '.join(values)}'",
        units=frozenset({"paragraph"}),
        needs=("labels",),
    )


@RULES.register("not_retracted")
def not_retracted(arg: str | None) -> Rule:
    if arg is not None:
        raise RuleError("rule not_retracted takes no argument")
    return Rule(
        "not_retracted",
        "NOT coalesce(retracted, false) AND NOT coalesce(is_retraction_notice, false)",
        "CASE WHEN coalesce(retracted, false) THEN 'article is retracted' "
        "ELSE 'article is a retraction notice' END",
    )


@RULES.register("language")
def language(arg: str | None) -> Rule:
    """Language of the row's text by ``py3langid`` (model inside the package; nothing downloaded)."""
    codes = _values(arg, ("en",))
    return Rule(
        "language",
        f"detect_language(text) IN {sql_list(codes)}",
        f"'language ' || detect_language(text) || ' is not {', '.join(codes)}'",
        functions=("detect_language",),
    )


@RULES.register("boilerplate")
def boilerplate(arg: str | None) -> Rule:
    if arg is not None:
        raise RuleError("rule boilerplate takes no argument")
    titles = "|".join(BOILERPLATE_SECTIONS)
    where = "lower(concat_ws(' / ', section_title, array_to_string(section_path, ' / ')))"
    in_path = f"regexp_matches(coalesce(path, ''), {sql_string(BOILERPLATE_PATHS)})"
    hit = f"(regexp_matches({where}, {sql_string(titles)}) OR {in_path})"
    return Rule(
        "boilerplate",
        f"NOT {hit}",
        "'boilerplate section: ' || coalesce(nullif(concat_ws(' / ', section_title), ''), path)",
        units=frozenset({"paragraph"}),
    )


@RULES.register("has_clinical_case")
def has_clinical_case(arg: str | None) -> Rule:
    n = int(_number("has_clinical_case", arg, 1))
    return Rule(
        "has_clinical_case",
        f"article_clinical_paragraphs >= {n}",
        f"'article has ' || coalesce(article_clinical_paragraphs, 0) || ' clinical-case paragraphs (< {n})'",
        units=frozenset({"paragraph", "article"}),
        needs=("labels",),
    )


@RULES.register("mostly_clinical")
def mostly_clinical(arg: str | None) -> Rule:
    share = _number("mostly_clinical", arg, 0.5)
    if not 0.0 <= share <= 1.0:
        raise RuleError(f"rule mostly_clinical: share {share} is not between 0 and 1")
    return Rule(
        "mostly_clinical",
        f"article_clinical_fraction >= {share}",
        "'article clinical-case share ' || round(coalesce(article_clinical_fraction, 0), 3) "
        f"|| ' < {_format_number(share)}'",
        units=frozenset({"paragraph", "article"}),
        needs=("labels",),
    )


def parse_rule(spec: str | Rule) -> Rule:
    """A rule from its spec ``NAME`` or ``NAME=ARG``; a ``Rule`` is returned as it is."""
    if isinstance(spec, Rule):
        return spec
    name, sep, arg = spec.partition("=")
    try:
        factory = RULES.get(name.strip())
    except UnknownNameError as exc:
        raise RuleError(str(exc)) from None
    return factory(arg.strip() if sep else None)


def where_rule(sql: str, name: str = "where") -> Rule:
    """A rule from a free SQL condition (``--where``)."""
    if not sql.strip():
        raise RuleError("empty --where condition")
    return Rule(name, f"({sql})", sql_string(f"does not match: {sql}"))
