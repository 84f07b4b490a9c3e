"""What ``finish`` writes of the build into a config's provenance (``exporter.BuildFacts``)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.export import exporter, jsontext
from pmcurate.export.exporter import BuildFacts, InThisProcess, Lent, _annotators, _config_and_format
from pmcurate.export.steps import ExportConfig


def test_the_builds_facts_take_their_places_in_the_config_provenance() -> None:
    info = {
        "config": "default",
        "source": {"build": "b", "build_provenance": None, "annotators": None, "student": None, "inputs": {}},
    }
    provenance = {"tool": {"name": "pmcurate"}, "steps": []}
    filled = BuildFacts(provenance, ["bench", "gpt"], {"agreement": 0.9}).into(info)
    assert filled["source"] == {
        "build": "b",
        "build_provenance": provenance,
        "annotators": ["bench", "gpt"],
        "student": {"agreement": 0.9},
        "inputs": {},
    }
    assert list(filled["source"]) == list(info["source"])  # the keys keep their order in the file


def test_a_build_without_provenance_gives_null() -> None:
    filled = BuildFacts(None, [], None).into({"source": {"build_provenance": None}})
    assert filled["source"]["build_provenance"] is None


def write_labels(build: Path, name: str, annotators: list[str | None], row_group_size: int) -> None:
    table = pa.table({"paragraph_id": [f"p{i}" for i in range(len(annotators))], "annotator": annotators})
    folder = schema.table_dir(build, "labels")
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name, row_group_size=row_group_size)


def count_column_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read, reads = pq.read_table, []
    monkeypatch.setattr(
        pq, "read_table", lambda path, **kw: reads.append(Path(path).name) or read(path, **kw)
    )
    return reads


def test_annotators_are_told_by_the_statistics_of_row_groups_of_one_annotator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_labels(tmp_path, "a.parquet", ["x", "x", "y", "y", None, None], row_group_size=2)
    reads = count_column_reads(monkeypatch)
    assert _annotators(tmp_path) == ["x", "y"]
    assert reads == []


def test_annotators_are_read_from_a_shard_whose_row_groups_mix_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_labels(tmp_path, "a.parquet", ["x", "x"], row_group_size=2)
    write_labels(tmp_path, "b.parquet", ["z", None, "y"], row_group_size=3)
    reads = count_column_reads(monkeypatch)
    assert _annotators(tmp_path) == ["x", "y", "z"]
    assert reads == ["b.parquet"]


def test_a_provenance_files_config_and_format_are_read_from_its_head(tmp_path: Path) -> None:
    record = {"config": 'a "b"', "preset": "p", "task_categories": ["x"], "format": "webdataset"}
    path = tmp_path / "a.json"
    path.write_text(json.dumps({**record, "source": {"format": "parquet"}}, indent=2) + "\n")
    assert _config_and_format(path) == ('a "b"', "webdataset")


def test_a_provenance_file_written_otherwise_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"source": {"config": "inner"}, "config": "c", "format": "parquet"}, indent=4))
    assert _config_and_format(path) == ("c", "parquet")


def test_a_records_text_is_the_encoders_with_the_builds_provenance_from_its_text() -> None:
    provenance = {"tool": {"name": "pmcurate é"}, "inputs": [{"path": "a→b", "sha256": "00"}], "seconds": 1.5}
    written = json.dumps(provenance, indent=2) + "\n"
    text = jsontext.indented(jsontext.dumps_indented(provenance, written), 2)
    facts = BuildFacts(provenance, ["x"], {"agreement": 0.9}, text)
    info = {
        "config": "default",
        "splits": {"build_provenance": None},  # the same key, two levels deep, before source's
        "source": {"build": "b", "build_provenance": None, "annotators": None, "student": None},
        "languages": ["en"],
    }
    record = facts.into(info)
    assert "".join(facts.parts(record)) == json.dumps(record, indent=2, ensure_ascii=False)


def test_a_record_not_holding_the_facts_provenance_is_encoded_whole() -> None:
    facts = BuildFacts({"a": 1}, [], None, '{\n  "a": 1\n}')
    record = {"source": {"build_provenance": {"a": 2}}}
    assert "".join(facts.parts(record)) == json.dumps(record, indent=2, ensure_ascii=False)


def test_what_the_driver_lends_a_task_stays_in_its_process() -> None:
    lent = InThisProcess(Lent(None, None, lambda: None))
    assert lent.value is not None
    assert pickle.loads(pickle.dumps(lent)).value is None


def test_what_finish_reads_of_the_build_waits_until_the_task_in_this_process_read_its_rows(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    seen_by_reads: list[int] = []
    batches, facts = exporter._split_batches, BuildFacts.of

    def counted(*args: object) -> Iterator[pa.RecordBatch]:
        for batch in batches(*args):  # type: ignore[arg-type]
            taken.append(batch.num_rows)
            yield batch

    def read(plan: exporter.ExportPlan) -> BuildFacts:
        seen_by_reads.append(sum(taken))
        return facts(plan)

    monkeypatch.setattr(exporter, "_split_batches", counted)
    monkeypatch.setattr(BuildFacts, "of", read)
    monkeypatch.setattr(exporter, "FIRST_BATCH_ROWS", 4)
    monkeypatch.setattr(exporter, "BATCH_ROWS", 8)
    config = ExportConfig(out=tmp_path, preset="biomed-enriched", row_group_size=2_000)
    result = exporter.export(build, config, progress=False, workers=1)
    assert seen_by_reads == [result.rows] and len(taken) > 4
