"""Settings → a DSPy LM and its `lm_id`: remote (litellm / OpenAI-compatible), the bundled local model, or the
seeded simulator. The lm_id (backend, model, decode settings) goes into every artifact, report and receipt.

DSPy hygiene lives here too: no network price-map fetch, no cache in $HOME (a cache only where
OVERNIGHT_LM_CACHE_DIR says, for a remote model's compile calls, in a directory nobody else may write to; else
none), and the local model and the simulator built with `cache=False`. Must not import the store or API.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dspy

from overnight.config import Settings
from overnight.errors import ConfigError
from overnight.lm.engines import AsyncLlamaCppEngine, AsyncSimEngine, LlamaCppEngine, SimEngine
from overnight.lm.local import LLAMA_CPP_MISSING, bundled_model_path, load_llama, model_identity
from overnight.lm.sim import SimSpec

BackendKind = Literal["remote", "local", "sim"]


@dataclass(frozen=True)
class Backend:
    kind: BackendKind
    model: str
    lm_id: str
    lm: Any  # dspy.LM: compile's, answered from the response cache when OVERNIGHT_LM_CACHE_DIR is set
    price_in_per_1k: float | None = None
    price_out_per_1k: float | None = None
    engine: Any = None  # the custom engine, when there is one (the simulator counts its calls)
    uncached_lm: Any = None  # the same LM with the cache off, when `lm` caches

    @property
    def live_lm(self) -> Any:
        """The LM for the calls that measure it (predicts, so a canary's arms; `lm check`; the e2e check): never
        answered from the response cache, which would count a cached success for every repeated input and hide
        the errors and latency the gates are there to see."""
        return self.uncached_lm if self.uncached_lm is not None else self.lm

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float | None:
        """Cost from tokens and the configured prices; free for local and simulated models."""
        if self.kind != "remote":
            return 0.0
        if self.price_in_per_1k is None or self.price_out_per_1k is None:
            return None
        return tokens_in / 1000 * self.price_in_per_1k + tokens_out / 1000 * self.price_out_per_1k


def prepare_dspy(settings: Settings) -> Path | None:
    """Process-wide DSPy settings that must hold before the first LM call; the response cache's directory, if any."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no price-map download from the network
    directory = lm_cache_dir(settings)
    if directory is not None:
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(directory))
    else:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False, disk_cache_dir=None)
    return directory


def lm_cache_dir(settings: Settings) -> Path | None:
    """OVERNIGHT_LM_CACHE_DIR, made (mode 0700) when it is not there yet; `ConfigError` when it is not a directory,
    or when anyone but this user may write to it: DSPy's disk cache is diskcache, which unpickles what it finds
    there (CVE-2025-69872, no fix released), so write access to it is running code as overnight."""
    if not settings.lm_cache_dir:
        return None
    setting = f"OVERNIGHT_LM_CACHE_DIR={settings.lm_cache_dir}"
    path = Path(settings.lm_cache_dir).expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = path.stat()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot make or read it as a directory ({exc.strerror})") from None
    why = ("DSPy's cache unpickles what it finds there (diskcache, CVE-2025-69872), so whoever can write to it can "
           "run code as overnight")
    if found.st_uid != os.getuid():
        raise ConfigError(f"{setting}: owned by uid {found.st_uid}, not by this user ({os.getuid()}); {why}")
    if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{setting}: writable by group or others (mode {stat.filemode(found.st_mode)}); {why}. "
                          f"Use a directory of overnight's own (chmod go-w, or leave the setting unset: no cache)")
    return path


def _decode(settings: Settings) -> str:
    return f"temperature={settings.lm_temperature:g},max_tokens={settings.lm_max_tokens}"


def build_backend(settings: Settings) -> Backend:
    cache_dir = prepare_dspy(settings)
    name = settings.lm.strip()
    if name.startswith("sim:"):
        spec = SimSpec.parse(name[4:])
        engine = SimEngine(spec)
        lm = dspy.LM("sim/seeded", engine=engine, async_engine=AsyncSimEngine(engine), cache=False,
                     temperature=settings.lm_temperature, max_tokens=settings.lm_max_tokens)
        return Backend("sim", f"sim:{spec.canonical()}", f"sim:{spec.canonical()}|{_decode(settings)}", lm,
                       engine=engine)
    if name == "local":
        return _local(settings)
    _refuse_a_near_miss(name)
    return _remote(settings, name, cached=cache_dir is not None)


