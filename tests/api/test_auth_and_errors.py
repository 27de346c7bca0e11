"""Auth, the one error shape and request ids, over real HTTP on loopback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from overnight.api.app import route_inventory
from overnight.registry import Registry
from overnight.store.migrate import head_revision, serves_from
from tests.factories import ADMIN_TOKEN, READ_TOKEN, SERVE_TOKEN, LiveServer, SteppingClock, live_server

ERROR_KEYS = {"ok", "code", "error", "status", "request_id"}


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == status, body
    assert body.keys() >= ERROR_KEYS
    assert body["ok"] is False
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["error"], str)
    assert body["error"]
    if code is not None:
        assert body["code"] == code
    return body


def concrete(path: str) -> str:
    return path.replace("{run_id}", "no-such-run")


def api_routes(server: LiveServer) -> list[tuple[str, str, frozenset[str]]]:
    """The inventory, checked against what the app really serves (its OpenAPI paths)."""
    inventory = route_inventory()
    with server.client(token=None) as client:
        paths = client.get("/openapi.json").json()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    # the /review pages are HTML for people, kept out of the API's schema (tests/api/test_review_pages.py)
    assert served == {(method, path) for method, path, _ in inventory if not path.startswith("/review")}
    return inventory


def test_health_needs_no_token_and_readyz_checks_the_store(api: LiveServer) -> None:
    with api.client(token=None) as client:
        assert client.get("/healthz").json() == {"ok": True}
        ready = client.get("/readyz").json()
    assert ready["ok"] is True
    assert ready["schema_revision"] == head_revision()


def test_readyz_says_which_way_the_schema_differs_from_the_servers(api: LiveServer, db_url: str) -> None:
    """A schema behind the server wants `overnight db upgrade`; one a newer overnight made wants that version here
    (an upgrade by this one would fail)."""
    engine = create_engine(db_url, poolclass=NullPool)
    answers = {}
    try:
        for revision in ("0099", "0002"):
            _schema_at(engine, revision, serves_from=revision)
            with api.client(token=None) as client:
                answers[revision] = assert_error_shape(client.get("/readyz"), 503, "store_unavailable")["error"]
    finally:
        _schema_at(engine, head_revision(), serves_from=serves_from(head_revision()))
        engine.dispose()
    assert answers == {
        "0099": f"store schema is at 0099, newer than this server knows ({head_revision()}): a newer overnight "
                "upgraded it; run that version here",
        "0002": f"store schema is at 0002, this server needs {head_revision()}: run `overnight db upgrade`"}


def _schema_at(engine: Engine, revision: str, *, serves_from: str) -> None:
    """The store as an upgrade to `revision` would leave it, saying code from `serves_from` on may serve it."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
        conn.execute(text("UPDATE overnight_schema SET serves_from = :v"), {"v": serves_from})


def test_a_rolling_upgrade_leaves_the_older_servers_serving_a_newer_schema_that_says_they_may(db_url: str) -> None:
    """`overnight db upgrade` (or the first new server's start) with the new version took every server of the old
    one out of service — /readyz 503 until it was restarted — so a rolling restart served from the new servers
    alone. A newer schema whose upgrade says code of this version may serve it is served: ready, predicts answered,
    and `code_revision` in /readyz says which servers are the older ones."""
    engine = create_engine(db_url, poolclass=NullPool)
    with live_server(db_url, lm="sim:seed=1") as old:  # a server of this version, running through the upgrade
        try:
            _schema_at(engine, "0099", serves_from=head_revision())
            with old.client(token=None) as client:
                ready = client.get("/readyz")
            with old.client() as client:
                answered = client.post("/api/v1/signatures/SelectTool.v1/predict",
                                       json={"input": Registry().get("SelectTool.v1").sample_input})
            with live_server(db_url, lm="sim:seed=1") as restarted, restarted.client(token=None) as client:
                started = client.get("/readyz")  # one of them restarts, still on this version
            _schema_at(engine, "0099", serves_from="0098")  # a newer schema this version may not serve
            with old.client(token=None) as client:
                refused = client.get("/readyz")
        finally:
            _schema_at(engine, head_revision(), serves_from=serves_from(head_revision()))
            engine.dispose()
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ok": True, "store": ready.json()["store"], "schema_revision": "0099",
                            "code_revision": head_revision()}
    assert answered.status_code == 200, answered.text
    assert (started.status_code, started.json()["schema_revision"]) == (200, "0099")
    assert assert_error_shape(refused, 503, "store_unavailable")["error"].startswith("store schema is at 0099, newer")


