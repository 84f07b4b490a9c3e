"""Language identification works offline with the model shipped inside py3langid, and the batched,
compiled identifier gives py3langid's own answers (``classify`` on the text's first ``MAX_CHARS``
characters, ``und`` without letters) on real paragraphs, many languages, and texts short enough to
be near ties."""

from __future__ import annotations

import os
import random
import socket
import time
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmcurate import compiled, schema
from pmcurate.cache import STALE_STAGING_SECONDS
from pmcurate.filters import _langid, language

SAMPLES = {
    "fr": "Les patients atteints d'une infection bactérienne ont été traités par antibiotiques pendant dix "
    "jours; la fièvre a disparu chez la plupart d'entre eux.",
    "de": "Die Patienten mit einer bakteriellen Infektion wurden zehn Tage lang mit Antibiotika behandelt; "
    "bei den meisten verschwand das Fieber.",
    "es": "Los pacientes con una infección bacteriana fueron tratados con antibióticos durante diez días; "
    "la fiebre desapareció en la mayoría de ellos.",
    "pt": "Os pacientes com infecção bacteriana foram tratados com antibióticos durante dez dias; a febre "
    "desapareceu na maioria deles.",
    "it": "I pazienti con infezione batterica sono stati trattati con antibiotici per dieci giorni; la "
    "febbre è scomparsa nella maggior parte di loro.",
    "zh": "细菌感染的患者接受了十天的抗生素治疗，大多数患者的发烧已经消退。",
    "ja": "細菌感染症の患者は十日間抗生物質で治療され、ほとんどの患者で発熱が消失しました。",
    "ru": "Пациенты с бактериальной инфекцией получали антибиотики в течение десяти дней; у большинства "
    "из них лихорадка исчезла.",
    "sr": "Пацијенти са бактеријском инфекцијом лечени су антибиотицима десет дана; код већине је "
    "грозница нестала.",
    "el": "Οι ασθενείς με βακτηριακή λοίμωξη έλαβαν αντιβιοτικά για δέκα ημέρες· ο πυρετός υποχώρησε "
    "στους περισσότερους.",
    "ar": "عولج المرضى المصابون بعدوى بكتيرية بالمضادات الحيوية لمدة عشرة أيام، واختفت الحمى لدى معظمهم.",
    "ko": "세균 감염 환자들은 열흘 동안 항생제 치료를 받았고 대부분의 환자에서 열이 사라졌다.",
    "en": "Patients with a bacterial infection were treated with antibiotics for ten days; the fever "
    "resolved in most of them.",
}
ODD_TEXTS = [
    "",
    "12.5 ± 3",
    "p < 0.05 (n = 12)",
    "Ⅻ ½ ²",  # numeric characters that are not letters
    "IL-6, TNF-α",
    "ÉTUDE CLINIQUE RANDOMISÉE",  # all capitals: py3langid lowercases
    "İSTANBUL",  # lowercases to more characters
    "ﬁnal ligature",  # NFC keeps it; NFKC would not
    "e\u0301te\u0301",  # combining accents: NFC composes them
    "lone \ud800 surrogate",  # encoded with surrogatepass
    "🙂 ok",
    "x",
    "DNA",
    "mixed English et français und Deutsch",
    "e" * 5000,  # longer than MAX_CHARS
    "1234 " * 300 + "word",  # the only letters lie past MAX_CHARS: und
]


def py3langid_answer(text: str | None) -> str:
    """What the language rule answered before it was batched: py3langid, one text at a time."""
    head = (text or "")[: language.MAX_CHARS]
    if not any(c.isalpha() for c in head):
        return language.UNDETERMINED
    return language._identifier().classify(head)[0]


def assert_same_as_py3langid(texts: list[str | None]) -> None:
    got = language.detect_many(texts)
    different = [
        (t, g, py3langid_answer(t)) for t, g in zip(texts, got, strict=True) if g != py3langid_answer(t)
    ]
    assert not different


