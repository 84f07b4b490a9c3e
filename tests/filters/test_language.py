"""Language identification works offline with the model shipped inside py3langid."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pmcurate.filters import language


def test_detects_common_languages() -> None:
    assert language.detect("The patient was admitted with fever and a productive cough.") == "en"
    assert language.detect("Le patient a été admis pour une fièvre et une toux productive.") == "fr"
    assert language.detect("Der Patient wurde mit Fieber und Husten aufgenommen.") == "de"


def test_text_without_letters_is_undetermined() -> None:
    assert language.detect("") == language.detect("12.5 ± 3") == language.detect(None) == "und"


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
    assert language.detect("Ceci est un texte en français sur une infection bactérienne.") == "fr"
