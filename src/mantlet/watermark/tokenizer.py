"""Re-tokenization for detection: the detector must see the same token ids
the model sampled, so it uses the model's own vocabulary."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from mantlet.errors import ConfigError


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class GGUFTokenizer:
    """The vocabulary of a GGUF model through llama.cpp, loaded without its
    weights (``vocab_only``: well under a second even for large models)."""

    def __init__(self, path: Path) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                "watermark detection needs llama-cpp-python for the model's tokenizer"
                " (`make run` builds it)"
            ) from None
        if not path.is_file():
            raise ConfigError(f"no GGUF model file at {path}")
        self._llama: Any = Llama(model_path=str(path), vocab_only=True, verbose=False)
        self.vocab_size = int(self._llama.n_vocab())
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        with self._lock:
            ids = self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return [int(i) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        with self._lock:
            data: bytes = self._llama.detokenize(list(ids))
        return data.decode("utf-8", errors="replace")
