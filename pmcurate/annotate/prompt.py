"""The teacher's prompt, versioned: the rubric as instructions, the answer as a JSON schema.

Changing a word of the prompt changes ``PROMPT_HASH``; every answer is stored with the hash of
the prompt that produced it, so answers of different prompts are never mixed up in the cache or
in a training set. Bump ``PROMPT_VERSION`` with any change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pmcurate import schema

PROMPT_VERSION = "paragraph-labels-v1"

SYSTEM = """\
You annotate single paragraphs taken from biomedical research articles (PubMed Central).
Read the paragraph on its own; the section title is a hint only. Answer with one JSON object with
exactly three keys: "document_type", "domain", "educational_score". No other text.

document_type: what kind of writing the paragraph is.
- "clinical_case": narrates one or a few specific, individual patients: presentation, history,
  examination, test results, diagnosis, treatment, course or outcome ("A 54-year-old woman
  presented with..."). Discussion mainly about the described patient also counts.
- "study": reports or discusses original research done by the authors: aims, methods, materials,
  experiments, cohorts, statistics, results and their interpretation.
- "review": synthesises existing knowledge or literature: background, state of the art, narrative
  overviews, general explanations of diseases, mechanisms or methods not tied to the authors' own
  new data.
- "other": anything else: acknowledgements, funding, competing interests, author contributions,
  data availability, administrative or editorial notices, corrections, figure/legend-like fragments.

domain: the subject area.
- "clinical": human health care: patients, diagnosis, treatment, clinical practice, clinical
  trials, nursing, public health practice with patients.
- "biomedical": life-science research not about patient care: molecular and cell biology,
  genetics, microbiology, biochemistry, animal models, neuroscience, bioinformatics, basic
  epidemiology.
- "other": not biomedical (pure statistics, computing or physics with no biomedical angle,
  administrative text).

educational_score: integer 1 to 5, how useful the paragraph is for teaching biomedicine at
college level.
- 1: no educational value (boilerplate, administrative, references, fragments).
- 2: little value: narrow technical detail (reagent lists, protocol steps, raw numbers) with no
  explanation.
- 3: some value: relevant content with some context, but specialised or partly incoherent for a
  learner.
- 4: high value: clear, coherent and informative; explains findings, concepts or clinical
  reasoning well.
- 5: outstanding: textbook-like, thorough explanation of important concepts, very instructive.
"""

USER = "Section title: {section}\n\nParagraph:\n{text}"

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "document_type": {"type": "string", "enum": list(schema.DOCUMENT_TYPES)},
        "domain": {"type": "string", "enum": list(schema.DOMAINS)},
        "educational_score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["document_type", "domain", "educational_score"],
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
