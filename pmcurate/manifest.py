"""Build manifests: a dataset described as a TOML file, loaded into typed, validated settings.

A manifest names its sources, its teacher and student, its subsets, its exports and where it is
published (``docs/build.md`` has every key). ``load_manifest`` reads it with ``tomllib`` and reads
each table with the config of the step it sets (``StepConfig.from_table``: ``[[sources]]`` with
``harvest.steps.CONFIGS``, ``[subsets.NAME]``, ``[exports.NAME]``, ``[publish]``, and the parts of
``[teacher]`` and ``[student]``), whose fields are also the options of the matching command; any
mistake raises ``ManifestError`` naming the file, the key (``[teacher] sample_size``) and what was
expected, and unknown keys are errors too, so a typo never silently falls back to a default.

Paths are relative to the manifest's folder; ``package:data/sample`` names a folder inside the
installed ``pmcurate`` package (the bundled sample and labels), so a manifest works from any
directory. Secrets are never manifest values: a manifest names the environment variable that
holds a key (``api_key_env``, ``token_env``), never the key.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pmcurate.errors import Fatal
from pmcurate.executor import is_url
from pmcurate.step import ConfigError, StepConfig

if TYPE_CHECKING:  # the step configs are imported where a manifest uses them (they import polars)
    from pmcurate.annotate.steps import LlmTeacherConfig, SampleConfig
    from pmcurate.export.steps import ExportConfig, PublishConfig
    from pmcurate.filters.steps import SubsetConfig
    from pmcurate.harvest.steps import SourceConfig

C = TypeVar("C", bound=StepConfig)

TEACHER_KINDS = ("labels", "llm", "rules")
PACKAGE_PREFIX = "package:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SECRET_KEYS = re.compile(r"(^|_)(api_key|token|password|secret)$")


class ManifestError(Fatal):
    """A manifest that cannot be used; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class TeacherSpec:
    """``[teacher]``: who labels the sample the students learn from.

    ``kind``: ``labels`` (a JSONL file, ``labels``), ``rules`` (the JATS rules) or ``llm`` (the
    keys of ``annotate.steps.LlmTeacherConfig``); the sample keys are ``SampleConfig``'s."""

    kind: str
    sample: SampleConfig
    labels: Path | None = None
    llm: LlmTeacherConfig | None = None


@dataclass(frozen=True)
class StudentSpec:
    """``[student]``: the students trained on the teacher's labels, and which one labels the build.

    ``kind``: the name of a student of ``annotate/students/`` (default ``fasttext``; docs/annotate.md
    says which to pick). ``configs``: the configs of
    the steps that train it (``students.trains``), in their order: the fastText students' first,
    trained in every case (the report compares them), then the kind's own. The keys are the
    fields of those configs (``annotate.steps.TrainConfig``'s, ``EncoderConfig``'s...).
    """

    kind: str
    configs: tuple[StepConfig, ...]

    def config(self, cls: type[C]) -> C | None:
        """The config of class ``cls`` among ``configs``, if the student has one."""
        for config in self.configs:
            if isinstance(config, cls):
                return config
        return None

    @property
    def device(self) -> str:
        """Where the student's torch models run: its ``device`` key (auto for a student without one)."""
        devices = (getattr(config, "device", None) for config in self.configs)
        return next((device for device in devices if device is not None), "auto")


@dataclass(frozen=True)
class SubsetSpec:
    """``[subsets.NAME]``: the config of its ``filter:NAME`` step (``filters.steps.SubsetConfig``)."""

    name: str
    config: SubsetConfig


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path
    sha256: str
    description: str = ""
    out: Path | str | None = None
    """Default build folder: a path (relative to the manifest) or a URL (``s3://…``)."""
    sources: tuple[SourceConfig, ...] = ()
    """Each ``[[sources]]`` entry: the config of its kind (``harvest.steps.CONFIGS``)."""
    teacher: TeacherSpec | None = None
    student: StudentSpec | None = None
    subsets: tuple[SubsetSpec, ...] = ()
    exports: tuple[ExportConfig, ...] = ()
    """Each ``[exports.NAME]``: one config of the build's dataset folder (``name`` is NAME)."""
    publish: PublishConfig | None = None


