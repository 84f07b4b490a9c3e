"""``educational_score``: how useful a paragraph is for teaching biomedicine (1-5, as Biomed-Enriched)."""

from pmcurate.labels import LabelSpec, register

SPEC = register(
    LabelSpec(
        name="educational_score",
        kind="score",
        title="Educational scores (rounded)",
        description="how useful the paragraph is for teaching biomedicine at college level, 1 (none) to 5 "
        "(textbook-like); the students' expected value",
        range=(1, 5),
        rubric="""\
educational_score: integer 1 to 5, how useful the paragraph is for teaching biomedicine at
college level.
- 1: no educational value (boilerplate, administrative, references, fragments).
- 2: little value: narrow technical detail (reagent lists, protocol steps, raw numbers) with no
  explanation.
- 3: some value: relevant content with some context, but specialised or partly incoherent for a
  learner.
- 4: high value: clear, coherent and informative; explains findings, concepts or clinical
  reasoning well.
- 5: outstanding: textbook-like, thorough explanation of important concepts, very instructive.""",
    )
)
