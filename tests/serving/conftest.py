from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.factories import LiveServer, SteppingClock, live_server
from tests.serving.helpers import TRUTH


@pytest.fixture
def api(db_url: str, clock: SteppingClock) -> Iterator[LiveServer]:
    """The real app on a loopback port with the seeded simulator as its LM (see `helpers.TRUTH`)."""
    with live_server(db_url, clock=clock, lm=TRUTH) as server:
        yield server
