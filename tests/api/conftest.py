from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.factories import LiveServer, SteppingClock, live_server


@pytest.fixture
def api(db_url: str, clock: SteppingClock) -> Iterator[LiveServer]:
    """The real app with a stepping clock, on a loopback port, over the test's database."""
    with live_server(db_url, clock=clock, lease_s=60) as server:
        yield server
