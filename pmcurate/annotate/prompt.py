"""The teacher's prompt, versioned: the rubric as instructions, the answer as a JSON schema.

Changing a word of the prompt changes ``PROMPT_HASH``; every answer is stored with the hash of
the prompt that produced it, so answers of different prompts are never mixed up in the cache or
in a training set. Bump ``PROMPT_VERSION`` with any change of the words here.

The rubric of each label and the answer's JSON schema come from the taught labels' specs
(``pmcurate/labels/``): a new taught label adds its section and its key, and so a new hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pmcurate import labels

PROMPT_VERSION = "paragraph-labels-v1"

NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _keys(names: list[str]) -> str:
    count = NUMBERS[len(names)] if len(names) < len(NUMBERS) else str(len(names))
    return f"exactly {count} key{'s' if len(names) != 1 else ''}: " + ", ".join(f'"{n}"' for n in names)


TAUGHT = labels.taught()
"""The labels the teacher gives (``pmcurate/labels/``): their rubrics make the prompt."""

SYSTEM = (
    """\
You annotate single paragraphs taken from biomedical research articles (PubMed Central).
Read the paragraph on its own; the section title is a hint only. Answer with one JSON object with
"""
    + _keys([spec.name for spec in TAUGHT])
    + ". No other text.\n\n"
    + "\n\n".join(spec.rubric for spec in TAUGHT)
    + "\n"
)

USER = "Section title: {section}\n\nParagraph:\n{text}"

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {spec.name: spec.answer_schema() for spec in TAUGHT},
    "required": [spec.name for spec in TAUGHT],
    "additionalProperties": False,
}

RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "paragraph_labels", "strict": True, "schema": ANSWER_SCHEMA},
}

PROMPT_HASH = hashlib.sha256(
    json.dumps([PROMPT_VERSION, SYSTEM, USER, ANSWER_SCHEMA], sort_keys=True).encode()
).hexdigest()[:16]


def messages(text: str, section: str | None) -> list[dict[str, str]]:
    """The chat messages asking for one paragraph's labels."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER.format(section=section or "(none)", text=text)},
    ]