def test_detects_common_languages() -> None:
    assert language.detect("The patient was admitted with fever and a productive cough.") == "en"
    assert language.detect("Le patient a été admis pour une fièvre et une toux productive.") == "fr"
    assert language.detect("Der Patient wurde mit Fieber und Husten aufgenommen.") == "de"


def test_detects_each_sample_language() -> None:
    assert language.detect_many(list(SAMPLES.values())) == list(SAMPLES)


def test_text_without_letters_is_undetermined() -> None:
    assert language.detect("") == language.detect("12.5 ± 3") == language.detect(None) == "und"


def test_letters_only_past_max_chars_are_undetermined() -> None:
    assert language.detect("1234 " * 300 + "word") == "und"


def test_every_fixture_text_gets_py3langids_answer(real_build_without_labels: Path) -> None:
    build = real_build_without_labels
    paragraphs = pl.read_parquet(schema.shard_paths(build, "paragraphs"))["text"].to_list()
    captions = pl.read_parquet(schema.shard_paths(build, "figures"))["caption"].to_list()
    articles = pl.read_parquet(schema.shard_paths(build, "articles"))
    texts = [*paragraphs, *captions, *articles["title"].to_list(), *articles["abstract"].to_list()]
    assert len(paragraphs) > 400
    assert_same_as_py3langid(texts)


def test_odd_texts_get_py3langids_answer() -> None:
    assert_same_as_py3langid(ODD_TEXTS)


def test_every_prefix_of_each_sample_gets_py3langids_answer() -> None:
    """Short prefixes are near ties between languages: the rows the compiled scores may not settle."""
    assert_same_as_py3langid([text[:n] for text in SAMPLES.values() for n in range(1, len(text) + 1)])


def test_mixtures_of_languages_get_py3langids_answer() -> None:
    rng = random.Random(15)
    samples = list(SAMPLES.values())
    texts = []
    for _ in range(500):
        text = " ".join(s[rng.randrange(len(s)) :] for s in rng.sample(samples, rng.randint(1, 3)))
        texts.append(text.upper() if rng.random() < 0.1 else text)
    assert_same_as_py3langid(texts)


ALPHABET = st.sampled_from(list("aeiou tnsrlhdcmpbgkwyzxqjvf.,;:()-0123456789éèàüöäßçñøåœжяα中の"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=60), min_size=1, max_size=12))
def test_random_texts_get_py3langids_answer(texts: list[str]) -> None:
    assert_same_as_py3langid(list(texts))