def _refuse_a_near_miss(name: str) -> None:
    """`sim`, `SIM:seed=1` or `Local` would go to litellm as a model name and fail each call after seconds with
    "LLM Provider NOT provided": said at once instead, naming what was meant."""
    lowered = name.lower()
    if lowered == "sim" or lowered.startswith("sim:"):
        raise ConfigError(f"OVERNIGHT_LM={name!r}: the simulator is `sim:<spec>`, in lower case, e.g. sim:seed=1 "
                          "(`sim:` for its defaults; the spec's keys are in runbook.md, LM backends)")
    if lowered == "local":
        raise ConfigError(f"OVERNIGHT_LM={name!r}: the bundled model is `local`, in lower case")


def backend_at_start(settings: Settings) -> tuple[Backend | None, str | None]:
    """`overnight serve`'s LM at start, without loading a model or calling one: (the backend to serve with, a
    problem to warn of).

    The simulator and a remote model are built here (objects only, no network call) and served from; the local
    model is only checked, and loaded on the first predict. A setting that cannot work (a bad simulator spec, no
    model name, a local model file that is not there) raises `ConfigError`. The local extra not being installed is
    the problem to warn of: the server still serves everything but predicts (a reader's review server needs no
    model).
    """
    if settings.lm.strip() != "local":
        return build_backend(settings), None
    lm_cache_dir(settings)  # raises when the cache directory is unsafe, for the local model too
    if settings.local_model_path:
        _local_model_path(settings)  # raises when the file is not there
    else:
        try:
            bundled_model_path()
        except ConfigError as exc:
            return None, exc.message
    if importlib.util.find_spec("llama_cpp") is None:
        return None, LLAMA_CPP_MISSING
    return None, None


def _local_model_path(settings: Settings) -> Path:
    if not settings.local_model_path:
        return bundled_model_path()
    path = Path(settings.local_model_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"OVERNIGHT_LOCAL_MODEL_PATH={settings.local_model_path}: no such file (a GGUF model file)")
    return path


def _local(settings: Settings) -> Backend:
    path = _local_model_path(settings)
    llama = load_llama(str(path), settings.local_ctx, settings.local_threads)
    model = model_identity(path)
    engine = LlamaCppEngine(llama, model_name=model, max_tokens=settings.lm_max_tokens,
                            temperature=settings.lm_temperature)
    lm = dspy.LM("local/gguf", engine=engine, async_engine=AsyncLlamaCppEngine(engine), cache=False,
                 temperature=settings.lm_temperature, max_tokens=settings.lm_max_tokens)
    return Backend("local", model, f"local:{model}|{_decode(settings)}", lm)


def _remote(settings: Settings, model: str, *, cached: bool) -> Backend:
    if not model:
        raise ConfigError("OVERNIGHT_LM is empty: set `local`, `sim:<spec>` or a litellm model such as "
                          "openai/gpt-4o-mini")
    client: dict[str, Any] = {"timeout": settings.lm_timeout_s}
    if settings.lm_api_base:
        client["api_base"] = settings.lm_api_base
    if settings.lm_api_key:
        client["api_key"] = settings.lm_api_key.get_secret_value()
    try:
        lm = dspy.LM(model, cache=cached, num_retries=settings.lm_retries,
                     temperature=settings.lm_temperature, max_tokens=settings.lm_max_tokens, **client)
    except ValueError as exc:  # DSPy refuses a model string it cannot route, e.g. "openai/" (no model)
        raise ConfigError(f"OVERNIGHT_LM={model!r}: {exc}") from None
    return Backend("remote", model, f"remote:{model}|{_decode(settings)}", lm,
                   settings.lm_price_in_per_1k, settings.lm_price_out_per_1k,
                   uncached_lm=lm.copy(cache=False) if cached else None)
