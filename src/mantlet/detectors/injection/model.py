"""The learned layer: all-MiniLM-L6-v2 (int8 ONNX) embeddings with logistic
heads, a lexical model (``lexical.py``), and their ensemble (the mean of the
two probabilities); each kind has a prompt head and a document head with
thresholds picked on out-of-fold scores by the training script.

Long inputs are split into overlapping token windows and the highest window
score wins; a text longer than one window is also scored run by run (runs of
whole sentences, ``lexical.sentence_windows``), each run's logit lowered by
its head's offset, so one injected sentence in a long benign document is not
diluted by the rest.

A security product must not run a model file it cannot verify: the
manifest's own sha256 is recorded in code (``SHIPPED_MANIFEST_SHA256``, or
given by the operator for another folder), the manifest records every model
file's sha256, and the model is built from the bytes that passed the check,
never read from the folder again.

numpy, onnxruntime and tokenizers are imported lazily, so merely importing
Mantlet (or using only regex detectors) never loads an ML runtime, and the
MiniLM session is built on first use (the default lexical kind never needs it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mantlet.detectors._cache import ScopedCache
from mantlet.detectors.injection.lexical import HEADS as LEXICAL_HEADS
from mantlet.detectors.injection.lexical import LexicalModel, sentence_windows
from mantlet.errors import DetectorError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MODEL_PACKAGE = "mantlet.detectors.injection"
MODEL_FOLDER = "model"
WINDOW_TOKENS = 128  # content tokens per window (MiniLM was trained on <= 256)
WINDOW_STRIDE = 64  # overlap, so a sentence on a window edge is seen whole once
# Embeddings of recently seen windows. Chat clients resend the whole history
# (and the same system prompt) every turn, so without this a conversation's
# scanning cost grows with the square of its length. 4096 x 1.5 KB = 6 MB.
CACHE_WINDOWS = 4096
# Runs of sentences of one text per ONNX call (see Encoder.embed_runs).
RUN_BATCH = 32
MANIFEST = "manifest.json"
KINDS = ("minilm", "lexical", "ensemble")
_ROLES = ("encoder", "tokenizer", "heads", "lexical")
# sha256 of the shipped manifest.json (which lists every model file's sha256).
# Recorded here, not beside the files, so a model swapped on disk cannot bring
# its own digests. `make train-injection` prints the new value.
SHIPPED_MANIFEST_SHA256 = "987fccdd537fa7ec940998ec85ab9d68b21ef6556d82c666c16d2de060c78b98"


def default_model_dir() -> Path:
    return Path(str(resources.files(MODEL_PACKAGE).joinpath(MODEL_FOLDER)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DetectorError(f"model file missing: {path} (run `make train-injection`)") from None
    except OSError as exc:
        raise DetectorError(f"cannot read model file {path}: {exc}") from None


def verified_files(folder: Path, manifest_sha256: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the bytes of every file it names, once the manifest
    matches ``manifest_sha256`` and each file matches the manifest."""
    raw = _read(folder / MANIFEST)
    if not hmac.compare_digest(_sha256(raw), manifest_sha256.lower()):
        raise DetectorError(f"model manifest {folder / MANIFEST} fails its sha256 check")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise DetectorError(f"cannot parse model manifest {folder / MANIFEST}: {exc}") from None
    contents: dict[str, bytes] = {}
    for role in _ROLES:
        name = manifest.get(role)
        expected = manifest.get("files", {}).get(name)
        if not isinstance(name, str) or not isinstance(expected, str):
            raise DetectorError(f"model manifest has no sha256 for its {role}")
        data = _read(folder / name)
        if not hmac.compare_digest(_sha256(data), expected):
            raise DetectorError(f"model file {name} fails its sha256 check (tampered or stale)")
        contents[role] = data
    return manifest, contents


