"""Agent configuration: `AgentConfig` (validated with pydantic) and how its layers are merged.

Precedence, highest first: the agent's own config > the `Kaizen` instance's config > environment
variables (`KAIZEN_MODEL`, `KAIZEN_TEMPERATURE`, `KAIZEN_MAX_TOKENS`, `KAIZEN_TIMEOUT`,
`KAIZEN_API_BASE`, `KAIZEN_TRANSPORT`) > built-in defaults. The explicit
layers are validated when an agent is created; the environment is read, and the model resolved,
each time the agent runs (`resolve_settings`, cached while those variables keep their values), so
creating an agent with nothing configured never fails and a changed `KAIZEN_MODEL` applies to the
next run.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from kaizen.errors import ConfigError
from kaizen.llm.models import (
    ModelHandle,
    ModelSpec,
    StructuredOutputMode,
    is_embedded_model,
    model_name,
    resolve_model,
    uses_structured_output,
)

# config field -> environment variable that supplies it when no explicit layer does
ENV_VARS: dict[str, str] = {
    "model": "KAIZEN_MODEL",
    "temperature": "KAIZEN_TEMPERATURE",
    "max_tokens": "KAIZEN_MAX_TOKENS",
    "timeout": "KAIZEN_TIMEOUT",
    "api_base": "KAIZEN_API_BASE",
    "transport": "KAIZEN_TRANSPORT",
    "structured_output": "KAIZEN_STRUCTURED_OUTPUT",
}


class AgentConfig(BaseModel):
    """How an agent talks to its model. Every key is optional; unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True
    )

    model: Any = Field(
        default=None,
        description="litellm model name ('openai/gpt-4o-mini', 'local/smollm2') or a model handle "
        "such as a ScriptedModel",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0, description="seconds per provider call")
    retries: int = Field(default=3, ge=0, description="provider retries on 429/5xx/timeouts")
    max_parse_attempts: int = Field(
        default=3, ge=1, description="model calls allowed to produce a valid reply (re-asks + 1)"
    )
    instructions: str | None = None
    system_prompt: str | None = Field(default=None, description="alias of `instructions`")
    structured_output: StructuredOutputMode = "auto"
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    transport: Literal["auto", "litellm", "openai-compatible"] = Field(
        default="auto",
        description="how calls reach the model: 'auto' (the pooled OpenAI-compatible path for "
        "openai/ models with an api_base, else litellm), 'litellm', or 'openai-compatible'",
    )
    prompt_template: str | None = Field(
        default=None, description="jinja2 template of the user message (the per-call prompt)"
    )
    system_template: str | None = Field(
        default=None, description="jinja2 template of the system message"
    )
    max_iterations: int = Field(
        default=10, ge=1, description="model turns an agent with tools may take (its loop)"
    )
    max_termination_attempts: int = Field(
        default=2,
        ge=0,
        description="reminders to finish, for turns with neither a tool call nor 'complete'",
    )
    max_tool_retries: int = Field(
        default=10, ge=0, description="failed tool calls one execution tolerates, all tools"
    )
    on_limit: Literal["return", "raise"] = Field(
        default="return",
        description="when the loop hits a limit: return what was done (a failed result with "
        "stop_reason), or raise AgentLimitError",
    )
    on_interrupt: Literal["return", "raise"] = Field(
        default="return",
        description="when the agent pauses for a person (a tool that needs approval): return "
        "a result with stop_reason 'waiting' and its interrupts, or raise AgentWaitingError",
    )
    tool_protocol: Literal["auto", "native", "json"] = Field(
        default="auto",
        description="how tool calls travel: the provider's native tool calling, or JSON "
        "constrained by a schema (auto: JSON for the embedded model, native otherwise)",
    )
    resample_degenerate: bool = Field(
        default=False,
        description="a prose output (a str output with min_length >= 10) that reads as a loop "
        "or not as prose (kaizen.text.degenerate) is asked for once more with a fixed seed; "
        "both tries are noted in the run record, and an answer still degenerate is kept, "
        "marked there (the demo sets it)",
    )
    strategy: Literal["auto", "plan"] = Field(
        default="auto",
        description="'auto': the reason-act loop for an agent with tools, one structured call "
        "without; 'plan': a plan of tool steps compiled into a workflow (docs/plans.md)",
    )
    # `validate` would shadow pydantic's BaseModel.validate: the key is an alias
    validate_plan: bool = Field(
        default=False,
        alias="validate",
        description="with strategy 'plan': check step results against their expected_output "
        "and the goal for completion, re-planning when a check fails",
    )
    max_plan_attempts: int = Field(
        default=3, ge=1, description="with strategy 'plan': plans asked for before giving up"
    )
    max_step_recoveries: int = Field(
        default=2, ge=0, description="with strategy 'plan': recovery decisions per failed step"
    )
    cache: bool | dict[str, Any] | None = Field(
        default=None,
        description="cache model calls: True, or {'ttl': seconds, 'sampled': bool, 'path': "
        "store}; calls with temperature > 0 only with 'sampled' (see docs/state.md)",
    )
    circuit_breaker: bool | dict[str, Any] | None = Field(
        default=None,
        description="a circuit breaker for this model, shared in the process: True, or "
        "{'failure_threshold': 5, 'window': 60, 'reset_timeout': 30} (docs/production.md)",
    )
    fallbacks: list[Any] = Field(
        default_factory=list,
        description="models tried in order when the model fails for good (server errors, "
        "timeouts, an open circuit; never request errors): anything `model` accepts (a name, a "
        "model handle such as a ScriptedModel), or {'model', 'api_base', ...}",
    )
    rate_limit: dict[str, Any] | None = Field(
        default=None,
        description="{'requests_per_minute': n, 'tokens_per_minute': n}, shared by every agent "
        "of this process calling the model",
    )
    input_guards: dict[str, Any] | None = Field(
        default=None,
        description="checks on inputs before any model call: {'max_chars': n or {field: n}, "
        "'deny_patterns': [regex, ...], 'fields': [names]} (kaizen.agents.guards)",
    )
    raise_on_error: bool = Field(
        default=True,
        description="execute() raises when the run fails; False: it returns a result with "
        "success=False and the exception in .error",
    )

    @field_validator("model")
    @classmethod
    def _model_is_name_or_handle(cls, value: Any) -> Any:
        return value if value is None else checked_model(value)

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks_are_models(cls, value: list[Any]) -> list[Any]:
        for number, option in enumerate(value):
            model = option.get("model") if isinstance(option, Mapping) else option
            try:
                checked_model(model)
            except ValueError as exc:
                raise ValueError(f"fallbacks.{number}: {exc}") from None
        return value

    @field_validator("cache", "circuit_breaker", "rate_limit", "input_guards")
    @classmethod
    def _option_fits(cls, value: Any, info: ValidationInfo) -> Any:
        """Each of these options is read by its own feature's parser, which raises a
        `ConfigError` (a ValueError) naming what is wrong: parsed here, they fail at once."""
        from kaizen.agents.guards import input_guards
        from kaizen.llm.resilience import breaker_settings, rate_limit_settings
        from kaizen.store.calls import cache_policy

        parsers: dict[str, Callable[[Any], object]] = {
            "cache": cache_policy, "circuit_breaker": breaker_settings,
            "rate_limit": rate_limit_settings, "input_guards": input_guards,
        }  # fmt: skip
        parsers[str(info.field_name)](value)
        return value

    @field_validator("prompt_template", "system_template")
    @classmethod
    def _template_parses(cls, value: str | None) -> str | None:
        if value is not None:
            from jinja2 import TemplateSyntaxError
            from jinja2.sandbox import SandboxedEnvironment

            try:
                SandboxedEnvironment().parse(value)
            except TemplateSyntaxError as exc:
                raise ValueError(
                    f"not a valid jinja2 template: {exc} (line {exc.lineno})"
                ) from None
        return value

    @property
    def effective_instructions(self) -> str | None:
        """`instructions`, else `system_prompt` (they are the same setting)."""
        return self.instructions if self.instructions is not None else self.system_prompt

    @classmethod
    def coerce(cls, config: AgentConfig | Mapping[str, Any] | None, *, where: str) -> AgentConfig:
        """Validate a user-supplied config; errors become `ConfigError`s naming `where`."""
        if config is None:
            return cls()
        if isinstance(config, AgentConfig):
            return config
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"{where}: config must be a dict or AgentConfig, got {type(config).__name__}"
            )
        try:
            built = cls.model_validate(dict(config))
        except ValidationError as exc:
            raise config_error(exc, where=where) from None
        if built.instructions is not None and built.system_prompt is not None:
            raise ConfigError(
                f"{where}: give either 'instructions' or 'system_prompt' (they are the same "
                "setting), not both"
            )
        return built

    def explicit(self) -> dict[str, Any]:
        """Only the keys that were set explicitly (what this layer overrides)."""
        return {name: getattr(self, name) for name in self.model_fields_set}

    def merged_over(self, lower: AgentConfig) -> AgentConfig:
        """This config's explicit keys layered over `lower`'s (no re-validation needed)."""
        if not lower.model_fields_set:
            return self
        if not self.model_fields_set:
            return lower
        values = {**lower.explicit(), **self.explicit()}
        if "instructions" in self.model_fields_set or "system_prompt" in self.model_fields_set:
            # the higher layer's instructions replace the lower layer's, whichever key it used
            for key in ("instructions", "system_prompt"):
                if key not in self.model_fields_set:
                    values.pop(key, None)
        return AgentConfig.model_construct(_fields_set=set(values), **values)


