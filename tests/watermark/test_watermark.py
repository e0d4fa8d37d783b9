"""KGW watermark, end to end without llama.cpp: a synthetic language model
over a word-level ``tokenizers`` vocabulary samples with the real logits
processor; its text is decoded, re-tokenized and detected from the text."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from mantlet.watermark import (
    GreenLists,
    WatermarkDetector,
    WatermarkKey,
    WatermarkKeyRing,
    WatermarkLogitsProcessor,
    WatermarkParams,
    _prf,
    detect_ids,
    detect_windows,
)
from mantlet.watermark.detect import binomial_sf

VOCAB = 3000
KEY = hashlib.sha256(b"test key").digest()
OTHER_KEY = hashlib.sha256(b"another key").digest()
PARAMS = WatermarkParams()


class WordTokenizer:
    """A real ``tokenizers`` word-level tokenizer over made-up words."""

    def __init__(self) -> None:
        words = {f"w{i:04d}": i for i in range(VOCAB)}
        self._tok = HFTokenizer(models.WordLevel(vocab=words, unk_token="w0000"))
        self._tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self.vocab_size = VOCAB

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(f"w{i:04d}" for i in ids)


TOKENIZER = WordTokenizer()


def synthetic_logits(previous: int) -> np.ndarray:
    """A deterministic 'language model': peaked logits that depend on the
    previous token (entropy of a few nats, like a small LM at temperature 1)."""
    rng = np.random.default_rng(previous)
    return (rng.standard_normal(VOCAB) * 2.5).astype(np.float32)


def generate(n: int, seed: int, processor: WatermarkLogitsProcessor | None) -> list[int]:
    rng = np.random.default_rng(seed)
    ids = [int(rng.integers(VOCAB))]  # the "prompt"
    for _ in range(n):
        scores = synthetic_logits(ids[-1])
        if processor is not None:
            scores = processor(np.asarray(ids, dtype=np.intc), scores)
        probs = np.exp(scores - scores.max())
        ids.append(int(rng.choice(VOCAB, p=probs / probs.sum())))
    return ids[1:]


def keyring_key(key_id: str, secret: bytes, tenant: str = "t") -> WatermarkKey:
    return WatermarkKey(key_id=key_id, tenant=tenant, secret=secret, created="2026-01-01")


@pytest.fixture(scope="module")
def marked_texts() -> list[str]:
    processor = WatermarkLogitsProcessor(GreenLists(KEY, PARAMS))
    return [TOKENIZER.decode(generate(200, seed, processor)) for seed in range(5)]


def test_generated_text_is_detected_with_the_right_key(marked_texts: list[str]) -> None:
    detector = WatermarkDetector(TOKENIZER, PARAMS)
    for text in marked_texts:
        found = detector.detect(text, [keyring_key("wk-right", KEY)])
        assert found.verdict == "watermarked"
        assert found.key_id == "wk-right"
        assert found.z is not None and found.z > 4.26
        assert found.p_value is not None and found.p_value < 1e-5
        assert 150 <= found.tokens <= 200


def test_wrong_key_and_unwatermarked_text_are_not_detected(marked_texts: list[str]) -> None:
    detector = WatermarkDetector(TOKENIZER, PARAMS)
    for text in marked_texts:
        found = detector.detect(text, [keyring_key("wk-wrong", OTHER_KEY)])
        assert found.verdict == "not watermarked"
    for seed in range(5):
        plain = TOKENIZER.decode(generate(200, 100 + seed, None))
        assert detector.detect(plain, [keyring_key("wk-right", KEY)]).verdict == ("not watermarked")


def test_every_active_key_is_tried_and_the_match_is_named(marked_texts: list[str]) -> None:
    detector = WatermarkDetector(TOKENIZER, PARAMS)
    keys = [keyring_key("wk-new", OTHER_KEY), keyring_key("wk-old", KEY)]
    found = detector.detect(marked_texts[0], keys)
    assert found.verdict == "watermarked"
    assert found.key_id == "wk-old"
    assert found.keys_tried == 2


def test_short_text_gets_no_verdict() -> None:
    processor = WatermarkLogitsProcessor(GreenLists(KEY, PARAMS))
    text = TOKENIZER.decode(generate(20, 1, processor))
    found = WatermarkDetector(TOKENIZER, PARAMS).detect(text, [keyring_key("wk", KEY)])
    assert found.verdict == "insufficient tokens"
    assert found.z is None and found.p_value is None
    assert found.tokens == 19  # the first token has no context (h = 1)
    payload = found.to_dict()
    assert payload["z"] is None and payload["key_id"] == "wk" and "start" not in payload


def test_repeated_context_token_pairs_count_once() -> None:
    green = GreenLists(KEY, PARAMS)
    found = detect_ids([7, 8] * 200, green)
    assert found.tokens == 2  # (7 -> 8) and (8 -> 7), however often repeated
    assert found.verdict == "insufficient tokens"


def test_human_like_text_false_positive_rate_matches_the_null() -> None:
    """Unwatermarked samples under 300 keys: z is ~N(0, 1) and p-values are
    calibrated (about 1 % fall below 0.01; none below 1e-5)."""
    texts = [generate(150, 1000 + i, None) for i in range(10)]
    zs, small = [], 0
    for k in range(300):
        green = GreenLists(hashlib.sha256(f"k{k}".encode()).digest(), PARAMS)
        for ids in texts:
            found = detect_ids(ids, green)
            assert found.z is not None and found.p_value is not None
            zs.append(found.z)
            small += found.p_value <= 0.01
            assert found.verdict == "not watermarked"
    assert abs(float(np.mean(zs))) < 0.1
    assert 0.9 < float(np.std(zs)) < 1.1
    assert small / len(zs) < 0.02


def test_windowed_mode_finds_a_passage_inside_human_text() -> None:
    green = GreenLists(KEY, PARAMS)
    marked = generate(80, 5, WatermarkLogitsProcessor(green))
    text = generate(1000, 6, None) + marked + generate(1000, 7, None)
    whole = detect_ids(text, green)
    assert whole.verdict == "not watermarked"
    found = detect_windows(text, green)
    assert found.verdict == "watermarked"
    assert found.windows is not None and found.windows > 10
    assert found.start is not None and found.end is not None
    assert found.start >= 1000 - 64 and found.end <= 1080 + 64
    # On unwatermarked text the windowed scan does not fire.
    assert detect_windows(generate(2000, 8, None), green).verdict == "not watermarked"


def test_unigram_mode_survives_reordering() -> None:
    params = WatermarkParams(context=0)
    green = GreenLists(KEY, params)
    ids = generate(200, 3, WatermarkLogitsProcessor(green))
    shuffled = list(np.random.default_rng(0).permutation(ids))
    assert detect_ids([int(i) for i in shuffled], green).verdict == "watermarked"


def test_vector_and_scalar_membership_agree() -> None:
    green = GreenLists(KEY, PARAMS)
    for context in [(0,), (17,), (2999,)]:
        mask = green.mask(context, VOCAB)
        assert [green.is_green(context, t) for t in range(VOCAB)] == mask.tolist()
        assert abs(mask.mean() - 0.25) < 0.03
        bias = green.bias(context, VOCAB)
        assert set(np.unique(bias).tolist()) == {0.0, 2.0}


def test_exact_binomial_tail() -> None:
    assert binomial_sf(0, 10, 0.25) == 1.0
    assert binomial_sf(11, 10, 0.25) == 0.0
    assert binomial_sf(10, 10, 0.25) == pytest.approx(0.25**10)
    expected = sum(math.comb(50, k) * 0.25**k * 0.75 ** (50 - k) for k in range(20, 51))
    assert binomial_sf(20, 50, 0.25) == pytest.approx(expected, rel=1e-9)


# The wire format: if these change, every watermark ever issued is lost.
DIGEST_CODE = """
import hashlib, json
import numpy as np
from mantlet.watermark import _prf

