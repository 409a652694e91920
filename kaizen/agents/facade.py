"""The `Kaizen` facade: a framework instance holding default agent config, and the module-level
functions (`kaizen.create_agent`, ...) that use a default instance.

Defaults layer under each agent's own config (see `kaizen.agents.config` for the precedence).
`create_agent(name, signature, config)` also takes the ADR's short form
`create_agent("assistant", {"model": ...})`: a dict in the signature's place is the config.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen import process, seams
from kaizen.agents.agent import Agent
from kaizen.agents.config import AgentConfig
from kaizen.errors import ConfigError

if TYPE_CHECKING:
    from kaizen.tools.toolset import ToolLike
    from kaizen.workflow.builder import WorkflowBuilder


class Kaizen:
    """A framework instance: default config for its agents, and its agents by name.

    ```python
    kz = Kaizen(config={"model": "openai/gpt-4o-mini", "temperature": 0.2})
    qa = kz.create_agent("qa", "question -> answer")   # inherits model and temperature
    ```
    """

    def __init__(self, config: AgentConfig | Mapping[str, Any] | None = None) -> None:
        self.config = AgentConfig.coerce(config, where="Kaizen config")
        # weak: the framework finds agents by name without keeping them alive
        self._agents: weakref.WeakValueDictionary[str, Agent] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Kaizen(config={self.config.explicit()!r}, agents={sorted(self._agents)!r})"

    def create_agent(
        self,
        name: str,
        signature: Any = None,
        config: AgentConfig | Mapping[str, Any] | None = None,
        *,
        hooks: Iterable[object] = (),
        tools: Iterable[ToolLike] = (),
    ) -> Agent:
        """An agent named `name`; `signature` is a spec string, a `Signature`, or None for
        `task: str, context: dict = {} -> result: str`; `config` overrides this instance's
        (a dict given in the signature's place is the config); `hooks` observe the agent;
        `tools` (functions, `kaizen.Tool`s, toolsets) make it run the reason-act loop."""
        signature, config = _signature_and_config(signature, config)
        agent = Agent(name, signature, config, defaults=self.config, hooks=hooks, tools=tools)
        with self._lock:
            self._agents[name] = agent
        return agent

    def get_agent(self, name: str) -> Agent:
        """The live agent this instance created under `name` (the latest, if reused)."""
        agent = self._agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self._agents)) or "(none)"
            raise ConfigError(f"no agent named {name!r}; agents created so far: {known}")
        return agent

    @property
    def agents(self) -> dict[str, Agent]:
        """Live agents by name."""
        return dict(self._agents)

    # -- patterns (kaizen.patterns is a layer above: reached through kaizen.seams) ----------------

    def create_pipeline(self, steps: Sequence[Any], **options: Any) -> WorkflowBuilder:
        """`kaizen.patterns.create_pipeline`; role-name steps inherit this instance's config."""
        return seams.patterns.get().create_pipeline(steps, framework=self, **options)

    def create_debate_workflow(
        self, agents: Sequence[Any], topic: str | None = None, rounds: int = 3, **options: Any
    ) -> WorkflowBuilder:
        """`kaizen.patterns.create_debate_workflow`; role-name agents inherit this config."""
        return seams.patterns.get().create_debate_workflow(
            agents, topic, rounds, framework=self, **options
        )

    def create_consensus_workflow(
        self,
        agents: Sequence[Any],
        decision_criteria: str = "majority_vote",
        confidence_threshold: float = 0.5,
        **options: Any,
    ) -> WorkflowBuilder:
        """`kaizen.patterns.create_consensus_workflow`; role-name agents inherit this config."""
        return seams.patterns.get().create_consensus_workflow(
            agents, decision_criteria, confidence_threshold, framework=self, **options
        )

    def create_supervisor_agent(self, name: str, config: Mapping[str, Any]) -> WorkflowBuilder:
        """`kaizen.patterns.create_supervisor_agent`; role-name agents inherit this config."""
        return seams.patterns.get().create_supervisor_agent(name, config, framework=self)


_default: Kaizen | None = None
_default_lock = threading.Lock()


def default_kaizen() -> Kaizen:
    """The instance behind the module-level functions (created on first use, no config)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Kaizen()
    return _default


def create_agent(
    name: str,
    signature: Any = None,
    config: AgentConfig | Mapping[str, Any] | None = None,
    *,
    hooks: Iterable[object] = (),
    tools: Iterable[ToolLike] = (),
) -> Agent:
    """`kaizen.create_agent(name, signature=None, config=None, tools=[...])` on the default
    instance; also `kaizen.create_agent("assistant", {"model": ...})` (a dict in the signature's
    place is the config)."""
    return default_kaizen().create_agent(name, signature, config, hooks=hooks, tools=tools)


def get_agent(name: str) -> Agent:
    """An agent created earlier through `kaizen.create_agent`, by name."""
    return default_kaizen().get_agent(name)


def _signature_and_config(signature: Any, config: Any) -> tuple[Any, Any]:
    """`(signature, config)`, reading a mapping given in the signature's place as the config."""
    if isinstance(signature, Mapping | AgentConfig):
        if config is not None:
            raise TypeError(
                "create_agent(name, signature, config): the signature is a dict and a config is "
                "given too; pass a spec string or Signature as the signature, or the dict alone "
                "as the config"
            )
        return None, signature
    return signature, config


def _forget_default() -> None:
    global _default
    _default = None


process.register("agents.facade", _forget_default)

__all__ = ["Kaizen", "create_agent", "default_kaizen", "get_agent"]