_MISSING = object()


class _Table:
    """One TOML table being read: typed getters that name the file and key in every error."""

    def __init__(self, file: Path, where: str, data: Any) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail("", "a table", data)
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, got: Any) -> NoReturn:
        raise ManifestError(f"{self.file}: {self._key(key)}: expected {expected}, got {_show(got)}")

    def _key(self, key: str) -> str:
        if not self.where:
            return f"key {key!r}" if key else "top level"
        return f"[{self.where}] {key}" if key else f"[{self.where}]"

    def error(self, key: str, message: str) -> ManifestError:
        return ManifestError(f"{self.file}: {self._key(key)}: {message}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "required key is missing")
        return default

    def string(self, key: str, default: Any = _MISSING, *, pattern: re.Pattern[str] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string", value)
        if pattern is not None and not pattern.match(value):
            self.fail(key, f"a string matching {pattern.pattern}", value)
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if value not in choices:
            self.fail(key, f"one of {', '.join(map(repr, choices))}", value)
        return value

    def path(self, key: str, default: Any = _MISSING, *, must_exist: bool = True) -> Any:
        value = self.string(key, default)
        if value is default and default is not _MISSING:
            return value
        return resolve_path(
            value, self.file, lambda: self.error(key, f"{value!r} does not exist"), must_exist
        )

    def table(self, key: str) -> dict[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, dict):
            self.fail(key, "a table", value)
        return value

    def finish(self) -> None:
        """Reject keys nobody read: typos must not pass silently."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise self.error("", f"unknown key(s) {', '.join(map(repr, unknown))} (known here: {known})")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}"[:80]
    return f"{type(value).__name__} {value!r}"[:80]


def resolve_path(value: str, manifest: Path, error: Any = None, must_exist: bool = True) -> Path:
    """``package:REL`` inside the installed package, else relative to the manifest's folder."""
    if value.startswith(PACKAGE_PREFIX):
        path = Path(str(resources.files("pmcurate"))) / value.removeprefix(PACKAGE_PREFIX)
    else:
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = manifest.parent / path
    if must_exist and not path.exists():
        raise error() if error else ManifestError(f"{manifest}: {value!r} does not exist")
    return path


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate the manifest at ``path``; ``ManifestError`` says what is wrong and where."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    _reject_secrets(path, document, "")
    top = _Table(path, "", document)
    name = top.string("name", pattern=NAME)
    description = top.string("description", "")
    out = top.string("out", None)
    if out is not None and not is_url(out):
        out = resolve_path(out, path, must_exist=False)
    sources = tuple(_source(path, i, raw) for i, raw in enumerate(_array(top, "sources"), 1))
    if not sources:
        raise top.error("sources", "a manifest needs at least one [[sources]] entry")
    _check_local_sources(path, sources)
    teacher = _teacher(_Table(path, "teacher", top.raw("teacher"))) if "teacher" in document else None
    student = (
        _student(_Table(path, "student", top.raw("student")), teacher) if "student" in document else None
    )
    if student and not teacher:
        raise top.error("student", "a [student] needs a [teacher] to learn from")
    subsets = tuple(_subset(path, n, raw) for n, raw in top.table("subsets").items())
    exports = tuple(_export(path, n, raw) for n, raw in top.table("exports").items())
    publish = _publish(_Table(path, "publish", top.raw("publish"))) if "publish" in document else None
    top.finish()
    manifest = Manifest(
        name=name,
        path=path.resolve(),
        sha256=hashlib.sha256(data).hexdigest(),
        description=description,
        out=out,
        sources=sources,
        teacher=teacher,
        student=student,
        subsets=subsets,
        exports=exports,
        publish=publish,
    )
    _check_references(manifest)
    return manifest


def _reject_secrets(path: Path, value: Any, where: str) -> None:
    """A key named like a secret holding a value: the secret belongs in the environment."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if SECRET_KEYS.search(key) and not key.endswith("_env"):
            raise ManifestError(
                f"{path}: [{where or 'top level'}] {key}: secrets never go in a manifest; "
                f"set {key}_env to the name of an environment variable that holds it"
            )
        _reject_secrets(path, item, f"{where}.{key}".strip("."))


def _array(top: _Table, key: str) -> list[Any]:
    value = top.raw(key, [])
    if not isinstance(value, list):
        top.fail(key, "an array of tables ([[sources]])", value)
    return value


def _source(path: Path, index: int, raw: Any) -> SourceConfig:
    """The ``[[sources]]`` entry read by the config of its kind (``harvest.steps``)."""
    from pmcurate.harvest.steps import CONFIGS

    t = _Table(path, f"sources #{index}", raw)
    kind = t.choice("kind", tuple(CONFIGS))
    config = _config(t, CONFIGS[kind])
    t.finish()
    return config


def _check_local_sources(path: Path, sources: tuple[SourceConfig, ...]) -> None:
    """Local sources are harvested as one step: they must agree on how (``LocalConfig.merge``)."""
    from pmcurate.harvest.steps import LocalConfig

    local = [s for s in sources if isinstance(s, LocalConfig)]
    try:
        if local:
            LocalConfig.merge(local)
    except ConfigError as exc:
        raise ManifestError(f"{path}: [[sources]]: {exc}") from None


def _config(t: _Table, cls: type[C], **fixed: Any) -> C:
    """The part of table ``t`` that config ``cls`` declares (its fields are the keys), checked."""
    keys = {o.name for o in cls.options() if o.manifest} - set(fixed)
    t.used |= keys
    part = {key: value for key, value in t.data.items() if key in keys}

    def resolve(value: str, key: str) -> Path:
        return resolve_path(value, t.file, lambda: t.error(key, f"{value!r} does not exist"))

    try:
        return cls.from_table(part, where=f"[{t.where}]", resolve=resolve, **fixed)
    except ConfigError as exc:
        raise ManifestError(f"{t.file}: {exc}") from None


def _teacher(t: _Table) -> TeacherSpec:
    from pmcurate.annotate.steps import LlmTeacherConfig, SampleConfig

    kind = t.choice("kind", TEACHER_KINDS)
    spec = TeacherSpec(
        kind,
        sample=_config(t, SampleConfig),
        labels=t.path("labels") if kind == "labels" else None,
        llm=_config(t, LlmTeacherConfig) if kind == "llm" else None,
    )
    t.finish()
    return spec


def _student(t: _Table, teacher: TeacherSpec | None) -> StudentSpec:
    from pmcurate.annotate import students

    kind = t.choice("kind", students.kinds(), students.BASELINE)
    source: dict[str, Any] = {"teacher": "llm", "labels": None}
    if teacher is not None:
        source = (
            {"teacher": "llm", "labels": teacher.labels}
            if teacher.kind == "labels"
            else {"teacher": teacher.kind, "labels": None}
        )
    spec = StudentSpec(kind, tuple(_config(t, train.config, **source) for train in students.trains(kind)))
    t.finish()
    return spec


def _subset(path: Path, name: str, raw: Any) -> SubsetSpec:
    """The subset's table read by its step's config: every key checked, rules parsed."""
    from pmcurate.filters.steps import SubsetConfig

    t = _Table(path, f"subsets.{name}", raw)
    if not NAME.match(name):
        raise t.error("", "a subset name uses letters, digits, '-', '_' and '.'")
    if not isinstance(raw, Mapping):
        raise t.error("", f"expected a table, got {_show(raw)}")
    try:
        return SubsetSpec(name, SubsetConfig.from_manifest(name, raw, where=f"[subsets.{name}]"))
    except ConfigError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def _export(path: Path, name: str, raw: Any) -> ExportConfig:
    """The ``[exports.NAME]`` table read by the export step's config."""
    from pmcurate.export.steps import ExportConfig

    t = _Table(path, f"exports.{name}", raw)
    try:
        return ExportConfig.from_manifest(name, t.data, where=f"[exports.{name}]")
    except ConfigError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def _publish(t: _Table) -> PublishConfig:
    from pmcurate.export.steps import PublishConfig

    config = _config(t, PublishConfig)
    t.finish()
    return config


def _check_references(manifest: Manifest) -> None:
    """Names used across tables must exist: exports' subsets, published exports, labels for presets."""
    subsets = {s.name: s for s in manifest.subsets}
    exports = [e.name for e in manifest.exports]
    where = manifest.path
    for export in manifest.exports:
        if export.subset is not None and export.subset not in subsets:
            raise ManifestError(
                f"{where}: [exports.{export.name}] subset: no [subsets.{export.subset}] in this "
                f"manifest (subsets: {', '.join(subsets) or 'none'})"
            )
        if export.preset == "biomed-enriched" and manifest.student is None:
            raise ManifestError(
                f"{where}: [exports.{export.name}] preset: biomed-enriched needs paragraph labels; "
                "add [teacher] and [student]"
            )
        source = subsets[export.subset].config.source if export.subset else None
        wanted = "figures" if export.preset == "image-text" else "paragraphs"
        if source is not None and source != wanted:
            raise ManifestError(
                f"{where}: [exports.{export.name}] subset: preset {export.preset} exports {wanted}, "
                f"but subset {export.subset} is made from {source}"
            )
    _check_dataset_folder(manifest)
    for export in manifest.exports:
        _check_split_by(manifest, export)
    if manifest.publish and not exports:
        raise ManifestError(f"{where}: [publish]: nothing to publish; add an [exports.NAME] table")
    if manifest.teacher and manifest.student is None:
        raise ManifestError(f"{where}: [teacher]: teacher labels need a [student] to learn them")


def _check_dataset_folder(manifest: Manifest) -> None:
    """Every export is a config of the build's one dataset folder (``BUILD/dataset``): they must not
    share a shard folder, and they must share a format, since the Hub and ``datasets`` read a
    repository with one loader (``pmcurate export`` refuses a second format in a folder)."""
    from pmcurate.export.exporter import config_folder

    folders: dict[str, str] = {}
    for export in manifest.exports:
        folder = config_folder(export.name)
        if folder in folders:
            raise ManifestError(
                f"{manifest.path}: [exports.{export.name}]: its shards would go to dataset/{folder}/, "
                f"the folder of [exports.{folders[folder]}]; rename one"
            )
        folders[folder] = export.name
    first = manifest.exports[0] if manifest.exports else None
    for export in manifest.exports[1:]:
        if first is not None and export.format != first.format:
            raise ManifestError(
                f"{manifest.path}: [exports.{export.name}] format: {export.format} cannot share "
                f"the build's dataset folder with the {first.format} export [exports.{first.name}] "
                f"(a dataset repository is read with one loader); keep one format, and write the other with "
                f"`pmcurate export BUILD --subset NAME --format {export.format} --out DIR` after the build"
            )


def _check_split_by(manifest: Manifest, export: ExportConfig) -> None:
    """``split_by`` must be ``license``, ``none`` or a column the preset exports."""
    from pmcurate.export.presets import Source, preset_columns

    if export.split_by in ("license", "none"):
        return
    source = Source(has_labels=manifest.student is not None, has_paragraphs=True, subset=export.subset)
    columns = preset_columns(export.preset, source)
    if export.split_by not in columns:
        raise ManifestError(
            f"{manifest.path}: [exports.{export.name}] split_by: {export.split_by!r} is not a "
            f"column of preset {export.preset} (license, none or one of: {', '.join(columns)})"
        )
