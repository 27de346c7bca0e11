"""The security inventory: every route the app serves, with the role it requires, written out here by hand.

The app's real routes (however they were added) are compared with this table, so a new route fails this test
until someone decides its role and writes it down; and a route that answers without a role check at all is
named by `undeclared_routes`. Both are shown failing on a throwaway app.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from overnight.api.app import PUBLIC_ROUTES, create_app, route_inventory, undeclared_routes
from overnight.api.auth import Require
from overnight.domain.runs import RunStart
from tests.factories import ADMIN_TOKEN, READ_TOKEN, SERVE_TOKEN, make_settings, make_store

PUBLIC: frozenset[str] = frozenset()
ADMIN = frozenset({"admin"})
READ = frozenset({"admin", "read"})
SERVE = frozenset({"admin", "serve"})
ANY = frozenset({"admin", "read", "serve"})

INVENTORY = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/api/v1/whoami"): ANY,
    ("POST", "/api/v1/lm:check"): ADMIN,
    ("POST", "/api/v1/store:prune"): ADMIN,
    ("GET", "/api/v1/runs"): READ,
    ("POST", "/api/v1/runs"): ADMIN,
    ("GET", "/api/v1/runs/{run_id}"): READ,
    ("GET", "/api/v1/runs/{run_id}/events"): READ,
    ("GET", "/api/v1/runs/{run_id}/review"): READ,
    ("POST", "/api/v1/runs/{run_id}/events"): ADMIN,
    ("POST", "/api/v1/runs/{run_id}/finish"): ADMIN,
    ("POST", "/api/v1/runs/{run_id}/heartbeat"): ADMIN,
    ("GET", "/api/v1/signatures"): READ,
    ("GET", "/api/v1/signatures/{signature_id}"): READ,
    ("GET", "/api/v1/signatures/{signature_id}/examples"): READ,
    ("POST", "/api/v1/signatures/{signature_id}/examples:import"): ADMIN,
    ("POST", "/api/v1/signatures/{signature_id}/examples:validate"): ADMIN,
    ("GET", "/api/v1/signatures/{signature_id}/snapshots/{dataset_hash}"): READ,
    ("POST", "/api/v1/signatures/{signature_id}/compile"): ADMIN,
    ("GET", "/api/v1/compile-reports/{report_id}"): READ,
    ("GET", "/api/v1/artifacts"): READ,
    ("GET", "/api/v1/artifacts/{compiled_id}"): READ,
    ("GET", "/api/v1/artifacts/{compiled_id}/default"): READ,
    ("GET", "/api/v1/artifacts/{compiled_id}/diff/{other_id}"): READ,
    ("POST", "/api/v1/signatures/{signature_id}/predict"): SERVE,
    ("GET", "/api/v1/receipts"): READ,
    ("GET", "/api/v1/receipts/{receipt_id}"): READ,
    ("POST", "/api/v1/signatures/{signature_id}/canary:start"): ADMIN,
    ("POST", "/api/v1/signatures/{signature_id}/canary:stop"): ADMIN,
    ("GET", "/api/v1/signatures/{signature_id}/canary"): READ,
    ("GET", "/api/v1/canaries/{canary_id}"): READ,
    ("GET", "/api/v1/status"): READ,
    ("POST", "/api/v1/signatures/{signature_id}/promote"): ADMIN,
    ("POST", "/api/v1/signatures/{signature_id}/rollback"): ADMIN,
    ("GET", "/api/v1/signatures/{signature_id}/aliases/history"): READ,
    ("GET", "/review"): READ,
    ("GET", "/review/runs/{run_id}"): READ,
    ("GET", "/review/runs/{run_id}/stream"): READ,
    ("GET", "/review/signatures/{signature_id}"): READ,
    ("GET", "/review/artifacts/{compiled_id}/diff/{other_id}"): READ,
    ("GET", "/review/sign-in"): PUBLIC,
    ("POST", "/review/sign-in"): PUBLIC,
    ("POST", "/review/sign-out"): PUBLIC,
}
DOCS = {(m, p) for m, p in PUBLIC_ROUTES if p in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}


def app_on(tmp_path: Path) -> FastAPI:
    store = make_store(f"sqlite:///{tmp_path / 'overnight.db'}")
    return create_app(make_settings(f"sqlite:///{tmp_path / 'overnight.db'}"), store)


def served(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    return {(m, p): roles for m, p, roles in route_inventory(app) if (m, p) not in DOCS}


def test_every_route_the_app_serves_is_in_the_inventory_with_its_role(tmp_path: Path) -> None:
    app = app_on(tmp_path)
    assert served(app) == INVENTORY
    assert undeclared_routes(app) == []


def test_a_route_added_without_a_role_fails_the_inventory(tmp_path: Path) -> None:
    app = app_on(tmp_path)

    @app.get("/api/v1/oops")
    def oops() -> dict[str, bool]:
        return {"unprotected": True}

    assert ("GET", "/api/v1/oops") not in INVENTORY
    assert served(app) != INVENTORY  # the table check above would fail …
    assert undeclared_routes(app) == [("GET", "/api/v1/oops")]  # … and so would the role check


def test_a_new_route_with_a_role_still_needs_its_line_in_the_table(tmp_path: Path) -> None:
    app = app_on(tmp_path)
    app.add_api_route("/api/v1/new-thing", lambda: {}, methods=["POST"], dependencies=[])
    app.add_api_route("/api/v1/guarded", lambda: {}, methods=["GET"])
    assert set(undeclared_routes(app)) == {("POST", "/api/v1/new-thing"), ("GET", "/api/v1/guarded")}
    declared = FastAPI()
    from fastapi import Depends  # noqa: PLC0415

    declared.add_api_route("/api/v1/guarded", lambda: {}, methods=["GET"], dependencies=[Depends(Require("read"))])
    assert undeclared_routes(declared) == []
    assert [r for r in route_inventory(declared) if (r[0], r[1]) not in DOCS] == [("GET", "/api/v1/guarded", READ)]


def test_the_roles_in_the_table_are_the_roles_the_server_enforces(tmp_path: Path) -> None:
    """For each role, every /api route outside its set answers 403 in the one shape; inside it, not 401/403."""
    from tests.factories import live_server  # noqa: PLC0415

    # the simulator: `lm:check` with the default LM loads the local model, which took more than the client's 5 s
    # on a loaded CI machine (a timeout, not a role) — the roles are the subject here
    with live_server(f"sqlite:///{tmp_path / 'live.db'}", lm="sim:seed=1") as live:
        for token, role in ((READ_TOKEN, "read"), (SERVE_TOKEN, "serve"), (ADMIN_TOKEN, "admin")):
            with httpx.Client(base_url=live.base_url, headers={"authorization": f"Bearer {token}"}) as client:
                for (method, path), roles in INVENTORY.items():
                    if not path.startswith("/api/"):
                        continue
                    concrete = path.replace("{run_id}", "r1").replace("{signature_id}", "SelectTool.v1")
                    concrete = concrete.replace("{compiled_id}", "a" * 64).replace("{other_id}", "b" * 64)
                    concrete = concrete.replace("{report_id}", "cr-x").replace("{receipt_id}", "x")
                    concrete = concrete.replace("{dataset_hash}", "c" * 64)
                    answer = client.request(method, concrete, json={})
                    if role in roles:
                        assert answer.status_code not in (401, 403), (role, method, path, answer.text)
                    else:
                        assert answer.status_code == 403, (role, method, path)
                        assert answer.json()["code"] == "forbidden"


def test_every_mutating_route_refuses_an_oversize_body_with_413_and_writes_nothing(tmp_path: Path) -> None:
    from tests.factories import live_server  # noqa: PLC0415

    posts = [path for (method, path) in INVENTORY if method == "POST"]
    with live_server(f"sqlite:///{tmp_path / 'live.db'}", max_body_bytes=4096) as live, \
            httpx.Client(base_url=live.base_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        live.store.start_run(request=RunStart(run_id="r1", signature_ids=["SelectTool.v1"]), actor="ops-agent",
                             default_lease_s=600)
        before = live.store.get_run(run_id="r1").event_count
        for path in posts:
            concrete = path.replace("{run_id}", "r1").replace("{signature_id}", "SelectTool.v1")
            # a declared length is refused before anything runs; a streamed body (no length) when it is read —
            # routes that take no body (heartbeat, lm:check, sign-out) never read one: nothing to refuse
            streamed = () if concrete.endswith(("/heartbeat", "lm:check", "/sign-out")) else (None,)
            for body in ({"reason": "x" * 10_000}, *streamed):
                if body is not None:
                    answer = client.post(concrete, json=body)
                else:
                    answer = client.post(concrete, content=(b"y" * 1024 for _ in range(10)),
                                         headers={"content-type": "application/json"})
                assert answer.status_code == 413, (path, answer.status_code, answer.text[:200])
                assert answer.json()["code"] == "payload_too_large"
        assert live.store.get_run(run_id="r1").event_count == before
        assert live.store.list_runs(limit=10)[0].run_id == "r1"
        assert len(live.store.list_runs(limit=10)) == 1
