"""The LLM teacher in process, through vLLM's offline API (the optional ``vllm`` extra, for a GPU machine).

No server, no HTTP: ``vllm.LLM`` loads the model once and every paragraph the cache cannot answer
goes to one ``LLM.chat`` call, which vLLM schedules itself (continuous batching). The answers share
everything else with the HTTP teacher (``llm.CachedTeacher``): the cache keyed by (model, prompt
hash, input hash), the tolerant parser, the failure records and the teacher label rows, so answers
from a vLLM server and from this backend with the same model name serve each other's reruns.

The JSON schema of the prompt goes to vLLM as structured output: ``StructuredOutputsParams`` in
recent vLLM, ``GuidedDecodingParams`` in older ones (found at run time); a vLLM with neither answers
freely and the parser copes. With greedy decoding a malformed answer would come back the same, so
it is recorded as a failure at once rather than asked again.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import polars as pl

from pmcurate.annotate import llm, prompt
from pmcurate.errors import Fatal

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'pmcurate[vllm]' on a machine with a GPU"

# (class in vllm.sampling_params, SamplingParams argument), newest API first
STRUCTURED_APIS = (
    ("StructuredOutputsParams", "structured_outputs"),
    ("GuidedDecodingParams", "guided_decoding"),
)


class VllmMissing(Fatal):
    """The ``vllm`` extra is not installed."""


@dataclass
class VllmConfig:
    model: str
    """A Hugging Face model name or a local folder; also the cache's model key."""
    tensor_parallel: int = 1
    gpu_memory_utilization: float = 0.9
    temperature: float = 0.0
    answer_tokens: int = 100
    retry_failed: bool = False


def import_vllm() -> ModuleType:
    """The ``vllm`` module, or a one-line error saying how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError:
        raise VllmMissing(f"the vllm backend needs the vllm extra: {INSTALL_HINT}") from None


def sampling_params(vllm: ModuleType, config: VllmConfig) -> tuple[Any, bool]:
    """Greedy sampling params constrained to the answer schema, and whether the constraint is on."""
    base = {"temperature": config.temperature, "max_tokens": config.answer_tokens}
    module = importlib.import_module("vllm.sampling_params")
    for class_name, argument in STRUCTURED_APIS:
        params_class = getattr(module, class_name, None)
        if params_class is not None:
            return vllm.SamplingParams(**base, **{argument: params_class(json=prompt.ANSWER_SCHEMA)}), True
    log.warning("this vllm offers no structured outputs; answers are parsed as free text")
    return vllm.SamplingParams(**base), False


class VllmTeacher(llm.CachedTeacher):
    """Labels items with a model loaded in this process; the model loads only if an item needs it."""

    def __init__(self, config: VllmConfig, cache: llm.AnswerCache) -> None:
        super().__init__(config.model, cache, retry_failed=config.retry_failed)
        self.config = config
        self.vllm = import_vllm()

    def run(self, items: Sequence[llm.Item], *, progress: bool = True) -> llm.RunSummary:
        start = time.perf_counter()
        todo = self.pending(items, progress=progress)
        assert self._bar is not None
        try:
            if todo:
                self._label(todo, progress=progress)
        finally:
            self._bar.close()
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _label(self, todo: list[llm.Item], *, progress: bool) -> None:
        params, structured = sampling_params(self.vllm, self.config)
        self.summary.structured_output = structured
        model = self.vllm.LLM(
            model=self.config.model,
            tensor_parallel_size=self.config.tensor_parallel,
            gpu_memory_utilization=self.config.gpu_memory_utilization,
        )
        conversations = [prompt.messages(item.text, item.section) for item in todo]
        outputs = model.chat(conversations, params, use_tqdm=progress)
        for item, output in zip(todo, outputs, strict=True):
            raw, usage = answer_of(output)
            self.summary.prompt_tokens += usage[0]
            self.summary.completion_tokens += usage[1]
            self._record_answer(item, raw, usage)


def answer_of(output: Any) -> tuple[str | None, tuple[int, int]]:
    """The text and (prompt, completion) token counts of one ``vllm.RequestOutput``."""
    completions = output.outputs or []
    if not completions:
        return None, (len(output.prompt_token_ids or ()), 0)
    first = completions[0]
    return first.text, (len(output.prompt_token_ids or ()), len(first.token_ids or ()))


def run_vllm_teacher(
    build: str | os.PathLike[str], config: VllmConfig, *, sample: pl.DataFrame, progress: bool = True
) -> llm.RunSummary:
    """Label the sample in process; write every answered paragraph to ``teacher/llm.parquet``."""
    return llm.run_teacher(build, lambda cache: VllmTeacher(config, cache), sample=sample, progress=progress)
