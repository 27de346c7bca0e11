"""The client's retries and error mapping, against respx (the edge), counting the calls."""

from __future__ import annotations

import httpx
import pytest
import respx

from overnight.client import OvernightClient
from overnight.errors import ApiUnreachable, LMCallFailed, OvernightError, RunLocked, RunNotFound

BASE = "http://api.test"
RUN = {"run_id": "r1", "status": "running", "actor": "a", "commit_sha": None, "base_url": None,
       "signature_ids": ["S.v1"], "lease_s": 60, "lease_expires_at": 1, "summary": {}, "links": {},
       "event_count": 1, "event_bytes": 1, "truncated": False, "started_at": 1, "ended_at": None}


def error(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"ok": False, "code": code, "error": f"{code} happened",
                                                         "status": status, "request_id": "rq"})


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def client(slept: list[float]) -> OvernightClient:
    return OvernightClient(BASE, "t" * 40, attempts=4, backoff_s=0.5, sleep=slept.append)


@respx.mock(assert_all_called=True)
def test_5xx_and_429_are_retried_with_one_key_and_one_request_id(respx_mock: respx.MockRouter,
                                                                  client: OvernightClient, slept: list[float]) -> None:
    route = respx_mock.post(f"{BASE}/api/v1/runs/r1/heartbeat").mock(side_effect=[
        error(503, "store_unavailable"), error(429, "conflict", **{"retry-after": "3"}),
        error(503, "server_busy", **{"retry-after": "1"}), httpx.Response(200, json=RUN)])
    run = client.heartbeat("r1")
    assert run.run_id == "r1"
    assert route.call_count == 4
    keys = {call.request.headers["idempotency-key"] for call in route.calls}
    ids = {call.request.headers["x-request-id"] for call in route.calls}
    assert len(keys) == 1
    assert len(ids) == 1
    # exponential backoff; the server's Retry-After when it is longer; never sooner than the backoff
    assert slept == [0.5, 3.0, 2.0]
    assert route.calls[0].request.headers["authorization"] == f"Bearer {'t' * 40}"


@respx.mock(assert_all_called=True)
def test_our_key_still_in_use_is_asked_again_when_its_claim_lapses_and_no_other_conflict_is(
        respx_mock: respx.MockRouter, client: OvernightClient, slept: list[float]) -> None:
    """`idempotency_key_in_use`: an earlier attempt of this very request still holds the key (its answer was lost,
    or its server died and the claim lapses at `Retry-After`); any other conflict is an answer, not retried."""
    beat = respx_mock.post(f"{BASE}/api/v1/runs/r1/heartbeat").mock(side_effect=[
        error(409, "idempotency_key_in_use", **{"retry-after": "40"}), httpx.Response(200, json=RUN)])
    assert client.heartbeat("r1").run_id == "r1"
    assert slept == [40.0]
    assert len({call.request.headers["idempotency-key"] for call in beat.calls}) == 1
    locked = respx_mock.post(f"{BASE}/api/v1/runs").mock(return_value=error(409, "run_locked"))
    with pytest.raises(RunLocked):
        client.start_run(signature_ids=["S.v1"])
    assert locked.call_count == 1
    assert slept == [40.0]


@respx.mock(assert_all_called=True)
def test_client_errors_are_not_retried_and_map_to_the_error_tree(respx_mock: respx.MockRouter,
                                                                 client: OvernightClient) -> None:
    route = respx_mock.get(f"{BASE}/api/v1/runs/nope").mock(return_value=error(404, "run_not_found"))
    with pytest.raises(RunNotFound, match="run_not_found happened") as caught:
        client.get_run("nope")
    assert route.call_count == 1
    assert caught.value.details["status"] == 404
    assert "idempotency-key" not in route.calls[0].request.headers  # GETs carry none


@respx.mock(assert_all_called=True)
def test_an_lm_failure_on_predict_is_a_measurement_not_retried(respx_mock: respx.MockRouter,
                                                               client: OvernightClient) -> None:
    route = respx_mock.post(f"{BASE}/api/v1/signatures/S.v1/predict").mock(return_value=error(502, "lm_call_failed"))
    with pytest.raises(LMCallFailed):
        client.predict("S.v1", {"message": "hi"}, request_key="k")
    assert route.call_count == 1


@respx.mock(assert_all_called=True)
def test_an_unreachable_api_is_retried_then_reported(respx_mock: respx.MockRouter, client: OvernightClient,
                                                     slept: list[float]) -> None:
    route = respx_mock.get(f"{BASE}/readyz").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ApiUnreachable, match="did not answer GET /readyz after 4 attempts"):
        client.ready()
    assert route.call_count == 4
    assert slept == [0.5, 1.0, 2.0]


@respx.mock(assert_all_called=True)
def test_a_5xx_that_never_clears_and_an_unknown_code(respx_mock: respx.MockRouter, client: OvernightClient) -> None:
    busy = respx_mock.get(f"{BASE}/api/v1/runs/r1").mock(return_value=error(503, "store_unavailable"))
    with pytest.raises(OvernightError) as caught:
        client.get_run("r1")
    assert caught.value.code == "store_unavailable"
    assert busy.call_count == 4
    odd = respx_mock.get(f"{BASE}/api/v1/compile-reports/x").mock(return_value=httpx.Response(418, text="teapot"))
    with pytest.raises(OvernightError, match="HTTP 418"):
        client.get_compile_report("x")
    assert odd.call_count == 1
