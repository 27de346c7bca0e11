"""No token value ever appears in a log line, a response body, a response header or a cookie (the review
pages' sign-in included)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx

from overnight.logging import configure_logging, get_logger
from tests.factories import ADMIN_TOKEN, ALL_TOKENS, READ_TOKEN, SERVE_TOKEN, serve_process

DB_PASSWORD = "pg-" + "P" * 30


def test_tokens_never_reach_logs_or_responses(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'overnight.db'}"
    near_miss = ADMIN_TOKEN[:-2] + "xy"
    seen: list[httpx.Response] = []
    with serve_process(db_url, tmp_path / "serve.log") as server:
        with server.client() as admin:
            run_id = admin.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}).json()["run"]["run_id"]
            seen += [
                admin.post(f"/api/v1/runs/{run_id}/events", json={"kind": "x.y", "phase": "x"}),
                admin.post("/api/v1/runs", json={"signature_ids": f"Bearer {ADMIN_TOKEN}"}),  # 422 must not echo
                admin.post("/api/v1/runs", json={"signature_ids": ["SupportTriage.v1"]},
                           headers={"idempotency-key": "k"}),
                admin.get("/api/v1/runs/missing"),
                admin.get(f"/api/v1/runs/{run_id}/events", params={"follow": "false"}),
            ]
        for token in (READ_TOKEN, SERVE_TOKEN, near_miss, f"{ADMIN_TOKEN} extra", "-"):
            with server.client(token=None) as anon:
                headers = {"authorization": f"Bearer {token}"}
                seen += [anon.post("/api/v1/runs", json={"signature_ids": ["c"]}, headers=headers),
                         anon.get("/api/v1/runs", headers=headers)]
        for token in (READ_TOKEN, SERVE_TOKEN, near_miss, ADMIN_TOKEN):  # the review pages' sign-in form
            with server.client(token=None, follow_redirects=True) as browser:
                form = {"content": f"token={token}&next=/review/runs/{run_id}",
                        "headers": {"content-type": "application/x-www-form-urlencoded"}}
                seen += [browser.post("/review/sign-in", **form), browser.get("/review"),
                         browser.get("/review/signatures/a")]
        log = server.log()
    assert "request_finished" in log  # the log really was captured
    assert len(seen) == 27
    for token in (*ALL_TOKENS, near_miss):
        assert token not in log
        for response in seen:
            assert token not in response.text
            assert token not in str(response.headers)


def test_the_log_redactor_masks_known_secrets_even_if_code_logs_them() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, secrets=[ADMIN_TOKEN, DB_PASSWORD])
    get_logger("test").error("oops", header=f"Bearer {ADMIN_TOKEN}", dsn=f"postgresql://u:{DB_PASSWORD}@h/db",
                             nested={"list": [ADMIN_TOKEN]})
    text = stream.getvalue()
    assert "oops" in text
    assert ADMIN_TOKEN not in text
    assert DB_PASSWORD not in text
    assert text.count("[redacted]") == 3
