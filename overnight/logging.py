"""structlog, configured once: console renderer on a TTY, JSON lines otherwise.

`request_id`, `run_id` and `signature_id` are bound through contextvars by whoever knows them. Every known
secret (token values, DSN passwords) is replaced by `[redacted]` in every log line, as a second line of defence
behind never logging them at all. Standard-library loggers (uvicorn, alembic) go through the same renderer.
Must not import the store or the API.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

REDACTED = "[redacted]"


class _Redactor:
    """A structlog processor that masks every registered secret inside rendered values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        for key, value in event.items():
            event[key] = self._mask(value)
        return event

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._mask(v) for v in value]
        return value


@functools.cache
def _nowhere() -> TextIO:
    """Where logs go when the process has no stderr (a daemonizer closed fd 2): nowhere, rather than failing the
    command at its start; what a night did is on its run's events either way."""
    return open(os.devnull, "w", encoding="utf-8")  # one for the life of the process, however often logging is set up


def configure_logging(
    *, fmt: str = "auto", level: str = "info", stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> None:
    """Configure structlog and the standard library's root logger to write one format to `stream`."""
    out = stream or sys.stderr or _nowhere()
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _Redactor(secrets),
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True  # RequestContext logs each request, with its id
    logging.getLogger("alembic").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo `configure_logging` (tests call this between cases)."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers[:] = []
    logging.getLogger("uvicorn.access").disabled = False


def get_logger(name: str) -> Any:
    """A structlog logger named after its module."""
    return structlog.get_logger(name)
