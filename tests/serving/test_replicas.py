"""Two API processes on one store: 400 concurrent predicts, counters equal to the receipts written, and a split
that matches the rollout (the sample-ratio test)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from overnight.domain.gates import srm_gate
from tests.factories import SERVE_TOKEN, serve_process
from tests.serving.helpers import SIG, TRUTH, compiled, holdout, predict


def test_two_processes_400_concurrent_predicts_counters_match_receipts(db_url: str, tmp_path: Path) -> None:
    rows, env = holdout(), {"OVERNIGHT_LM": TRUTH}
    with serve_process(db_url, tmp_path / "one.log", **env) as one, \
            serve_process(db_url, tmp_path / "two.log", **env) as two:
        with one.client() as admin:
            report = compiled(admin)
            canary = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={
                "candidate_id": report["best_compiled_id"], "steps": [30], "min_samples": [5000]}).json()
        apps = [one.client(token=SERVE_TOKEN), two.client(token=SERVE_TOKEN)]
        try:
            with ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(lambda i: predict(apps[i % 2], rows[i % len(rows)], f"u-{i}"), range(400)))
        finally:
            for app in apps:
                app.close()
        with one.client() as admin:
            view = admin.get(f"/api/v1/signatures/{SIG}/canary").json()
            receipts, after = [], None
            while True:
                page = admin.get("/api/v1/receipts", params={"canary": canary["canary_id"], "limit": 1000,
                                                             **({"after": after} if after else {})}).json()
                receipts += page["receipts"]
                after = page["next_after"]
                if after is None:
                    break
    assert [a.status_code for a in answers] == [200] * 400
    arms = view["canary"]["arms"]
    for arm in ("candidate", "control"):
        mine = [r for r in receipts if r["arm"] == arm]
        assert arms[arm]["samples"] == len(mine)
        assert arms[arm]["errors"] == sum(not r["ok"] for r in mine)
        assert arms[arm]["labeled"] == sum(r["correct"] is not None for r in mine)
        assert arms[arm]["correct"] == sum(bool(r["correct"]) for r in mine)
        assert arms[arm]["latency_sum_ms"] == sum(r["latency_ms"] for r in mine)
        assert sum(arms[arm]["latency_buckets"].values()) == len(mine)
    assert len(receipts) == 400 == arms["candidate"]["samples"] + arms["control"]["samples"]
    assert {r["request_id"] for r in receipts} == {a.headers["x-request-id"] for a in answers}
    split = srm_gate(candidate_samples=arms["candidate"]["samples"], control_samples=arms["control"]["samples"],
                     candidate_share=0.30, threshold_p=1e-6)  # a fair split fails one run in a million
    print(f"\n400 predicts over 2 processes: {split.message}")
    assert split.verdict == "pass", split.message
