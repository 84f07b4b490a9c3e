"""The export and publish steps: ``export:NAME`` (one config of the dataset folder) and ``publish``.

``ExportStep`` plans tasks of whole splits (``exporter.make_plan``: options checked, rows counted
per split, splits shared among ``tasks`` tasks); each task streams its splits' rows, sorted, from
DuckDB into their shards in a staging folder (``exporter.write_split_task``), in bounded memory, on
any worker; ``finish`` installs the shards, writes the provenance and the dataset card. Splits come
first in the export's order and a split's shards are cut by its rows alone, so the files are the
same bytes however many workers wrote them. (A split is not cut among tasks: where a shard ends
depends on the compressed size of the shards before it.)

``PublishStep`` uploads the dataset folder to the Hub in ``finish`` (a whole step: no tasks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pmcurate.export import exporter, parquet
from pmcurate.export.presets import PRESETS
from pmcurate.step import Build, Step, StepConfig, StepReport, fingerprint, option

DATASET_DIR = "dataset"


def dataset_dir(build: Path) -> Path:
    """The build's dataset folder: every export is one config of it; it is what gets published."""
    return build / DATASET_DIR


def export_dir(build: Path, name: str) -> Path:
    """The folder of export (config) ``name`` inside the dataset folder."""
    return dataset_dir(build) / exporter.config_folder(name)


