"""Agent configuration: validation, unknown keys, layering, environment overrides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaizen.agents import Kaizen, create_agent
from kaizen.agents.config import ENV_VARS, AgentConfig, env_layer, resolve_settings
from kaizen.errors import ConfigError
from kaizen.testing import ScriptedModel

ENV = (
    "KAIZEN_MODEL",
    "KAIZEN_TEMPERATURE",
    "KAIZEN_MAX_TOKENS",
    "KAIZEN_TIMEOUT",
    "KAIZEN_API_BASE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_unknown_key_is_named_with_a_suggestion_and_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        create_agent("qa", "question -> answer", config={"temprature": 0.3})
    message = str(info.value)
    assert "'temprature'" in message
    assert "Did you mean 'temperature'?" in message
    assert "max_parse_attempts" in message and "structured_output" in message
    assert "agent 'qa'" in message


def test_unknown_key_without_a_close_match_still_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'zzz'.*Valid keys: model"):
        AgentConfig.coerce({"zzz": 1}, where="test")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("max_tokens", 0),
        ("timeout", -1),
        ("retries", -1),
        ("max_parse_attempts", 0),
        ("structured_output", "xml"),
        ("model", 42),
        ("model", "  "),
    ],
)
def test_out_of_range_values_are_config_errors_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        AgentConfig.coerce({key: value}, where="test")


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a dict or AgentConfig"):
        create_agent("qa", config=["model"])  # type: ignore[arg-type]


def test_instructions_and_system_prompt_are_one_setting() -> None:
    with pytest.raises(ConfigError, match="either 'instructions' or 'system_prompt'"):
        AgentConfig.coerce({"instructions": "a", "system_prompt": "b"}, where="test")
    agent = create_agent("qa", "question -> answer", {"system_prompt": "Be terse."})
    assert agent.signature.instructions == "Be terse."


def test_kaizen_instance_defaults_layer_under_agent_config() -> None:
    kz = Kaizen(config={"model": "openai/gpt-4o-mini", "temperature": 0.2, "max_tokens": 50})
    agent = kz.create_agent("qa", "question -> answer", {"temperature": 0.9})
    assert agent.config.model == "openai/gpt-4o-mini"
    assert agent.config.temperature == 0.9
    assert agent.config.max_tokens == 50
    assert kz.get_agent("qa") is agent


def test_kaizen_instance_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="Kaizen config: unknown config key 'modle'"):
        Kaizen(config={"modle": "x"})


def test_agent_instructions_replace_instance_instructions() -> None:
    kz = Kaizen(config={"instructions": "Default voice."})
    plain = kz.create_agent("a", "question -> answer")
    own = kz.create_agent("b", "question -> answer", {"system_prompt": "Own voice."})
    assert plain.signature.instructions == "Default voice."
    assert own.signature.instructions == "Own voice."


def test_creating_an_agent_with_nothing_configured_does_not_fail() -> None:
    agent = create_agent("idle")
    assert agent.config.model is None


def test_environment_overrides_apply_under_explicit_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAIZEN_TEMPERATURE", "0.7")
    monkeypatch.setenv("KAIZEN_MAX_TOKENS", "128")
    monkeypatch.setenv("KAIZEN_TIMEOUT", "12.5")
    monkeypatch.setenv("KAIZEN_API_BASE", "http://127.0.0.1:9/v1")
    model = ScriptedModel([{"answer": "x"}])
    settings = resolve_settings(AgentConfig.coerce({"model": model, "max_tokens": 64}, where="t"))
    options = settings.call_options
    assert options["temperature"] == 0.7
    assert options["max_tokens"] == 64  # explicit beats the environment
    assert options["timeout"] == 12.5
    assert options["api_base"] == "http://127.0.0.1:9/v1"
    assert options["model"] is model


def test_instance_config_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_TEMPERATURE", "0.7")
    kz = Kaizen(config={"temperature": 0.1, "model": ScriptedModel([{"answer": "x"}])})
    agent = kz.create_agent("qa", "question -> answer")
    assert agent.settings().call_options["temperature"] == 0.1


def test_kaizen_model_env_var_chooses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_MODEL", "openai/gpt-4o-mini")
    agent = create_agent("qa", "question -> answer")
    assert agent.settings().model == "openai/gpt-4o-mini"
    explicit = create_agent("qb", "question -> answer", {"model": "anthropic/claude-3-haiku"})
    assert explicit.settings().model == "anthropic/claude-3-haiku"


def test_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_TEMPERATURE", "hot")
    with pytest.raises(ConfigError, match="KAIZEN_TEMPERATURE='hot'"):
        env_layer()
    monkeypatch.setenv("KAIZEN_TEMPERATURE", "5")
    with pytest.raises(ConfigError, match="KAIZEN_TEMPERATURE='5'"):
        env_layer()


def test_blank_environment_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_TEMPERATURE", " ")
    assert env_layer().model_fields_set == set()


def test_api_key_is_not_shown_in_repr() -> None:
    config = AgentConfig.coerce({"api_key": "sk-secret"}, where="t")
    assert "sk-secret" not in repr(config)


def test_agent_node_settings_match_the_config_fields() -> None:
    from kaizen.agents import AGENT_CONFIG_KEYS

    # a field's alias is its key ("validate" is the field validate_plan)
    keys = {info.alias or name for name, info in AgentConfig.model_fields.items()}
    assert keys == AGENT_CONFIG_KEYS
    assert "validate" in AGENT_CONFIG_KEYS


_LAYER_VALUES = {
    "temperature": st.sampled_from([0.0, 0.5, 1.25, 2.0]),
    "max_tokens": st.integers(1, 4096),
    "timeout": st.sampled_from([0.5, 10.0, 90.0]),
    "api_base": st.sampled_from(["http://a/v1", "http://b/v1"]),
}


def _layer() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({}, optional=_LAYER_VALUES)


@given(agent=_layer(), instance=_layer(), env=_layer())
def test_precedence_is_agent_then_instance_then_environment(
    agent: dict[str, object], instance: dict[str, object], env: dict[str, object]
) -> None:
    environ = {ENV_VARS[key]: str(value) for key, value in env.items()}
    kz = Kaizen(config=instance)
    made = kz.create_agent("p", "question -> answer", agent)
    effective = made.config.merged_over(env_layer(environ))
    for key in _LAYER_VALUES:
        expected = agent.get(key, instance.get(key, env.get(key)))
        assert getattr(effective, key) == expected, key


def test_resolved_settings_never_show_the_api_key() -> None:
    agent = create_agent("qa", "question -> answer", {"model": "openai/x", "api_key": "sk-secret1"})
    settings = agent.settings()
    assert settings.call_options["api_key"] == "sk-secret1"  # it is used...
    assert "sk-secret1" not in repr(settings) and "sk-secret1" not in repr(agent)  # ...not shown
