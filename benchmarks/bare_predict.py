"""The baseline for `bench_predict.py`: a bare FastAPI endpoint that parses the same body and returns a payload
of the same shape as `POST …/predict`, with no auth, no store, no LM. `python benchmarks/bare_predict.py PORT`."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

app = FastAPI()
ANSWER = {"output": {"action": "tool", "tool_name": "send_email"}, "receipt_id": "r" * 32, "compiled_id": "c" * 64,
          "arm": "champion", "canary_id": None, "correct": None, "latency_ms": 0, "lm_id": "sim:bench"}


@app.post("/api/v1/signatures/{signature_id}/predict")
def predict(signature_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {**ANSWER, "signature_id": signature_id, "echo": len(body)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
