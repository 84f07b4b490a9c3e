"""``domain``: the paragraph's subject area (Biomed-Enriched's "domain")."""

from pmcurate.labels import LabelSpec, register

SPEC = register(
    LabelSpec(
        name="domain",
        kind="class",
        title="Domains",
        description="the subject area: clinical (human health care), biomedical (life-science research "
        "not about patient care) or other",
        classes=("clinical", "biomedical", "other"),
        rubric="""\
domain: the subject area.
- "clinical": human health care: patients, diagnosis, treatment, clinical practice, clinical
  trials, nursing, public health practice with patients.
- "biomedical": life-science research not about patient care: molecular and cell biology,
  genetics, microbiology, biochemistry, animal models, neuroscience, bioinformatics, basic
  epidemiology.
- "other": not biomedical (pure statistics, computing or physics with no biomedical angle,
  administrative text).""",
    )
)
