"""The export and publish steps: ``export:NAME`` (one config of the dataset folder) and ``publish``.

``ExportStep`` plans tasks of whole splits (``exporter.make_plan``: options checked, rows counted
per split, splits shared among ``tasks`` tasks); each task streams its splits' rows, sorted, from
DuckDB into their shards in a staging folder (``exporter.write_split_task``), in bounded memory, on
any worker (or, for whole tables small enough, from Arrow: ``exporter.ArrowRows``); ``finish``
installs the shards, writes the provenance and the dataset card. Splits come first in the export's
order and a split's shards are cut by its rows alone, so the files are the same bytes however many
workers wrote them. (A split is not cut among tasks: where a shard ends
depends on the compressed size of the shards before it.)

``PublishStep`` uploads the dataset folder to the Hub in ``finish`` (a whole step: no tasks).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

from pmcurate.export import exporter, parquet
from pmcurate.export import publish as hub
from pmcurate.export.exporter import DATASET_DIR
from pmcurate.export.presets import PRESETS, get_preset
from pmcurate.step import Build, ConfigError, Size, Step, StepConfig, StepReport, fingerprint, option


def dataset_dir(build: Path) -> Path:
    """The build's dataset folder: every export is one config of it; it is what gets published."""
    return build / DATASET_DIR


def export_dir(build: Path, name: str) -> Path:
    """The folder of export (config) ``name`` inside the dataset folder."""
    return dataset_dir(build) / exporter.config_folder(name)


