"""Who a token is, as the API tells its holder (`GET /api/v1/whoami`), and what that API can do that earlier ones
could not. Must not import I/O modules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# What a runner needs of its API beyond the first release's, by name, each with what it is for. This version's
# server has every one and says so; a runner refuses an API that lacks one before it starts anything. A feature
# the runner comes to need is added here (and made by the server) in the same change.
API_FEATURES: dict[str, str] = {
    "canary_by_id": "GET /api/v1/canaries/{canary_id}, which the runner follows its canary with",
    "compile_max_seconds": "max_seconds in its compile request, which holds a compile to the run's deadline",
}


class Identity(BaseModel):
    name: str
    role: Literal["admin", "serve", "read"]
    features: list[str] | None = Field(
        default=None, description="What this API can do that earlier versions could not (`API_FEATURES`); absent "
                                  "from an API from before it said")
