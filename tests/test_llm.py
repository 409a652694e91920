"""kaizen.llm without the network: model resolution, structured-output decisions, error rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kaizen.errors import ConfigError
from kaizen.llm import (
    LOCAL_MODEL,
    is_retryable,
    local_model_installed,
    resolve_model,
    response_format_for,
    retry_after,
    status_of,
    supports_structured_output,
    uses_structured_output,
)
from kaizen.testing import ScriptedModel, status_error


def test_importing_kaizen_llm_does_not_import_litellm() -> None:
    code = (
        "import sys, kaizen, kaizen.llm, kaizen.testing, kaizen.llm.litellm_adapter, "
        "kaizen.llm.embedded, kaizen.testing.fault_server; "
        "print('litellm' in sys.modules, 'llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_explicit_model_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_MODEL", "openai/from-env")
    assert resolve_model("anthropic/claude-x") == "anthropic/claude-x"
    scripted = ScriptedModel(["x"])
    assert resolve_model(scripted) is scripted


def test_environment_model_is_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_MODEL", "openai/from-env")
    assert resolve_model() == "openai/from-env"
    assert resolve_model(None) == "openai/from-env"


def test_fallback_is_the_local_model_or_a_helpful_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIZEN_MODEL", raising=False)
    if local_model_installed():
        assert resolve_model() == LOCAL_MODEL
        return
    with pytest.raises(ConfigError) as caught:
        resolve_model()
    message = str(caught.value)
    assert 'config={"model"' in message
    assert "KAIZEN_MODEL" in message
    assert "make setup" in message


def test_without_the_local_model_the_error_names_every_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kaizen.llm.models

    monkeypatch.delenv("KAIZEN_MODEL", raising=False)
    monkeypatch.setattr(kaizen.llm.models, "local_model_installed", lambda: False)
    with pytest.raises(ConfigError, match="KAIZEN_MODEL"):
        resolve_model()


def test_structured_output_decision() -> None:
    scripted = ScriptedModel(["x"])
    assert uses_structured_output(scripted, "auto") is True
    assert uses_structured_output(LOCAL_MODEL, "auto") is True
    assert uses_structured_output("openai/gpt-4o-mini", "auto") is True
    assert uses_structured_output("openai/no-such-model-xyz", "auto") is False
    assert uses_structured_output("openai/no-such-model-xyz", "json_schema") is True
    assert uses_structured_output(scripted, "instructions") is False
    assert supports_structured_output("ollama/unknown-thing") is False
    with pytest.raises(ConfigError, match="structured_output"):
        uses_structured_output(scripted, "sometimes")  # type: ignore[arg-type]


def test_response_format_is_strict_only_for_closed_schemas() -> None:
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = response_format_for(closed, "qa")
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "qa", "schema": closed, "strict": True},
    }
    open_schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert response_format_for(open_schema)["json_schema"]["strict"] is False
    optional = {**closed, "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    assert response_format_for(optional)["json_schema"]["strict"] is False


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(status, False) for status in (400, 401, 403, 404, 422)],
        *[(status, True) for status in (408, 429, 500, 502, 503)],
    ],
)
def test_retry_rules_by_status(status: int, retryable: bool) -> None:
    error = status_error(status, retry_after=None, message=None, model="m")
    assert status_of(error) == status
    assert is_retryable(error) is retryable


def test_retry_after_is_read_from_the_error() -> None:
    error = status_error(429, retry_after=2.5, message=None, model="m")
    assert retry_after(error) == 2.5
    assert retry_after(status_error(429, retry_after=None, message=None, model="m")) is None


def test_plain_python_errors() -> None:
    assert is_retryable(TimeoutError()) is True
    assert is_retryable(ConnectionResetError()) is True
    assert is_retryable(ValueError("bad")) is False
    assert status_of(TimeoutError()) == 408


def test_a_missing_api_key_is_an_authentication_error_not_a_server_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kaizen.errors import ModelError
    from kaizen.llm import complete

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError) as info:
        complete([{"role": "user", "content": "hi"}], model="openai/gpt-4o-mini", retries=3)
    assert info.value.status == 401 and not info.value.retryable
    assert info.value.attempts == 1  # not retried: it cannot succeed
    assert "check the API key" in str(info.value)