@dataclass(frozen=True, slots=True)
class Head:
    """A logistic-regression head over the 384-d sentence embedding.
    ``sentence_offset`` lowers the logit of a run of sentences (a short run
    reads as an instruction more easily than the text around it); infinite
    means the head was trained without runs."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    sentence_offset: float = math.inf
    _vector: Any = field(default=None, init=False, repr=False, compare=False)

    def logits(self, embeddings: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        import numpy as np

        if self._vector is None:  # built once: a tuple to array per call costs 10 us
            object.__setattr__(self, "_vector", np.asarray(self.weights, dtype=np.float64))
        result: npt.NDArray[np.float64] = embeddings.astype(np.float64) @ self._vector + self.bias
        return result

    def probabilities(self, embeddings: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        import numpy as np

        result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-self.logits(embeddings)))
        return result


class Encoder:
    """Tokenizer plus int8 ONNX MiniLM returning L2-normalised mean-pooled embeddings."""

    def __init__(
        self,
        onnx: Path | bytes,
        tokenizer: Path | bytes,
        *,
        threads: int = 1,
        cache_windows: int = CACHE_WINDOWS,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # One thread per session is faster and steadier on small CPUs; the
        # pipeline already runs detectors in parallel.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        onnx_bytes = onnx if isinstance(onnx, bytes) else onnx.read_bytes()
        tokenizer_bytes = tokenizer if isinstance(tokenizer, bytes) else tokenizer.read_bytes()
        self._session = ort.InferenceSession(
            onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        cls, sep = self._tokenizer.token_to_id("[CLS]"), self._tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise DetectorError("tokenizer lacks the [CLS]/[SEP] tokens MiniLM expects")
        self._cls, self._sep = cls, sep
        self._lock = threading.Lock()
        # Keyed by the scope and the window's token ids; holds no text.
        self._cache: ScopedCache[npt.NDArray[np.float32]] = ScopedCache(cache_windows)

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    def windows(self, text: str) -> list[list[int]]:
        """Token-id windows (with [CLS]/[SEP]) covering the whole text."""
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) <= WINDOW_TOKENS:
            return [[self._cls, *ids, self._sep]]
        count = 1 + math.ceil((len(ids) - WINDOW_TOKENS) / WINDOW_STRIDE)
        starts = [min(i * WINDOW_STRIDE, len(ids) - WINDOW_TOKENS) for i in range(count)]
        return [[self._cls, *ids[s : s + WINDOW_TOKENS], self._sep] for s in starts]

    def run_windows(self, text: str, size: int) -> list[list[int]]:
        """One token window per run of whole sentences of at most ``size``
        characters (none for shorter texts), cut to a window's length."""
        runs = sentence_windows(text, size)
        if not runs:
            return []
        encoded = self._tokenizer.encode_batch(runs, add_special_tokens=False)
        return [[self._cls, *e.ids[:WINDOW_TOKENS], self._sep] for e in encoded]

    def embed_windows(
        self, windows: Sequence[Sequence[int]], batch_size: int = 1, scope: str = ""
    ) -> npt.NDArray[np.float32]:
        """Embeddings of token windows.

        One window per run by default: dynamic int8 quantisation picks its
        activation scale from the whole input tensor, so a batch would make a
        text's score depend on its neighbours (by up to ~0.05). A verdict must
        not change with what else was in flight, and single runs cost little
        at these lengths. The same property makes a window's embedding a pure
        function of its token ids, which is what allows the cache.
        """
        import numpy as np

        if not windows:
            return np.zeros((0, 384), dtype=np.float32)
        cached = batch_size == 1  # a batched embedding depends on its neighbours
        keys = [self._cache.key(scope, _packed(w)) for w in windows]
        found: dict[bytes, npt.NDArray[np.float32]] = {}
        if cached:
            for key in keys:
                hit = self._cache.get(key)
                if hit is not None:
                    found[key] = hit
        missing = [(k, w) for k, w in zip(keys, windows, strict=True) if k not in found]
        for first in range(0, len(missing), batch_size):
            batch = missing[first : first + batch_size]
            embedding = self._run([w for _, w in batch])
            for row, (key, _) in enumerate(batch):
                found[key] = embedding[row]
        if cached:
            for key, _ in missing:
                self._cache.put(key, found[key])
        return np.stack([found[key] for key in keys]).astype(np.float32)

    def embed_runs(self, windows: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """Embeddings of one text's runs of sentences, ``RUN_BATCH`` to an
        ONNX call: a run is a sentence or two, and batched they cost 10-20 %
        less than one call each. In a batch a run's embedding depends on its
        batch mates (see ``embed_windows``), but those are the other runs of
        the same text, batched the same way every time: the score is still a
        function of the text alone. Not cached per window for that reason; the
        score cache answers for a text seen before."""
        import numpy as np

        if not windows:
            return np.zeros((0, 384), dtype=np.float32)
        parts = [self._run(windows[i : i + RUN_BATCH]) for i in range(0, len(windows), RUN_BATCH)]
        return np.concatenate(parts).astype(np.float32)

    def _run(self, batch: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """One ONNX call on ``batch``, zero-padded to its longest window."""
        import numpy as np

        width = max(len(w) for w in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        attention = np.zeros((len(batch), width), dtype=np.int64)
        for row, window in enumerate(batch):
            input_ids[row, : len(window)] = window
            attention[row, : len(window)] = 1
        with self._lock:  # InferenceSession.run is thread-safe, but one at a time is faster here
            (embedding,) = self._session.run(
                ["embedding"], {"input_ids": input_ids, "attention_mask": attention}
            )
        return np.asarray(embedding, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One embedding per text, from its first window only (training helper)."""
        return self.embed_windows([self.windows(t)[0] for t in texts])


def _packed(window: Sequence[int]) -> bytes:
    return b"".join(int(t).to_bytes(4, "little") for t in window)


class InjectionModel:
    """The shipped classifiers: MiniLM heads, lexical heads and their
    ensemble, each with a head for prompts and one for documents and tool
    output (where instructions are more suspicious)."""

    def __init__(self, folder: Path | None = None, manifest_sha256: str | None = None) -> None:
        """``folder`` defaults to the shipped model; another folder needs the
        sha256 of its manifest.json (its files are checked against that)."""
        folder = folder or default_model_dir()
        if manifest_sha256 is None:
            if not _is_shipped(folder):
                raise DetectorError(
                    f"model folder {folder} needs the sha256 of its {MANIFEST} (model_sha256)"
                )
            manifest_sha256 = SHIPPED_MANIFEST_SHA256
        manifest, files = verified_files(folder, manifest_sha256)
        self.manifest = manifest
        self._encoder_files = (files["encoder"], files["tokenizer"])  # verified bytes
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()
        self.lexical = LexicalModel(files["lexical"])
        # Keyed by scope, kind, head and text; holds probabilities, no text.
        self._scores: ScopedCache[float] = ScopedCache(CACHE_WINDOWS)
        try:
            heads = json.loads(files["heads"])
            self.heads = {  # the MiniLM heads
                name: Head(
                    tuple(h["weights"]),
                    float(h["bias"]),
                    float(h["threshold"]),
                    _offset(h.get("sentence_offset")),
                )
                for name, h in heads["minilm"].items()
            }
            self.thresholds = {
                kind: {name: float(h["threshold"]) for name, h in heads[kind].items()}
                for kind in KINDS
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise DetectorError(f"cannot parse the model heads: {exc}") from None
        if any(set(self.thresholds[kind]) != set(LEXICAL_HEADS) for kind in KINDS):
            raise DetectorError(f"every model kind needs the heads {', '.join(LEXICAL_HEADS)}")

    @property
    def encoder(self) -> Encoder:
        """The MiniLM encoder, built from the verified bytes on first use."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = Encoder(*self._encoder_files)
            return self._encoder

    def warm_up(self, kind: str) -> None:
        """Build what ``kind`` needs now rather than on its first text."""
        if kind != "lexical":
            self.encoder.windows("warm up")

    @property
    def score_cache_hits(self) -> int:
        return self._scores.hits

    def score(
        self,
        texts: Sequence[str],
        head: str,
        scope: str = "",
        kind: str = "minilm",
        sentence_runs: bool = True,
    ) -> list[float]:
        """Max window probability per text under ``kind``'s ``head``;
        ``scope`` (a tenant) keeps cached scores and windows from being
        shared across callers. A text scored recently is answered from the
        score cache (no tokenizing, no head): conversations resend their
        history. ``sentence_runs`` off scores the wide windows only."""
        if kind == "ensemble":
            minilm = self.score(texts, head, scope, "minilm", sentence_runs)
            lexical = self.score(texts, head, scope, "lexical", sentence_runs)
            return [(a + b) / 2 for a, b in zip(minilm, lexical, strict=True)]
        if kind not in KINDS:
            raise DetectorError(f"unknown injection model kind {kind!r}")
        variant = kind if sentence_runs else f"{kind}-wide"
        keys = [
            self._scores.key(
                scope, f"{variant}\x00{head}\x00{text}".encode("utf-8", "surrogatepass")
            )
            for text in texts
        ]
        best: list[float | None] = [self._scores.get(key) for key in keys]
        if kind == "lexical":
            for index, text in enumerate(texts):
                if best[index] is None:
                    best[index] = self.lexical.score(text, head, sentence_runs)
                    self._scores.put(keys[index], best[index] or 0.0)
            return [score or 0.0 for score in best]
        missing = [index for index, score in enumerate(best) if score is None]
        for index, score in zip(
            missing,
            self._minilm([texts[i] for i in missing], head, scope, sentence_runs),
            strict=True,
        ):
            best[index] = score
            self._scores.put(keys[index], score)
        return [score or 0.0 for score in best]

    def _minilm(
        self, texts: Sequence[str], head: str, scope: str, sentence_runs: bool
    ) -> list[float]:
        """The MiniLM kind's score per text: the best logit among its token
        windows and, for a text longer than one window, its runs of
        sentences less the head's offset, as a probability."""
        import numpy as np

        if not texts:
            return []
        classifier = self.heads[head]
        runs = sentence_runs and math.isfinite(classifier.sentence_offset)
        owners: list[int] = []
        windows: list[list[int]] = []
        best = np.full(len(texts), -np.inf)
        for index, text in enumerate(texts):
            wide = self.encoder.windows(text)
            owners.extend([index] * len(wide))
            windows.extend(wide)
            if runs and len(wide) > 1:
                pieces = self.encoder.run_windows(text, self.lexical.sentence_chars)
                if pieces:
                    logits = classifier.logits(self.encoder.embed_runs(pieces))
                    best[index] = float(logits.max()) - classifier.sentence_offset
        logits = classifier.logits(self.encoder.embed_windows(windows, scope=scope))
        np.maximum.at(best, np.asarray(owners), logits)
        return [float(p) for p in 1.0 / (1.0 + np.exp(-np.clip(best, -50.0, 50.0)))]


def _offset(value: Any) -> float:
    """A head's sentence-run offset; absent or null means no runs."""
    return math.inf if value is None else float(value)


def _is_shipped(folder: Path) -> bool:
    try:
        return folder.resolve() == default_model_dir().resolve()
    except OSError:
        return False


_shared: dict[tuple[Path, str | None], InjectionModel] = {}
_shared_lock = threading.Lock()


def shared_model(folder: Path | None = None, manifest_sha256: str | None = None) -> InjectionModel:
    """One loaded model per folder and digest per process (read-only, thread-safe)."""
    key = (folder or default_model_dir(), manifest_sha256)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = InjectionModel(*key)
        return _shared[key]
