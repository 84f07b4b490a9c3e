"""The in-process vLLM backend against a fake ``vllm`` module (vLLM needs a GPU and model weights).

The fake has the shape of vLLM's offline API: ``LLM(model=..., ...)``, ``LLM.chat(conversations,
params, use_tqdm=...)`` returning ``RequestOutput``-like objects (``outputs[0].text``,
``outputs[0].token_ids``, ``prompt_token_ids``), ``SamplingParams(**kwargs)`` and the structured
output classes of ``vllm.sampling_params``. It records every call.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import polars as pl
import pytest

from pmcurate import cli
from pmcurate.annotate import labels_file, llm, prompt, sample, vllm_backend
from tests.servers.openai_server import keyword_labels, openai_server

TEXTS = [
    "A 54-year-old woman presented with fever and a rash of three weeks.",
    "We measured the expression of twelve genes in cultured cells.",
    "Influenza viruses circulate in birds and mammals worldwide.",
    "Funding was provided by the national research council.",
]
ITEMS = [llm.Item(text=t, section="Section", paragraph_id=f"P/{i}") for i, t in enumerate(TEXTS)]


@dataclass
class Params:
    kwargs: dict[str, Any]


@dataclass
class Structured:
    json: Any


@dataclass
class FakeVllm:
    """What the fake ``vllm`` saw, and how it answers."""

    answer: Callable[[str], str] = lambda text: json.dumps(keyword_labels(text))
    models: list[dict[str, Any]] = field(default_factory=list)
    chats: list[tuple[list[list[dict[str, str]]], Params]] = field(default_factory=list)

    def module(
        self, structured_class: str | None = "StructuredOutputsParams"
    ) -> tuple[ModuleType, ModuleType]:
        fake = self

        class LLM:
            def __init__(self, **kwargs: Any) -> None:
                fake.models.append(kwargs)

            def chat(
                self, conversations: list[list[dict[str, str]]], params: Params, use_tqdm: bool = True
            ) -> list[Any]:
                fake.chats.append((conversations, params))
                return [fake.output(conversation) for conversation in conversations]

        vllm = ModuleType("vllm")
        vllm.LLM = LLM  # type: ignore[attr-defined]
        vllm.SamplingParams = lambda **kwargs: Params(kwargs)  # type: ignore[attr-defined]
        sampling_params = ModuleType("vllm.sampling_params")
        if structured_class:
            setattr(sampling_params, structured_class, Structured)
        return vllm, sampling_params

    def output(self, conversation: list[dict[str, str]]) -> SimpleNamespace:
        text = conversation[1]["content"].split("Paragraph:\n", 1)[1]
        answer = self.answer(text)
        completion = SimpleNamespace(text=answer, token_ids=list(range(len(answer.split()))))
        return SimpleNamespace(outputs=[completion], prompt_token_ids=list(range(100)))


def install(
    monkeypatch: pytest.MonkeyPatch, fake: FakeVllm, structured_class: str | None = "StructuredOutputsParams"
) -> FakeVllm:
    vllm, sampling_params = fake.module(structured_class)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    return fake


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVllm:
    return install(monkeypatch, FakeVllm())


def run(
    cache_path: Path, items: list[llm.Item] = ITEMS, model: str = "test-model", **config: Any
) -> llm.RunSummary:
    cache = llm.AnswerCache(cache_path)
    try:
        teacher = vllm_backend.VllmTeacher(vllm_backend.VllmConfig(model=model, **config), cache)
        return teacher.run(items, progress=False)
    finally:
        cache.close()


def write_sample(build: Path, texts: list[str] = TEXTS) -> None:
    frame = pl.DataFrame(
        {
            "paragraph_id": [f"PMC1/p{i}" for i in range(len(texts))],
            "article_id": ["PMC1"] * len(texts),
            "section_title": ["Results"] * len(texts),
            "text": texts,
        }
    )
    sample.write_sample(build, frame)


def test_uncached_items_go_to_one_batched_chat_call(tmp_path: Path, fake: FakeVllm) -> None:
    run(tmp_path / "c.sqlite")
    assert len(fake.chats) == 1
    conversations, _ = fake.chats[0]
    assert conversations == [prompt.messages(item.text, item.section) for item in ITEMS]


def test_model_is_loaded_with_the_parallelism_and_memory_share(tmp_path: Path, fake: FakeVllm) -> None:
    run(tmp_path / "c.sqlite", tensor_parallel=2, gpu_memory_utilization=0.5)
    assert fake.models == [{"model": "test-model", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5}]


def test_answers_are_parsed_into_labels_with_token_counts(tmp_path: Path, fake: FakeVllm) -> None:
    summary = run(tmp_path / "c.sqlite")
    assert summary.answered == len(ITEMS) and summary.failed == 0
    assert [summary.labels[i.key] for i in ITEMS] == [keyword_labels(i.text) for i in ITEMS]
    assert summary.prompt_tokens == 100 * len(ITEMS) and summary.completion_tokens > 0


def test_answer_schema_is_passed_as_structured_outputs(tmp_path: Path, fake: FakeVllm) -> None:
    summary = run(tmp_path / "c.sqlite")
    params = fake.chats[0][1].kwargs
    assert params["structured_outputs"] == Structured(json=prompt.ANSWER_SCHEMA)
    assert params["temperature"] == 0.0 and params["max_tokens"] == 100
    assert summary.structured_output


def test_older_vllm_gets_the_schema_as_guided_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, FakeVllm(), "GuidedDecodingParams")
    run(tmp_path / "c.sqlite")
    params = fake.chats[0][1].kwargs
    assert params["guided_decoding"] == Structured(json=prompt.ANSWER_SCHEMA)
    assert "structured_outputs" not in params


def test_vllm_without_structured_outputs_answers_freely_and_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(
        monkeypatch, FakeVllm(answer=lambda t: f"```json\n{json.dumps(keyword_labels(t))}\n```"), None
    )
    summary = run(tmp_path / "c.sqlite")
    assert set(fake.chats[0][1].kwargs) == {"temperature", "max_tokens"}
    assert not summary.structured_output and summary.answered == len(ITEMS)


def test_rerun_is_served_from_cache_without_loading_the_model(tmp_path: Path, fake: FakeVllm) -> None:
    run(tmp_path / "c.sqlite")
    summary = run(tmp_path / "c.sqlite")
    assert len(fake.models) == 1 and len(fake.chats) == 1
    assert summary.cached == len(ITEMS) and summary.answered == 0
    assert [summary.labels[i.key] for i in ITEMS] == [keyword_labels(i.text) for i in ITEMS]


def test_only_uncached_items_are_asked(tmp_path: Path, fake: FakeVllm) -> None:
    run(tmp_path / "c.sqlite", ITEMS[:2])
    run(tmp_path / "c.sqlite")
    assert [len(conversations) for conversations, _ in fake.chats] == [2, 2]
    assert fake.chats[1][0] == [prompt.messages(item.text, item.section) for item in ITEMS[2:]]


def test_malformed_answer_is_recorded_as_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(text: str) -> str:
        return "I think it is a study." if text == TEXTS[1] else json.dumps(keyword_labels(text))

    install(monkeypatch, FakeVllm(answer=answer))
    summary = run(tmp_path / "c.sqlite")
    assert summary.failed == 1 and summary.answered == len(ITEMS) - 1
    assert ITEMS[1].key not in summary.labels
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        status, raw, error = db.execute(
            "SELECT status, raw, error FROM answers WHERE input_sha256=?", (ITEMS[1].key,)
        ).fetchone()
    assert status == "failed" and raw == "I think it is a study." and error.startswith("malformed answer")


def test_cached_failure_is_asked_again_only_with_retry_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, FakeVllm(answer=lambda t: "no idea"))
    run(tmp_path / "c.sqlite", ITEMS[:1])
    run(tmp_path / "c.sqlite", ITEMS[:1])
    assert len(fake.chats) == 1
    fake.answer = lambda t: json.dumps(keyword_labels(t))
    summary = run(tmp_path / "c.sqlite", ITEMS[:1], retry_failed=True)
    assert len(fake.chats) == 2 and summary.answered == 1


def test_answers_of_an_http_endpoint_serve_the_vllm_backend(tmp_path: Path, fake: FakeVllm) -> None:
    cache = llm.AnswerCache(tmp_path / "c.sqlite")
    with openai_server() as (url, _):
        llm.Teacher(llm.LlmConfig(endpoint=url, model="test-model", timeout=1.0), cache).run(
            ITEMS, progress=False
        )
    cache.close()
    summary = run(tmp_path / "c.sqlite")
    assert fake.chats == [] and summary.cached == len(ITEMS)


def test_run_writes_teacher_labels_of_the_sample(tmp_path: Path, fake: FakeVllm) -> None:
    build = tmp_path / "build"
    write_sample(build)
    config = vllm_backend.VllmConfig(model="org/model")
    vllm_backend.run_vllm_teacher(build, config, sample=sample.read_sample(build), progress=False)
    teacher = labels_file.read_teacher_labels(build, "llm")
    assert teacher["paragraph_id"].to_list() == [f"PMC1/p{i}" for i in range(len(TEXTS))]
    assert teacher["model"].unique().to_list() == ["org/model"]
    assert teacher["annotator"].unique().to_list() == [f"llm:org/model:{prompt.PROMPT_HASH}"]


def test_cli_vllm_backend_labels_the_sample(tmp_path: Path, fake: FakeVllm) -> None:
    build = tmp_path / "build"
    write_sample(build)
    argv = ["annotate", "llm", str(build), "--backend", "vllm", "--model", "m", "--tensor-parallel", "2"]
    assert cli.main(argv) == 0
    assert fake.models[0]["tensor_parallel_size"] == 2
    assert labels_file.read_teacher_labels(build, "llm").height == len(TEXTS)


def test_cli_missing_vllm_extra_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets when it is not installed
    build = tmp_path / "build"
    write_sample(build)
    assert cli.main(["annotate", "llm", str(build), "--backend", "vllm", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'pmcurate[vllm]'" in err


def test_cli_http_backend_needs_an_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = tmp_path / "build"
    write_sample(build)
    assert cli.main(["annotate", "llm", str(build), "--model", "m"]) == 2
    assert "--endpoint" in capsys.readouterr().err


def test_cli_vllm_backend_rejects_a_budget(
    tmp_path: Path, fake: FakeVllm, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "build"
    write_sample(build)
    argv = ["annotate", "llm", str(build), "--backend", "vllm", "--model", "m", "--max-tokens", "10"]
    assert cli.main(argv) == 2
    assert "--backend http only" in capsys.readouterr().err and fake.models == []


def test_build_step_reaches_the_vllm_backend(tmp_path: Path, fake: FakeVllm) -> None:
    from pmcurate.annotate.steps import LlmTeacherConfig, LlmTeacherStep
    from pmcurate.step import Build, run_step

    build = tmp_path / "build"
    write_sample(build)
    config = LlmTeacherConfig.from_table({"model": "m", "backend": "vllm", "tensor_parallel": 2})
    report = run_step(LlmTeacherStep(config), Build(build, progress=False))
    assert (report.status, report.counts["answered"]) == ("ran", len(TEXTS))
    assert fake.models[0]["tensor_parallel_size"] == 2