def digests(key):
    out = []
    for context in [(), (0,), (1, 2), (49151, 7, 300)]:
        seed = _prf.context_seed(key, context)
        mask = _prf.VocabMixer(49152).green_mask(seed, _prf.threshold(0.25))
        out.append(hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16])
    return out
"""
RECORDED = ["f6af30db37d26452", "3c20b00c64c1a4bc", "fc7dbb354ddd8ef2", "cfb576c23652fa6a"]


def _digests(key: bytes) -> list[str]:
    namespace: dict[str, object] = {}
    exec(DIGEST_CODE, namespace)
    return namespace["digests"](key)  # type: ignore[operator, no-any-return]


def test_green_lists_are_stable_across_processes() -> None:
    code = DIGEST_CODE + "print(json.dumps(digests(hashlib.sha256(b'test key').digest())))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == _digests(KEY)


def test_green_lists_match_the_recorded_test_vectors() -> None:
    expected_seed = hmac.digest(KEY, b"mantlet/kgw-hmac-sha256-v1/", "sha256")[:8]
    assert _prf.context_seed(KEY, ()) == int.from_bytes(expected_seed, "big")
    assert _digests(KEY) == RECORDED


def test_key_file_is_private_and_keys_rotate(tmp_path: Path) -> None:
    ring = WatermarkKeyRing.in_data_dir(tmp_path / "data")
    first = ring.signing_key("acme")
    assert ring.signing_key("acme") == first
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600
    assert first.secret.hex() not in repr(first)
    second = ring.rotate("acme")
    assert ring.signing_key("acme") == second
    assert [k.key_id for k in ring.active("acme")] == [second.key_id, first.key_id]
    assert ring.active("other") == []
    assert ring.retire(first.key_id)
    assert [k.key_id for k in ring.active("acme")] == [second.key_id]
    assert not ring.retire("wk-missing")


def test_cli_rotates_and_lists_key_ids_never_keys(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mantlet.cli.app import app

    runner = CliRunner()
    made = runner.invoke(
        app, ["watermark", "rotate", "--tenant", "acme", "--data-dir", str(tmp_path), "--json"]
    )
    assert made.exit_code == 0, made.output
    key_id = json.loads(made.stdout)["key_id"]
    listed = runner.invoke(app, ["watermark", "keys", "--data-dir", str(tmp_path), "--json"])
    assert [k["key_id"] for k in json.loads(listed.stdout)] == [key_id]
    secret = WatermarkKeyRing.in_data_dir(tmp_path).active("acme")[0].secret.hex()
    assert secret not in made.stdout + listed.stdout
    retired = runner.invoke(app, ["watermark", "retire", key_id, "--data-dir", str(tmp_path)])
    assert retired.exit_code == 0
    assert WatermarkKeyRing.in_data_dir(tmp_path).active("acme") == []
