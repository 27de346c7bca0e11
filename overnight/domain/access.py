"""Who a token is, as the API tells its holder (`GET /api/v1/whoami`). Must not import I/O modules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Identity(BaseModel):
    name: str
    role: Literal["admin", "serve", "read"]