def checked_model(value: Any) -> ModelSpec:
    """`value` if it names a model (a litellm name or a model handle), else a `ValueError`
    saying what a model may be; `model` and each of `fallbacks` are checked with it."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the model name is empty")
        return value
    if isinstance(value, ModelHandle) and isinstance(value.model_name, str):
        return value
    raise ValueError(
        "expected a litellm model name (str) or a model handle with a `model_name` (such as "
        f"kaizen.testing.ScriptedModel), got {type(value).__name__}"
    )


def valid_keys() -> list[str]:
    """The keys a config dict may hold (a field's alias where it has one)."""
    return [info.alias or name for name, info in AgentConfig.model_fields.items()]


def config_error(exc: ValidationError, *, where: str) -> ConfigError:
    """Turn pydantic's report into one message naming every bad key and what to do."""
    lines: list[str] = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<config>"
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, valid_keys(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            lines.append(f"unknown config key {key!r}.{hint} Valid keys: {', '.join(valid_keys())}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"config key {key!r}: {message} (got {error.get('input')!r})")
    return ConfigError(f"{where}: " + "; ".join(lines))


def env_layer(environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The config layer the environment supplies (`KAIZEN_MODEL` is left to `resolve_model`)."""
    environ = os.environ if environ is None else environ
    values = {
        field: environ[var]
        for field, var in ENV_VARS.items()
        if field != "model" and environ.get(var, "").strip()
    }
    if not values:
        return AgentConfig()
    try:
        return AgentConfig.model_validate(values)
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        names = ", ".join(f"{ENV_VARS[b]}={environ[ENV_VARS[b]]!r}" for b in bad)
        raise ConfigError(
            f"environment variable {names} is invalid: "
            + "; ".join(e["msg"] for e in exc.errors())
            + ". Fix or unset it."
        ) from None


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """An agent's config with every layer applied and the model resolved: what each call uses."""

    model: ModelSpec
    model_name: str
    schema_in_prompt: bool
    max_parse_attempts: int
    prompt_template: str | None
    system_template: str | None
    # keyword arguments for kaizen.llm.prepare; may hold the API key, so never shown
    call_options: Mapping[str, Any] = field(repr=False)
    raise_on_error: bool
    max_iterations: int = 10
    max_termination_attempts: int = 2
    max_tool_retries: int = 10
    on_limit: str = "return"
    on_interrupt: str = "return"
    tool_protocol: str = "native"  # resolved: "native" or "json"
    strategy: str = "auto"
    resample_degenerate: bool = False
    validate_plan: bool = False
    max_plan_attempts: int = 3
    max_step_recoveries: int = 2


def resolve_settings(config: AgentConfig) -> ModelSettings:
    """Apply the environment under `config`, resolve the model, precompute the call options.

    Raises `ConfigError` when no model is configured and none is installed (the message says how
    to choose one), or when an environment override is invalid.
    """
    effective = config.merged_over(env_layer())
    model = resolve_model(effective.model)
    options: dict[str, Any] = {
        "model": model,
        "retries": effective.retries,
        "structured_output": effective.structured_output,
        "transport": effective.transport,
    }
    keys = ("temperature", "max_tokens", "timeout", "api_base", "api_key", "cache")
    for key in (*keys, "circuit_breaker", "rate_limit"):
        value = getattr(effective, key)
        if value is not None:
            options[key] = value
    if effective.fallbacks:
        options["fallbacks"] = tuple(effective.fallbacks)
    return ModelSettings(
        model=model,
        model_name=model_name(model),
        schema_in_prompt=not uses_structured_output(model, effective.structured_output),
        max_parse_attempts=effective.max_parse_attempts,
        prompt_template=effective.prompt_template,
        system_template=effective.system_template,
        call_options=options,
        raise_on_error=effective.raise_on_error,
        max_iterations=effective.max_iterations,
        max_termination_attempts=effective.max_termination_attempts,
        max_tool_retries=effective.max_tool_retries,
        on_limit=effective.on_limit,
        on_interrupt=effective.on_interrupt,
        tool_protocol=_tool_protocol(effective.tool_protocol, model_name(model)),
        strategy=effective.strategy,
        resample_degenerate=effective.resample_degenerate,
        validate_plan=effective.validate_plan,
        max_plan_attempts=effective.max_plan_attempts,
        max_step_recoveries=effective.max_step_recoveries,
    )


def _tool_protocol(choice: str, model: str) -> str:
    """JSON for the embedded model (no native tool calling), native otherwise, unless chosen."""
    if choice != "auto":
        return choice
    return "json" if is_embedded_model(model) else "native"


def environment_key() -> tuple[str | None, ...]:
    """The values of the variables settings read: settings stay valid while this is unchanged."""
    environ = os.environ
    return tuple(environ.get(var) for var in ENV_VARS.values())


__all__ = [
    "ENV_VARS",
    "AgentConfig",
    "ModelSettings",
    "config_error",
    "env_layer",
    "environment_key",
    "resolve_settings",
    "valid_keys",
]
