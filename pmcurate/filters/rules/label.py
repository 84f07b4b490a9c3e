"""``label=NAME:V1,V2``: keep paragraphs whose label ``NAME`` is one of the values.

Works for every class or code label of ``pmcurate/labels/``, the computed ones too:
``label=language:en`` keeps paragraphs written in English (the ``language`` label, identified
once when the build was labelled), whatever language their article declares. A score is compared
with ``edu_min`` or ``--where`` instead.
"""

from __future__ import annotations

from pmcurate import labels
from pmcurate.filters.rules import RULES, Rule, RuleError, _values, sql_list
from pmcurate.registry import UnknownNameError


@RULES.register("label")
def label(arg: str | None) -> Rule:
    name, sep, values = (arg or "").partition(":")
    if not sep or not name.strip():
        raise RuleError("rule label takes NAME:VALUE[,VALUE…], e.g. label=language:en")
    try:
        spec = labels.get(name.strip())
    except UnknownNameError as exc:
        raise RuleError(f"rule label: {exc}") from None
    if spec.kind == "score":
        raise RuleError(f"rule label: {spec.name} is a score; use edu_min or --where with a comparison")
    wanted = _values(values, ())
    unknown = [v for v in wanted if spec.classes and v not in spec.classes]
    if unknown:
        raise RuleError(
            f"rule label: unknown {spec.name} value(s) {unknown}; known: {', '.join(spec.classes)}"
        )
    column = f'labels."{spec.name}"'
    return Rule(
        f"label:{spec.name}",
        f"{column} IN {sql_list(wanted)}",
        f"'{spec.name} ' || coalesce({column}, 'unlabelled') || ' is not {', '.join(wanted)}'",
        units=frozenset({"paragraph"}),
        needs=("labels",),
    )
