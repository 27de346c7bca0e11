"""Settings: the one `Settings` class, read from `OVERNIGHT_*` environment variables.

Tests build it with keyword arguments. Secrets (tokens, DSNs) are `SecretStr` and never printed.
Must not import the store, the API or DSPy.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from overnight.errors import ConfigError

LogFormat = Literal["auto", "json", "console"]


class Settings(BaseSettings):
    """Every knob overnight has. Each field is documented in runbook.md (a test checks)."""

    model_config = SettingsConfigDict(env_prefix="OVERNIGHT_", extra="forbid")

    db_url: SecretStr = Field(
        default=SecretStr("sqlite:///./overnight.db"),
        description="SQLAlchemy URL of the store: sqlite:///path or postgresql+psycopg://user:pw@host/db",
    )
    tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Named bearer tokens: 'name:role:secret,…' with role admin, serve or read",
    )
    token: SecretStr | None = Field(
        default=None,
        description="The bearer secret `overnight run` sends to a remote API (--base-url); needs the admin role",
    )
    client_attempts: int = Field(default=6, ge=1, le=20,
                                 description="Tries per API call by the runner's client (transport errors, 429, 5xx)")
    dev: bool = Field(default=False, description="Allow tokens shorter than 32 characters (never in prod)")
    host: str = Field(default="127.0.0.1", description="Address `overnight serve` binds")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `overnight serve` binds")
    lease_s: int = Field(default=300, ge=1, le=86_400, description="Run lease length without a heartbeat")
    idempotency_lease_s: int = Field(
        default=60, ge=1, le=3600,
        description="How long an Idempotency-Key claim holds without its server renewing it (every quarter of it)",
    )
    max_events_per_run: int = Field(default=5000, ge=10, description="Events a run may hold")
    max_event_bytes: int = Field(default=65_536, ge=1024, description="Largest single event (canonical JSON)")
    max_run_event_bytes: int = Field(
        default=64 * 1024 * 1024, ge=65_536, description="Total event bytes a run may hold"
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Largest request body")
    sse_poll_ms: int = Field(default=200, ge=10, le=10_000, description="How often a followed stream polls")
    db_busy_timeout_ms: int = Field(default=30_000, ge=0, description="SQLite busy timeout")
    db_pool_timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="How long a request waits for a free store connection before 503 store_unavailable",
    )
    lm: str = Field(
        default="local",
        description="LM backend: local (bundled SmolLM2), sim:<spec>, or a litellm model like openai/gpt-4o-mini",
    )
    lm_api_base: str | None = Field(default=None, description="Base URL of an OpenAI-compatible server")
    lm_api_key: SecretStr | None = Field(default=None, description="API key for the remote LM")
    lm_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Timeout of one remote LM call")
    lm_retries: int = Field(default=3, ge=0, le=20, description="Retries of a remote call on rate limits and 5xx")
    lm_max_tokens: int = Field(default=256, ge=1, le=32_768, description="Largest answer, in tokens")
    lm_temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature")
    lm_cache_dir: str | None = Field(
        default=None, description="Directory for DSPy's LM response cache; unset = no cache at all (never $HOME)"
    )
    lm_price_in_per_1k: float | None = Field(default=None, ge=0, description="USD per 1,000 prompt tokens")
    lm_price_out_per_1k: float | None = Field(default=None, ge=0, description="USD per 1,000 completion tokens")
    local_model_path: str | None = Field(default=None, description="A GGUF file to use instead of bundled SmolLM2")
    local_threads: int = Field(default=2, ge=1, le=256, description="CPU threads for the local model")
    local_ctx: int = Field(default=4096, ge=512, le=131_072, description="Context window of the local model")
    compile_concurrency: int = Field(default=4, ge=1, le=64, description="Parallel LM calls while compiling")
    predict_concurrency: int = Field(
        default=128, ge=1, le=4096,
        description="Predicts one server process runs at once (each holds a thread for its LM call); more wait",
    )
    predict_queue_timeout_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="How long a predict waits for one of those slots before 503 server_busy (shed, not served late)",
    )
    log_format: LogFormat = Field(default="auto", description="auto (console on a TTY), json or console")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level")

    @property
    def store_kind(self) -> str:
        """`sqlite` or `postgresql`, from the URL's scheme."""
        return self.db_url.get_secret_value().split(":", 1)[0].split("+", 1)[0]

    def secret_values(self) -> list[str]:
        """Values that must never appear in a log line: every token secret and the DSN's password."""
        secrets = [part.split(":", 2)[2] for part in self.tokens.get_secret_value().split(",") if part.count(":") >= 2]
        password = urlsplit(self.db_url.get_secret_value()).password
        api_key = self.lm_api_key.get_secret_value() if self.lm_api_key else ""
        token = self.token.get_secret_value() if self.token else ""
        return [s for s in [*secrets, password or "", api_key, token] if s]


PREFIX = "OVERNIGHT_"
NOT_SETTINGS = ("OVERNIGHT_TEST_", "OVERNIGHT_BENCH_")  # the test suite's and the benchmarks' own variables


def load_settings() -> Settings:
    """The settings from the environment, or a `ConfigError` naming every unknown or invalid `OVERNIGHT_*`
    variable by the name the operator set (pydantic-settings ignores unknown ones: a misspelt OVERNIGHT_DB_URL
    would send the night to ./overnight.db). Values of unknown or secret variables are never shown."""
    known = [PREFIX + name.upper() for name in Settings.model_fields]
    names = {name.upper() for name in os.environ}  # pydantic-settings reads them case-insensitively
    unknown = sorted(n for n in names if n.startswith(PREFIX) and n not in known and not n.startswith(NOT_SETTINGS))
    if unknown:
        raise ConfigError("; ".join(_unknown(name, known) for name in unknown)
                          + ": overnight reads only the OVERNIGHT_* variables listed in runbook.md (Settings); "
                            "fix the name or unset it")
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError("invalid settings: " + "; ".join(_invalid(error) for error in exc.errors())) from None


def _unknown(name: str, known: list[str]) -> str:
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"unknown setting {name}" + (f" (did you mean {near[0]}?)" if near else "")


def _invalid(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    if field not in Settings.model_fields:
        return str(error["msg"])
    annotation = Settings.model_fields[field].annotation
    shown = "" if SecretStr in (annotation, *get_args(annotation)) else f"={error['input']!r}"
    return f"{PREFIX}{field.upper()}{shown}: {error['msg']}"
