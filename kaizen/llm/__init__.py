"""Model access: choosing a model, calling it through litellm, retrying what is worth retrying.

Modules: `call` (the request and the call flow; `complete` / `acomplete`), `models` (model
resolution and structured output), `retry` (failure rules and `ModelError`), `litellm_adapter`
(the one module touching litellm's private parts), `local` (the embedded SmolLM2 model),
`transport` (how a request reaches a model), `http` (the pooled fast path for OpenAI-compatible
servers, on aiohttp; imported here so that it takes part in `transport_for`).
"""

import kaizen.llm.http.openai_compat  # noqa: F401  (registers the fast transport)
from kaizen.llm.call import (
    DEFAULT_TIMEOUT,
    ModelReply,
    ModelRequest,
    acomplete,
    complete,
    model_call,
    prepare,
)
from kaizen.llm.embedded import LOCAL_MODEL
from kaizen.llm.models import (
    ModelHandle,
    ModelSpec,
    StructuredOutputMode,
    local_model_installed,
    model_name,
    resolve_model,
    response_format_for,
    supports_structured_output,
    uses_structured_output,
)
from kaizen.llm.retry import is_retryable, retry_after, status_of

__all__ = [
    "DEFAULT_TIMEOUT",
    "LOCAL_MODEL",
    "ModelHandle",
    "ModelReply",
    "ModelRequest",
    "ModelSpec",
    "StructuredOutputMode",
    "acomplete",
    "complete",
    "is_retryable",
    "local_model_installed",
    "model_call",
    "model_name",
    "prepare",
    "resolve_model",
    "response_format_for",
    "retry_after",
    "status_of",
    "supports_structured_output",
    "uses_structured_output",
]
