"""The OpenAPI document of `kaizen serve`: the schemas its routes refer to (the target's own
come from its ports: `kaizen.serve.target`), the 401 the key check adds, and the description."""

from __future__ import annotations

from typing import Any

from kaizen.serve.target import ServedTarget

__all__ = [
    "KEY_COOKIE",
    "PUBLIC",
    "UI_PUBLIC",
    "UI_STATIC",
    "components",
    "declare_denied",
    "description",
    "json_body",
    "json_response",
    "ref",
]

PUBLIC = frozenset({"/openapi.json", "/health"})  # answered without an API key
# the run browser's login page and its assets are answered without a key; its pages send the
# key in a same-site cookie the login page sets
UI_PUBLIC = frozenset({"/ui/login"})
UI_STATIC = "/ui/static/"
KEY_COOKIE = "kaizen_key"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: str) -> dict[str, Any]:
    """A required JSON request body of component `schema`."""
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def components(served: ServedTarget) -> dict[str, Any]:
    """The schemas `create_app`'s routes refer to; the target's own come from its ports."""
    found: dict[str, Any] = {}
    request = _lift_defs(served.request_schema, found)
    results = _lift_defs(served.results_schema, found)
    status = {
        "type": "string",
        "enum": ["queued", "running", "waiting", "completed", "failed", "cancelled"],
    }
    links = {"url": {"type": "string"}, "events": {"type": "string"}}
    created = {"run_id": {"type": "string"}, "status": status, **links}
    cancelling = {**created, "status": {"type": "string", "enum": ["cancelling"]}}
    found.update(
        {
            "RunParameters": {**request, "title": "RunParameters"},
            "RunResults": {**results, "title": "RunResults"},
            "RunCreated": {
                "type": "object",
                "properties": created,
                "required": ["run_id", "status", "url", "events"],
            },
            "ResumeRequest": {
                "type": "object",
                "properties": {
                    "answers": {
                        "type": "object",
                        "description": "Interrupt id (from the run's interrupt events) -> "
                        "the answer: any JSON value that fits the interrupt's schema",
                    },
                    "by": {"type": "string", "description": "Who answers"},
                },
                "additionalProperties": False,
            },
            "RunCancelling": {
                "type": "object",
                "properties": cancelling,
                "required": ["run_id", "status", "url", "events"],
            },
            "Run": {
                "type": "object",
                "properties": {
                    "run_id": {"type": "string"},
                    "target": {"type": "string"},
                    "status": status,
                    "created": {"type": "number"},
                    "finished": {"type": ["number", "null"]},
                    "parameters": ref("RunParameters"),
                    "results": {"anyOf": [ref("RunResults"), {"type": "null"}]},
                    "error": {"type": ["string", "null"]},
                    "record": {
                        "type": ["object", "null"],
                        "description": "The RunRecord: per-node status, timings, usage",
                    },
                    **links,
                },
                "required": ["run_id", "status", "created"],
            },
            "Problem": {
                "type": "object",
                "properties": {
                    "detail": {"type": "string"},
                    "fields": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
                "required": ["detail"],
            },
        }
    )
    return found


def declare_denied(document: dict[str, Any]) -> None:
    """Add the 401 the key check answers to every operation it guards."""
    denied = json_response("No valid API key", "Problem")
    for path, operations in document.get("paths", {}).items():
        if path in PUBLIC:
            continue
        for operation in operations.values():
            operation.setdefault("responses", {})["401"] = denied


def _lift_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """`schema` with pydantic's ``$defs`` moved into the components (refs rewritten)."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            lifted = {}
            for key, value in node.items():
                if key == "$defs" and isinstance(value, dict):
                    for name, definition in value.items():
                        components[name] = rewrite(definition)
                    continue
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                    value = "#/components/schemas/" + value.removeprefix("#/$defs/")
                lifted[key] = rewrite(value)
            return lifted
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    result: dict[str, Any] = rewrite(schema)
    return result


def description(served: ServedTarget) -> str:
    inputs = ", ".join(served.inputs) or "none"
    return (
        f"Runs of the {served.kind} {served.name!r}. POST /runs with its inputs ({inputs}) as "
        "a JSON object, then GET /runs/{run_id} or stream GET /runs/{run_id}/events."
    )