def test_rows_the_scores_do_not_settle_get_classifys_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    identify = language._identify

    def settle_nothing(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        best, settled = identify(*args, **kwargs)  # type: ignore[arg-type]
        return best, np.zeros_like(settled)

    monkeypatch.setattr(language, "_identify", settle_nothing)
    texts = [*SAMPLES.values(), *ODD_TEXTS]
    assert language.detect_many(texts) == [py3langid_answer(text) for text in texts]


def test_rows_the_quantized_sums_do_not_settle_get_the_exact_sums_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identify = language._identify

    def settle_only_exact(*args: object, quantized: bool) -> tuple[np.ndarray, np.ndarray]:
        best, settled = identify(*args, quantized=quantized)  # type: ignore[arg-type]
        return (np.zeros_like(best), np.zeros_like(settled)) if quantized else (best, settled)

    monkeypatch.setattr(language, "_identify", settle_only_exact)
    assert language.detect_many(list(SAMPLES.values())) == list(SAMPLES)


def walk_input(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    return np.frombuffer(b"".join(texts), dtype=np.uint8), np.cumsum(lengths) - lengths, lengths


@lru_cache(maxsize=2)
def loaded(simd: bool) -> language.Model:
    """The model packed here, summing with the SIMD loops or the portable ones."""
    return language.Model.load(language._identifier(), simd=simd)


def scores(
    texts: list[bytes], *, quantized: bool, simd: bool = _langid.SIMD
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``Walker.scores``: the sums, their float32 bound, the number of features and the spread."""
    model = loaded(simd)
    raw = np.zeros((len(texts), len(model.classes)))
    bound, spread = np.zeros(len(texts)), np.zeros(len(texts))
    features = np.zeros(len(texts), dtype=np.int64)
    model.walker.scores(*walk_input(texts), quantized, raw, bound, features, spread)
    return raw, bound, features, spread


def encoded_samples() -> list[bytes]:
    identifier = language._identifier()
    return [identifier._encode(text) for text in [*SAMPLES.values(), "x", "e" * 3000, "", "1234"]]


def test_a_text_without_features_is_left_to_classify() -> None:
    model = language._model()
    data, starts, lengths = walk_input([b"", b"1234"])
    for quantized in (True, False):
        best, settled = np.zeros(2, dtype=np.int16), np.ones(2, dtype=np.uint8)
        model.walker.identify(data, starts, lengths, quantized, best, settled)
        assert not settled.any()


def test_portable_sums_equal_the_simd_ones() -> None:
    texts = encoded_samples()
    for quantized in (True, False):
        portable = scores(texts, quantized=quantized, simd=False)
        simd = scores(texts, quantized=quantized, simd=True)
        np.testing.assert_allclose(portable[0], simd[0], rtol=1e-5)
        for mine, theirs in zip(portable[1:], simd[1:], strict=True):
            np.testing.assert_array_equal(mine, theirs)


def many_texts() -> list[bytes]:
    """More texts than the walk has lanes, of many lengths (so odd and even numbers of features of
    each count, and groups of more than 257 rows), in no order of length."""
    samples = encoded_samples()
    mixture = b" ".join(samples[: len(SAMPLES)])
    prefixes = [sample[: 37 * i + 1] for i in range(12) for sample in samples[: len(SAMPLES)]]
    return prefixes + samples + [mixture[: 997 * i] for i in range(1, 6)]


def test_quantized_sums_of_the_simd_loops_are_the_portable_ones_to_the_bit() -> None:
    texts = many_texts()
    portable = scores(texts, quantized=True, simd=False)
    simd = scores(texts, quantized=True, simd=True)
    for mine, theirs in zip(portable, simd, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_texts_walked_side_by_side_score_as_each_alone() -> None:
    texts = many_texts()
    for quantized in (True, False):
        together = scores(texts, quantized=quantized)
        alone = [scores([text], quantized=quantized) for text in texts]
        for index, column in enumerate(together):
            np.testing.assert_array_equal(column, np.concatenate([one[index] for one in alone]))


def test_compiled_scores_are_py3langids_within_float32_rounding() -> None:
    identifier = language._identifier()
    texts = encoded_samples()[: len(SAMPLES)]
    for quantized in (False, True):
        raw, _, _, spread = scores(texts, quantized=quantized)
        for text, row, off in zip(texts, raw, spread, strict=True):
            expected = identifier._raw_score(text) - identifier.nb_pc
            np.testing.assert_allclose(row, expected, rtol=1e-4, atol=off)


def test_quantized_sums_are_the_exact_ones_within_their_spread() -> None:
    texts = encoded_samples()
    exact, bound, features, none = scores(texts, quantized=False)
    quantized, same_bound, same_features, spread = scores(texts, quantized=True)
    assert not none.any()
    np.testing.assert_array_equal(bound, same_bound)
    np.testing.assert_array_equal(features, same_features)
    float32_error = 2 * (features + 4) * 2.0**-24 * bound
    assert np.all(np.abs(quantized - exact) <= (spread + float32_error)[:, None])
    assert np.all(spread[features > 0] > 0)


def test_quantized_rows_give_back_ptc_within_each_rows_error() -> None:
    ptc = np.asarray(language._identifier().nb_ptc, dtype=np.float16)[:5000]
    quantized, step, floor, feature_error = language.quantize(ptc)
    rebuilt = floor + quantized[:, : ptc.shape[1]] * step
    assert np.all(np.abs(rebuilt - ptc.astype(np.float64)) <= feature_error[:, None])
    assert np.all(feature_error <= step)
    assert not quantized[:, ptc.shape[1] :].any()


def test_characters_marked_nfc_stable_stay_as_they_are_side_by_side() -> None:
    bits = np.unpackbits(language.nfc_stable(), bitorder="little").astype(bool)
    stable = [chr(point) for point in np.flatnonzero(bits)]
    assert {"a", "é", "–", "α", "µ", "±", "中"} <= set(stable)
    assert not {"\u0301", "\u1161", "\u0b3e", "\ud800", "\u0344", "\u212b"} & set(stable)
    rng = random.Random(15)
    for _ in range(100_000):
        text = "".join(rng.choice(stable) for _ in range(rng.randint(2, 4)))
        assert unicodedata.is_normalized("NFC", text), repr(text)


def heads(texts: pa.Array) -> tuple[list[int], list[int]]:
    """``_langid.heads`` of an Arrow string array: each text's kind and head length in bytes."""
    texts = texts.cast(pa.large_string())
    valid, offsets, data = texts.buffers()
    rows = len(texts)
    starts, lengths, kinds = np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int8)
    _langid.heads(
        np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8),
        np.frombuffer(offsets, np.int64),
        np.frombuffer(valid, np.uint8) if valid else np.zeros(0, np.uint8),
        texts.offset,
        language.MAX_CHARS,
        language.nfc_stable(),
        starts,
        lengths,
        kinds,
    )
    return kinds.tolist(), lengths.tolist()


def test_heads_walked_as_they_stand_have_a_lowercase_letter_and_are_nfc() -> None:
    texts = [
        "Fever fell – in 3 days (α ≥ 0.5).",
        "DNA",
        "ÉTUDE",
        "e\u0301te\u0301",
        "🙂 ok",
        "12.5",
        None,
        "",
    ]
    kinds, _ = heads(pa.array(texts))
    fast, none, python = _langid.FAST, _langid.NO_LETTER, _langid.IN_PYTHON
    assert kinds == [fast, python, python, python, python, none, none, none]


def test_a_head_ends_after_max_chars_characters() -> None:
    text = "é" * 5 + "a" * (language.MAX_CHARS + 10)
    kinds, lengths = heads(pa.array(["x", text, "ab"]).slice(1))
    assert kinds == [_langid.FAST, _langid.FAST]
    assert lengths == [len(text[: language.MAX_CHARS].encode()), 2]


def test_detect_arrow_reads_slices_and_both_string_types() -> None:
    texts = [SAMPLES["fr"], None, SAMPLES["de"], "", SAMPLES["en"], "ÉTUDE CLINIQUE"]
    expected = [py3langid_answer(t) for t in texts]
    for kind in (pa.string(), pa.large_string()):
        array = pa.array(texts, kind)
        assert language.detect_arrow(array).to_pylist() == expected
        assert language.detect_arrow(array.slice(2)).to_pylist() == expected[2:]


def test_a_model_the_walk_would_read_out_of_bounds_is_refused() -> None:
    identifier = language._identifier()
    nextmove = np.asarray(identifier.tk_nextmove)
    rowbase = np.asarray(identifier.tk_row).astype(np.uint64) << 8
    output = np.asarray(identifier.tk_output, dtype=np.int64)
    ptc = identifier.nb_ptc
    language.check_layout(nextmove, rowbase, output, ptc)
    with pytest.raises(ValueError, match="not the layout"):
        language.check_layout(nextmove, rowbase, output, ptc[:-1])
    with pytest.raises(ValueError, match="not the layout"):
        language.check_layout(nextmove, rowbase[:-1], output[:-1], ptc)


def test_detect_arrow_reads_chunks_and_nulls() -> None:
    texts = pa.chunked_array([[SAMPLES["fr"], None], ["", SAMPLES["de"]]])
    assert language.detect_arrow(texts).to_pylist() == ["fr", "und", "und", "de"]


def test_the_extension_is_built_from_its_source() -> None:
    compiled.check_build(_langid, Path(_langid.__file__).with_name("_langid.pyx"))


def test_a_build_older_than_its_source_is_refused(tmp_path: Path) -> None:
    changed = tmp_path / "_langid.pyx"
    changed.write_text("# another version\n")
    with pytest.raises(ImportError, match="was built from another version"):
        compiled.check_build(_langid, changed)


def test_model_ships_inside_the_package() -> None:
    import py3langid.langid

    model = Path(py3langid.langid.__file__).parent / py3langid.langid.MODEL_FILE
    assert model.is_file() and model.stat().st_size > 1_000_000


def test_loads_and_runs_with_the_network_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    language._identifier.cache_clear()
    language._model.cache_clear()
    assert language.detect("Ceci est un texte en français sur une infection bactérienne.") == "fr"


def test_the_cached_model_is_read_back_memory_mapped_with_the_same_arrays(tmp_path: Path) -> None:
    written = language.cached(tmp_path)
    read = language.cached(tmp_path)
    packed = language.Packed.of(language._identifier())
    (entry,) = tmp_path.iterdir()
    again = language.read_packed(entry, language.cache_key())
    assert again is not None and set(again.arrays) == set(language.ARRAYS)
    assert again.scalars == packed.scalars
    for name, values in packed.arrays.items():
        assert isinstance(again.arrays[name], np.memmap)
        np.testing.assert_array_equal(again.arrays[name], values)
    texts = [*SAMPLES.values(), *(t for t in ODD_TEXTS if "\ud800" not in t)]
    assert read.labels.equals(written.labels)
    assert (
        language._codes(pa.array(texts), read).tolist() == language._codes(pa.array(texts), written).tolist()
    )


def test_the_identifier_made_from_the_cache_is_py3langids(tmp_path: Path) -> None:
    language.cached(tmp_path)
    mine = language.cached(tmp_path).identifier
    theirs = language._identifier()
    for name in ("tk_nextmove", "tk_row", "tk_output", "nb_classes", "_alias_pairs"):
        assert getattr(mine, name) == getattr(theirs, name), name
    assert mine.tk_nextmove.typecode == theirs.tk_nextmove.typecode
    assert mine.tk_row.typecode == theirs.tk_row.typecode
    for name in ("nb_ptc", "nb_pc"):
        assert getattr(mine, name).dtype == getattr(theirs, name).dtype
        np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name))
    for text in [*SAMPLES.values(), "ÉTUDE", "x"]:
        assert mine.classify(text) == theirs.classify(text)


