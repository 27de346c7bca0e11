"""`POST /api/v1/store:prune` over real HTTP: admin only, a dry run that counts, a prune that deletes what it
counted, and a bad request that changes nothing."""

from __future__ import annotations

from overnight.store.schema import receipts
from tests.factories import READ_TOKEN, LiveServer
from tests.store.test_prune import DAY_S, champion_receipt, rows


def test_prune_over_http(api: LiveServer) -> None:
    assert api.clock is not None
    for i in range(3):
        api.store.record_receipt(receipt=champion_receipt(f"old-{i}"))
    api.clock.advance(seconds=8 * DAY_S)
    api.store.record_receipt(receipt=champion_receipt("new-0"))

    with api.client() as client:
        for bad, field in (({"keep_days": 0}, "keep_days"), ({}, "keep_days"),
                           ({"keep_days": 7, "older": True}, "older")):
            refused = client.post("/api/v1/store:prune", json=bad)
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == "validation_error"
            assert field in refused.json()["error"]
        assert rows(api.store, receipts) == 4

        counted = client.post("/api/v1/store:prune", json={"keep_days": 7, "dry_run": True})
        assert counted.status_code == 200, counted.text
        assert counted.json() == {"keep_days": 7, "cutoff": api.clock() - 7 * DAY_S * 1000, "receipts": 3,
                                  "idempotency_keys": 0, "dry_run": True}
        assert rows(api.store, receipts) == 4

        with api.client(token=READ_TOKEN) as reader:
            assert reader.post("/api/v1/store:prune", json={"keep_days": 7}).json()["code"] == "forbidden"
        assert rows(api.store, receipts) == 4

        pruned = client.post("/api/v1/store:prune", json={"keep_days": 7})
        assert pruned.json()["receipts"] == 3
    assert [r.receipt_id for r in api.store.list_receipts(limit=10)] == ["new-0"]
