"""``document_type``: what kind of writing a paragraph is (Biomed-Enriched's "type")."""

from pmcurate.labels import LabelSpec, register

SPEC = register(
    LabelSpec(
        name="document_type",
        kind="class",
        title="Document types",
        description="what kind of writing the paragraph is: a clinical case, original research, a review "
        "of existing knowledge, or other text",
        classes=("clinical_case", "study", "review", "other"),
        rubric="""\
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
  data availability, administrative or editorial notices, corrections, figure/legend-like fragments.""",
    )
)