def test_every_api_route_refuses_no_token_with_401_in_the_one_shape(api: LiveServer) -> None:
    routes = [r for r in api_routes(api) if r[1].startswith("/api/")]
    assert len(routes) >= 7
    with api.client(token=None) as client:
        for method, path, _ in routes:
            response = client.request(method, concrete(path), json={})
            assert_error_shape(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_token_is_401_and_never_echoed(api: LiveServer) -> None:
    near_miss = ADMIN_TOKEN[:-1] + "Z"
    with api.client(token=near_miss) as client:
        response = client.get("/api/v1/runs")
    body = assert_error_shape(response, 401, "unauthorized")
    assert near_miss not in response.text
    assert body["error"] == "invalid bearer token"


@pytest.mark.parametrize(("token", "method", "path", "status"), [
    (READ_TOKEN, "GET", "/api/v1/runs", 200),
    (READ_TOKEN, "POST", "/api/v1/runs", 403),
    (SERVE_TOKEN, "GET", "/api/v1/runs", 403),
    (SERVE_TOKEN, "POST", "/api/v1/runs", 403),
    (ADMIN_TOKEN, "GET", "/api/v1/runs", 200),
    (ADMIN_TOKEN, "POST", "/api/v1/runs", 201),
])
def test_roles(api: LiveServer, token: str, method: str, path: str, status: int) -> None:
    with api.client(token=token) as client:
        response = client.request(method, path, json={"signature_ids": ["SelectTool.v1"]})
    if status == 403:
        assert_error_shape(response, 403, "forbidden")
    else:
        assert response.status_code == status, response.text


SERVED = {("POST", "/api/v1/signatures/{signature_id}/predict")}  # the one route the serve role may call
ANY_ROLE = {("GET", "/api/v1/whoami")}  # every token may ask who it is


def test_every_mutating_route_needs_admin_and_every_read_allows_read(api: LiveServer) -> None:
    for method, path, roles in api_routes(api):
        if not path.startswith("/api/"):
            continue
        if (method, path) in ANY_ROLE:
            assert roles == frozenset({"admin", "read", "serve"}), (method, path)
            continue
        if (method, path) in SERVED:
            assert roles == frozenset({"admin", "serve"}), (method, path)
            with api.client(token=READ_TOKEN) as client:
                assert_error_shape(client.request(method, concrete(path), json={}), 403, "forbidden")
            continue
        assert roles == (frozenset({"admin"}) if method == "POST" else frozenset({"admin", "read"})), (method, path)
        with api.client(token=SERVE_TOKEN) as client:
            assert_error_shape(client.request(method, concrete(path), json={}), 403, "forbidden")


def test_unknown_route_wrong_method_and_bad_input_use_the_one_shape(api: LiveServer) -> None:
    with api.client() as client:
        assert_error_shape(client.get("/api/v1/nothing-here"), 404, "not_found")
        assert_error_shape(client.get("/"), 404, "not_found")
        assert_error_shape(client.delete("/api/v1/runs"), 405, "method_not_allowed")
        assert_error_shape(client.get("/api/v1/runs/no-such-run"), 404, "run_not_found")
        body = assert_error_shape(client.post("/api/v1/runs", json={"signature_ids": []}), 422, "validation_error")
        assert body["details"]["errors"][0]["field"] == "body.signature_ids"
        bad_json = client.post("/api/v1/runs", content=b"{not json", headers={"content-type": "application/json"})
        assert_error_shape(bad_json, 422, "validation_error")
        assert_error_shape(client.get("/api/v1/runs", params={"limit": 0}), 422, "validation_error")
        assert_error_shape(client.get("/api/v1/runs/bad id!"), 422, "validation_error")


def test_oversize_bodies_are_413_declared_or_streamed(db_url: str, clock: SteppingClock) -> None:
    with live_server(db_url, clock=clock, max_body_bytes=2048) as server, server.client() as client:
        big = {"signature_ids": ["a"], "commit_sha": "x" * 4000}
        assert_error_shape(client.post("/api/v1/runs", json=big), 413, "payload_too_large")

        def chunks():  # no content-length: the limit is enforced while reading
            yield b'{"signature_ids": ["a"], "base_url": "'
            for _ in range(10):
                yield b"y" * 512
            yield b'"}'

        streamed = client.post("/api/v1/runs", content=chunks(), headers={"content-type": "application/json"})
        assert_error_shape(streamed, 413, "payload_too_large")
        assert client.get("/api/v1/runs").json()["runs"] == []


def test_unhandled_error_is_500_in_the_one_shape_without_a_traceback(db_url: str, clock: SteppingClock) -> None:
    def add_crashing_route(app: FastAPI) -> None:
        @app.get("/crash")
        def crash() -> None:
            raise RuntimeError("secret internals")

    with live_server(db_url, clock=clock, customize=add_crashing_route) as server, server.client() as client:
        response = client.get("/crash")
    body = assert_error_shape(response, 500, "internal_error")
    assert "secret internals" not in response.text
    assert "Traceback" not in body["error"]


def test_request_id_is_echoed_or_generated(api: LiveServer) -> None:
    with api.client() as client:
        echoed = client.get("/api/v1/runs", headers={"x-request-id": "agent-42.attempt:1"})
        generated = client.get("/api/v1/runs")
        junk = client.get("/api/v1/runs", headers={"x-request-id": "bad id\twith spaces"})
        failed = client.get("/api/v1/runs/nope", headers={"x-request-id": "trace-7"})
    assert echoed.headers["x-request-id"] == "agent-42.attempt:1"
    assert len(generated.headers["x-request-id"]) == 32
    assert junk.headers["x-request-id"] != "bad id\twith spaces"
    assert failed.json()["request_id"] == "trace-7"


def test_every_answer_is_nosniff_and_never_stored_by_a_cache(db_url: str, clock: SteppingClock) -> None:
    """Receipts hold model outputs and runs hold evidence: no proxy or browser cache keeps them, and no answer is
    content-sniffed — from the routes, from errors the middleware renders, and from idempotent replays alike."""
    with live_server(db_url, clock=clock, max_body_bytes=2048) as server, server.client() as client:
        start = {"signature_ids": ["SelectTool.v1"], "run_id": "r1"}
        answers = {
            "health": client.get("/healthz"),
            "list": client.get("/api/v1/runs"),
            "not found": client.get("/api/v1/runs/nope"),
            "no route": client.get("/api/v1/nothing-here"),
            "too large": client.post("/api/v1/runs", json={**start, "commit_sha": "x" * 4000}),
            "created": client.post("/api/v1/runs", json=start, headers={"idempotency-key": "k1"}),
            "replayed": client.post("/api/v1/runs", json=start, headers={"idempotency-key": "k1"}),
            "schema": client.get("/openapi.json"),
        }
    assert answers["replayed"].headers["idempotent-replayed"] == "true"
    for name, answer in answers.items():
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"], name
        assert answer.headers.get_list("cache-control") == ["no-store"], name
