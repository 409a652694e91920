"""Pattern benchmark: a 100-agent consensus and a 5-agent, 3-round debate on a 200 ms model.

Kaizen's patterns are graphs: the consensus is a fan-out of 100 agent nodes into an aggregator,
the debate is unrolled into rounds of nodes and a judge. Every model call goes over real HTTP to
`kaizen.testing.FaultServer` (an OpenAI-compatible server on loopback answering after 200 ms
with a valid instance of the requested schema), model `openai/bench` with an `api_base`: "kaizen"
takes the default transport (the pooled OpenAI-compatible fast path), "kaizen-litellm" is forced
through litellm (`transport="litellm"`). The floor is the critical path: one call for the
consensus, rounds + 1 (the judge) calls for the debate.

kailash-kaizen's patterns (`create_consensus_workflow` / `create_debate_workflow` from
kaizen-agents) run in a subprocess on its mock provider (zero latency); the note says what they
reported. Its agents refuse loopback endpoints, so it cannot use the 200 ms server.

Run: `.bench-venv/bin/python benchmarks/bench_patterns.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FLOOR,
    KAIZEN,
    Report,
    Row,
    Target,
    bench_main,
    collect_workers,
    quiet_peers,
    skipped,
    sort_rows,
    timed_row,
    try_import,
)

LATENCY = 0.2
VOTERS = 100
DEBATERS = 5
ROUNDS = 3
CONSENSUS = f"consensus, {VOTERS} agents"
DEBATE = f"debate, {DEBATERS} agents x {ROUNDS} rounds"
CASES = (CONSENSUS, DEBATE)
PEER_KAIZEN = "kailash-kaizen"
BARE_LITELLM = "bare-litellm"
KAIZEN_LITELLM = "kaizen-litellm"
TARGETS = {CONSENSUS: Target("≤ 0.3 s", 0.3, "seconds")}
QUESTION = "Should the team adopt typed signatures for its LLM agents?"

# What a voter / debater / judge says; anything else gets the schema's minimal example.
CHOSEN = {
    "answer": "yes",
    "decision": "yes",
    "position": "yes",
    "verdict": "yes",
    "confidence": 0.9,
}


def schema_reply(body: dict[str, Any]) -> Any:
    """The reply FaultServer sends: the requested schema's example with agreeing votes."""
    from kaizen.testing.fault_server import example_for_schema, requested_schema

    schema = requested_schema(body)
    reply = example_for_schema(schema)
    if isinstance(reply, dict) and schema is not None:
        properties = schema.get("properties", {})
        for key, value in CHOSEN.items():
            wanted = properties.get(key, {})
            free_text = wanted.get("type") == "string" and not {"enum", "const"} & set(wanted)
            if key in reply and (isinstance(value, float) or free_text):
                reply[key] = value
    return reply


def floor_rows() -> list[Row]:
    notes = {CONSENSUS: "1 call on the critical path", DEBATE: f"{ROUNDS} rounds + judge"}
    return [
        Row(CONSENSUS, FLOOR, LATENCY, None, 0, notes[CONSENSUS]),
        Row(DEBATE, FLOOR, (ROUNDS + 1) * LATENCY, None, 0, notes[DEBATE]),
    ]


# --- Kaizen -----------------------------------------------------------------------------------


def kaizen_api() -> tuple[Any, Any, Any, Any]:
    import kaizen

    def pick(name: str, module: str) -> Any:
        found = getattr(kaizen, name, None)
        if found is None:
            found = getattr(__import__(module, fromlist=[name]), name)
        return found

    return (
        pick("create_agent", "kaizen.agents"),
        pick("create_consensus_workflow", "kaizen.patterns"),
        pick("create_debate_workflow", "kaizen.patterns"),
        kaizen.LocalRuntime,
    )


def kaizen_rows(quick: bool) -> list[Row]:
    from kaizen.testing.fault_server import FaultServer

    rows = []
    with FaultServer(latency=LATENCY, reply=schema_reply) as server:
        rows += kaizen_pattern_rows(quick, server.base_url, KAIZEN, "auto")
        rows += kaizen_pattern_rows(quick, server.base_url, KAIZEN_LITELLM, "litellm")
        rows.append(bare_litellm_row(server.base_url))
    return rows