@dataclass(frozen=True)
class ExportConfig(StepConfig):
    """One config of a dataset folder: a manifest's ``[exports.NAME]`` (the build's ``dataset/``,
    where ``default`` is the config under ``data/``) or ``pmcurate export``'s options."""

    name: str = option(
        "",
        "config name (default: 'default' for parquet, 'webdataset' for tar shards)",
        cli="--config",
        metavar="NAME",
        manifest=False,
    )
    preset: str = option("paragraphs", "rows and columns", choices=PRESETS.names())
    subset: str | None = option(
        None, "export this subset (BUILD/subsets/NAME) instead of a whole table", metavar="NAME"
    )
    format: exporter.Format = option("parquet", "shard format", choices=exporter.FORMATS)
    split_by: str = option(
        exporter.SPLIT_BY_LICENSE,
        "'license' (commercial/noncommercial/other), 'none' (one train split) or any column",
        metavar="COLUMN",
    )
    shard_size: Size = option(Size(parquet.DEFAULT_SHARD_BYTES), "target shard size", metavar="SIZE")
    row_group_size: Size = option(
        Size(parquet.DEFAULT_ROW_GROUP_BYTES),
        "uncompressed data per Parquet row group, the unit streaming readers fetch",
        metavar="SIZE",
    )
    image_format: str | None = option(
        None, "webdataset image files (default: the most common)", choices=("jpg", "png")
    )
    tasks: int | None = option(
        None, "tasks the splits are shared among (default: CPU count)", cli="", manifest=False
    )
    out: Path | None = option(None, "dataset folder (default BUILD/dataset)", cli="", manifest=False)
    title: str | None = option(None, "dataset card title", cli="", manifest=False)
    description: str | None = option(None, "dataset card description", cli="", manifest=False)
    repo: str | None = option(None, "the Hub repository the card names", cli="", manifest=False)
    remote: str | None = option(
        None, "URL the build was pushed to: tasks read and write through it", cli="", manifest=False
    )

    def __post_init__(self) -> None:
        """Options that do not go together, worded with their keys; no ``name``: the format's."""
        name = self.name or (exporter.DEFAULT_CONFIG if self.format == "parquet" else "webdataset")
        object.__setattr__(self, "name", name)
        if not exporter.CONFIG_NAME.match(name) or name == exporter.PROVENANCE_DIR:
            raise ConfigError(
                f"name: {name!r} is not a config name: letters, digits, '-' and '_' "
                f"(not {exporter.PROVENANCE_DIR!r})"
            )
        if not exporter.COLUMN.match(self.split_by):
            raise ConfigError(f"split_by: expected 'license', 'none' or a column, got {self.split_by!r}")
        if (
            self.format == "webdataset"
            and self.preset in PRESETS
            and not get_preset(self.preset).image_columns
        ):
            raise ConfigError(f"format: webdataset holds images: give it an image export, not {self.preset}")

    @classmethod
    def from_manifest(cls, name: str, table: Mapping[str, Any], *, where: str = "", **fixed: Any) -> Self:
        """The config of ``[exports.NAME]``; ``shard_mb`` (MiB) is the older name of ``shard_size``."""
        values = dict(table)
        if "shard_mb" in values:
            if "shard_size" in values:
                raise ConfigError(f"{where} shard_mb: give shard_size or shard_mb, not both")
            mb = values.pop("shard_mb")
            if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
                raise ConfigError(f"{where} shard_mb: expected an integer ≥ 1, got {mb!r}")
            values["shard_size"] = mb * 2**20
        return cls.from_table(values, where=where, name=name, **fixed)


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
        config = replace(self.config, out=self.out(build))
        self._plan = exporter.make_plan(build.path, config, progress=build.progress)
        return list(self._plan.tasks)

    def task_reads(self, build: Build) -> list[Path] | None:
        """None; nothing when the build is behind a URL: the tasks then read and write through it
        themselves (``exporter.ExportJob``)."""
        return [] if self.config.remote else None

    def prepare(self, build: Build) -> None:
        assert self._plan is not None
        self._plan.stage()
        from pmcurate.export.card import import_hub_card

        threading.Thread(target=import_hub_card, daemon=True).start()  # while this process waits

    def run(self, task: exporter.SplitTask) -> dict[str, int]:
        assert self._plan is not None
        return exporter.write_split_task(self._plan.job, task)

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.export.card import write_card

        assert self._plan is not None
        try:
            inputs = exporter.input_checksums(self._plan, build.hashes.digest)  # hashed by fingerprint
            result = self.result = exporter.finish(self._plan, write_card=False, inputs=inputs)
            write_card(
                self.out(build),
                self.config.repo,
                title=self.config.title,
                description=self.config.description,
                stats={result.config: result.card_stats},
                written={result.config: result.provenance},
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
    """The Hugging Face dataset repository a dataset folder goes to: a manifest's ``[publish]`` (the
    build's dataset folder, every export) or ``pmcurate publish``'s options."""

    repo: str = option(help="dataset repository", metavar="ORG/NAME")
    private: bool = option(False, "create the repository private")
    token_env: str = option("HF_TOKEN", "the environment variable holding the token (else `hf auth login`)")
    revision: str | None = option(None, "branch to commit to (created from main if new)", metavar="BRANCH")
    endpoint: str | None = option(None, "Hub endpoint (default HF_ENDPOINT or huggingface.co)", metavar="URL")
    batch_files: int = option(hub.DEFAULT_BATCH_FILES, "files per commit", metavar="N")
    message: str | None = option(None, "commit message", metavar="TEXT")
    dry_run: bool = option(False, "print the planned operations, upload nothing", manifest=False)
    folder: Path | None = option(None, "dataset folder (default BUILD/dataset)", cli="", manifest=False)

    def __post_init__(self) -> None:
        if not hub.REPO_ID.match(self.repo):
            raise ConfigError(f"repo: expected ORG/NAME, got {self.repo!r}")

    def publish(self, folder: Path, *, progress: bool = True) -> hub.PublishResult:
        """Upload ``folder``; the token comes from the variable ``token_env`` names (else the local
        ``hf auth login``) and is never logged; the endpoint, else ``HF_ENDPOINT``, read now."""
        try:
            return hub.publish(
                folder,
                self.repo,
                private=self.private,
                revision=self.revision,
                token=os.environ.get(self.token_env) or None,
                endpoint=self.endpoint or os.environ.get("HF_ENDPOINT") or None,
                dry_run=self.dry_run,
                batch_files=self.batch_files,
                commit_message=self.message,
                progress=progress,
            )
        except hub.PublishError as exc:
            raise hub.PublishError(f"publish: {exc} (token from ${self.token_env})") from None


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
        result = self.result = self.config.publish(self.folder(build), progress=build.progress)
        counts_ = {action: result.count(action) for action in ("add", "update", "delete", "unchanged")}
        return StepReport(self.name, "ran", counts=counts_, note=result.url)