@dataclass(frozen=True)
class ExportConfig(StepConfig):
    """``[exports.NAME]``: one config of the build's dataset (``default`` is the one under ``data/``)."""

    name: str = option("default", "config name (the manifest's [exports.NAME])", cli="", manifest=False)
    preset: str = option("paragraphs", "rows and columns", choices=sorted(PRESETS))
    subset: str | None = option(None, "export this subset (BUILD/subsets/NAME) instead of a whole table")
    format: str = option("parquet", "shard format", choices=exporter.FORMATS)
    split_by: str = option(
        exporter.SPLIT_BY_LICENSE,
        "'license' (commercial/noncommercial/other), 'none' (one train split) or any column",
    )
    shard_mb: int = option(parquet.DEFAULT_SHARD_BYTES // 2**20, "target shard size in MiB")
    row_group_mb: int = option(
        parquet.DEFAULT_ROW_GROUP_BYTES // 2**20, "uncompressed MiB per Parquet row group"
    )
    tasks: int | None = option(None, "tasks the splits are shared among (default: CPU count)")
    image_format: str | None = option(
        None, "webdataset image files (default: most common)", choices=("jpg", "png")
    )
    out: Path | None = option(None, "dataset folder (default BUILD/dataset)", cli="", manifest=False)
    title: str | None = option(None, "dataset card title", cli="", manifest=False)
    description: str | None = option(None, "dataset card description", cli="", manifest=False)
    repo: str | None = option(None, "the Hub repository the card names", cli="", manifest=False)
    remote: str | None = option(
        None, "URL the build was pushed to: tasks read and write through it", cli="", manifest=False
    )


_SAME_FILES = ("tasks", "remote")
"""Settings that change how the files are written, never the files: not in the fingerprint."""


class ExportStep(Step[ExportConfig, exporter.SplitTask]):
    """``export:NAME``: a preset's rows (of the build or a subset) as Hub-ready shards, splits on tasks."""

    writes = ("dataset",)

    def __init__(self, config: ExportConfig) -> None:
        super().__init__(config, name=f"export:{config.name}")
        unit = exporter.get_preset(config.preset).unit if config.preset in PRESETS else "paragraph"
        self.reads = (
            ("articles", "paragraphs", "labels")
            if unit == "paragraph"
            else ("articles", "figures", "paragraphs")
        )
        self._plan: exporter.ExportPlan | None = None

    def out(self, build: Build) -> Path:
        return self.config.out or dataset_dir(build.path)

    def fingerprint(self, build: Build) -> str:
        inputs = (
            build.folder_fingerprint(build.path / "subsets" / self.config.subset)
            if self.config.subset
            else build.tables_fingerprint(self.reads)
        )
        settings = {k: v for k, v in self.config.settings().items() if k not in _SAME_FILES}
        return fingerprint(self.name, settings, inputs)

    def outputs(self, build: Build) -> list[Path]:
        return [self.out(build) / exporter.config_folder(self.config.name)]

    def plan(self, build: Build) -> list[exporter.SplitTask]:
        """Tasks of whole splits, rows counted by DuckDB (nothing is written until ``prepare``)."""
        config = self.config
        self._plan = exporter.make_plan(
            build.path,
            self.out(build),
            preset=config.preset,
            subset=config.subset,
            config=config.name,
            format=config.format,  # type: ignore[arg-type]
            split_by=config.split_by,
            shard_bytes=config.shard_mb * 2**20,
            row_group_bytes=config.row_group_mb * 2**20,
            image_extension=config.image_format,
            progress=build.progress,
            tasks=config.tasks,
            remote=config.remote,
        )
        return list(self._plan.tasks)

    def task_reads(self, build: Build) -> list[Path] | None:
        """None; nothing when the build is behind a URL: the tasks then read and write through it
        themselves (``exporter.ExportJob``)."""
        return [] if self.config.remote else None

    def prepare(self, build: Build) -> None:
        assert self._plan is not None
        self._plan.stage()

    def run(self, task: exporter.SplitTask) -> dict[str, int]:
        assert self._plan is not None
        return exporter.write_split_task(self._plan.job, task)

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.export.card import write_card

        assert self._plan is not None
        try:
            inputs = exporter.input_checksums(self._plan, build.hashes.digest)  # hashed by fingerprint
            result = exporter.finish(self._plan, write_card=False, inputs=inputs)
            write_card(
                self.out(build),
                self.config.repo,
                title=self.config.title,
                description=self.config.description,
            )
        finally:
            self._plan.discard()
        return StepReport(
            self.name,
            "ran",
            counts={f"{split} rows": summary.rows for split, summary in result.splits.items()},
            drops={"no image": result.skipped_rows} if result.skipped_rows else {},
        )


@dataclass(frozen=True)
class PublishConfig(StepConfig):
    """``[publish]``: the Hugging Face dataset repository the dataset folder (every export) goes to."""

    repo: str = option(help="dataset repository ORG/NAME")
    private: bool = option(False, "create the repository private")
    token_env: str = option("HF_TOKEN", "the environment variable holding the Hugging Face token")
    folder: Path | None = option(None, "dataset folder (default BUILD/dataset)", cli="", manifest=False)


class PublishStep(Step[PublishConfig, None]):
    """``publish``: upload the dataset folder; unchanged files are not sent again."""

    name = "publish"
    reads = ("dataset",)

    def folder(self, build: Build) -> Path:
        return self.config.folder or dataset_dir(build.path)

    def fingerprint(self, build: Build) -> str:
        # the card is rewritten by publishing itself (with the repository id): not an input
        content = build.folder_fingerprint(self.folder(build), exclude=("README.md",))
        return fingerprint(self.name, self.config.settings(), content)

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        """The token comes from the variable the config names (else the local ``hf auth login``) and
        is never logged."""
        from pmcurate.export.publish import PublishError, publish

        config = self.config
        try:
            result = publish(
                self.folder(build),
                config.repo,
                private=config.private,
                token=os.environ.get(config.token_env) or None,
                endpoint=os.environ.get("HF_ENDPOINT") or None,  # read now, not at import
                progress=build.progress,
            )
        except PublishError as exc:
            raise PublishError(f"publish: {exc} (token from ${config.token_env})") from None
        counts_ = {action: result.count(action) for action in ("add", "update", "delete", "unchanged")}
        return StepReport(self.name, "ran", counts=counts_, note=result.url)