def test_a_broken_cache_entry_is_packed_and_written_again(tmp_path: Path) -> None:
    language.cached(tmp_path)
    (entry,) = tmp_path.iterdir()
    transitions = entry / "transitions.npy"
    transitions.write_bytes(transitions.read_bytes()[:4096])
    assert language.read_packed(entry, language.cache_key()) is None
    assert language.read_packed(entry, "another version") is None
    model = language.cached(tmp_path)
    assert language._codes(pa.array([SAMPLES["fr"]]), model).tolist() == [model.classes.index("fr")]
    assert language.read_packed(entry, language.cache_key()) is not None
    assert [path.name for path in tmp_path.iterdir()] == [entry.name]


def test_a_cache_folder_that_cannot_be_written_still_gives_the_model(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    model = language.cached(blocked / "language")
    assert language._codes(pa.array([SAMPLES["de"]]), model).tolist() == [model.classes.index("de")]


def test_writing_an_entry_removes_those_of_other_versions(tmp_path: Path) -> None:
    old = tmp_path / "0123"
    old.mkdir()
    (old / "meta.json").write_text("{}")
    staging = tmp_path / ".being-written"
    staging.mkdir()
    language.cached(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".being-written", language.cache_key()[:32]]


def test_writing_an_entry_removes_the_staging_folder_a_killed_process_left(tmp_path: Path) -> None:
    left = tmp_path / f".{language.cache_key()[:32]}.abc123"
    left.mkdir()
    (left / "transitions.npy").write_bytes(b"half")
    stale = time.time() - STALE_STAGING_SECONDS - 60
    os.utime(left, (stale, stale))
    language.cached(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [language.cache_key()[:32]]