def kaizen_pattern_rows(quick: bool, base_url: str, impl: str, transport: str) -> list[Row]:
    """The consensus and the debate with agents on `transport`, as row `impl`."""
    create_agent, create_consensus, create_debate, runtime_cls = kaizen_api()
    reps = 2 if quick else 5
    runtime = runtime_cls(max_concurrency=128)
    rows = []
    how = "fast path (default)" if transport == "auto" else f"transport={transport!r}"
    config = {
        "model": "openai/bench",
        "api_base": base_url,
        "api_key": "bench",
        "structured_output": "json_schema",
        "transport": transport,
    }
    voters = [
        create_agent(
            f"voter_{i}",
            signature="question -> answer: str, confidence: float",
            config=config,
        )
        for i in range(VOTERS)
    ]
    try:
        consensus = create_consensus(voters, decision_criteria="majority_vote").build()
    except Exception as exc:
        rows.append(skipped(CONSENSUS, impl, f"build: {type(exc).__name__}: {exc}"))
    else:

        async def run_consensus() -> Any:
            return await runtime.execute_async(consensus, parameters={"question": QUESTION})

        def consensus_ok(result: Any) -> bool:
            return bool(result[0]["consensus"]["reached"])

        rows.append(
            timed_row(
                CONSENSUS,
                impl,
                run_consensus,
                reps=reps,
                is_async=True,
                check=consensus_ok,
                note=f"reached, 100 votes; {how}",
            )
        )
    roles = ["optimist", "pessimist", "skeptic", "pragmatist", "moderator"][:DEBATERS]
    try:
        debate = create_debate(
            roles, topic=QUESTION, rounds=ROUNDS, agent_config=config, name="bench_debate"
        ).build()
    except Exception as exc:
        rows.append(skipped(DEBATE, impl, f"build: {type(exc).__name__}: {exc}"))
    else:

        async def run_debate() -> Any:
            return await runtime.execute_async(debate)

        rows.append(
            timed_row(
                DEBATE,
                impl,
                run_debate,
                reps=reps,
                is_async=True,
                check=lambda result: bool(result[0]),
                note=f"{len(roles) - 1} debaters + moderator; {how}",
            )
        )
    return rows


def bare_litellm_row(base_url: str) -> Row:
    """100 bare `litellm.acompletion` calls to the same server: the transport's own cost."""
    import litellm

    messages = [{"role": "user", "content": QUESTION}]

    async def hundred() -> None:
        await asyncio.gather(
            *(
                litellm.acompletion(
                    model="openai/bench", messages=messages, api_base=base_url, api_key="bench"
                )
                for _ in range(VOTERS)
            )
        )

    row = timed_row(CONSENSUS, BARE_LITELLM, hundred, reps=3, is_async=True)
    row.note = f"{VOTERS} bare litellm.acompletion calls, no Kaizen"
    return row


# --- kailash-kaizen (subprocess, its package first on sys.path) -------------------------------


def peer_rows(quick: bool) -> list[Row]:
    import kaizen

    if "kailash-kaizen" not in str(kaizen.__file__):
        return [skipped("*", PEER_KAIZEN, f"imported {kaizen.__file__}, not kailash-kaizen")]
    from kaizen.core.framework import Kaizen

    framework = Kaizen()
    mock = {"model": "mock-model", "provider": "mock"}
    rows = []
    outcome: dict[str, Any] = {}

    for case, count, make in (
        (CONSENSUS, VOTERS, lambda agents: framework.create_consensus_workflow(agents, QUESTION)),
        (
            DEBATE,
            DEBATERS,
            lambda agents: framework.create_debate_workflow(agents, QUESTION, rounds=ROUNDS),
        ),
    ):
        try:
            agents = [framework.create_agent(f"{case[:3]}_{i}", config=mock) for i in range(count)]
            workflow = make(agents)
        except Exception as exc:
            rows.append(skipped(case, PEER_KAIZEN, f"{type(exc).__name__}: {exc}"))
            continue

        def run(workflow: Any = workflow, case: str = case) -> None:
            outcome[case] = workflow.execute()

        row = timed_row(case, PEER_KAIZEN, run, reps=2 if quick else 3)
        result = outcome.get(case)
        if row.seconds is not None and isinstance(result, dict):
            row.note = "mock, 0 ms; " + peer_outcome(result, count)
        rows.append(row)
    return rows


def peer_outcome(result: dict[str, Any], agents: int) -> str:
    """What kailash-kaizen's pattern reported, beside how many of its agent nodes failed."""
    status = result.get("consensus_achieved", result.get("coordination_status", "?"))
    raw = result.get("raw_results")
    failed = (
        sum(1 for value in raw.values() if isinstance(value, dict) and value.get("failed"))
        if isinstance(raw, dict)
        else None
    )
    text = f"reported {status!r}"
    if failed is not None:
        text += f", {failed}/{agents} agent nodes failed"
    error = str(result.get("error") or "")
    return text + (f"; error: {error[:70]}" if error else "")


# --- main -------------------------------------------------------------------------------------


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    if name == PEER_KAIZEN:
        return peer_rows(quick)
    missing = try_import("kaizen.patterns")
    if missing:
        return [skipped("*", KAIZEN, missing)]
    return kaizen_rows(quick)


def build_report(quick: bool) -> Report:
    report = Report("bench_patterns: patterns on a 200 ms model", "per agent", [], TARGETS)
    report.extend(floor_rows())
    collect_workers(report, __file__, (KAIZEN, (PEER_KAIZEN, True)), quick, CASES)
    sort_rows(report, CASES, (KAIZEN, KAIZEN_LITELLM, FLOOR, BARE_LITELLM, PEER_KAIZEN))
    return report


if __name__ == "__main__":
    bench_main(__doc__, worker_rows, build_report)
