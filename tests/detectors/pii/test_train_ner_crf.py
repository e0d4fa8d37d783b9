"""tools/train_ner_crf.py: research-only data never reaches the shipped model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("faker", reason="the training script needs Faker (bench/train extras)")
pytest.importorskip("spacy", reason="the training script needs spaCy (bench/train extras)")
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))

import train_ner_crf
from mantlet.detectors.pii.ner import en_crf


def test_research_data_may_not_write_the_shipped_model_folder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    digests = en_crf.digests(en_crf.model_dir())
    with pytest.raises(SystemExit):
        train_ner_crf.main(["--research-conll"])
    assert "may not write the shipped model folder" in capsys.readouterr().err
    assert en_crf.digests(en_crf.model_dir()) == digests  # nothing was touched
