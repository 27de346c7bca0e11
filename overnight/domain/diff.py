"""What changed between two artifacts, for the morning review: instructions as a unified text diff, demos
added and removed (by their input), decode changes. Must not import I/O modules or DSPy."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from overnight.domain.compiling import Artifact
from overnight.domain.hashing import canonical_json


class ArtifactDiff(BaseModel):
    a: str
    b: str
    same_signature: bool
    instructions_diff: list[str]
    demos_added: list[dict[str, Any]]
    demos_removed: list[dict[str, Any]]
    decode_changes: dict[str, list[Any]]
    lm_id_changed: bool


def _instructions(artifact: Artifact) -> str:
    return str(artifact.state.get("signature", {}).get("instructions", ""))


def _demos(artifact: Artifact) -> dict[str, dict[str, Any]]:
    return {canonical_json(d): d for d in artifact.state.get("demos", [])}


def diff_artifacts(a: Artifact, b: Artifact) -> ArtifactDiff:
    demos_a, demos_b = _demos(a), _demos(b)
    decode_a, decode_b = a.params.get("decode", {}), b.params.get("decode", {})
    return ArtifactDiff(
        a=a.compiled_id, b=b.compiled_id, same_signature=a.signature_id == b.signature_id,
        instructions_diff=list(difflib.unified_diff(
            _instructions(a).splitlines(), _instructions(b).splitlines(), fromfile=a.compiled_id[:12],
            tofile=b.compiled_id[:12], lineterm="")),
        demos_added=[demos_b[k] for k in sorted(demos_b.keys() - demos_a.keys())],
        demos_removed=[demos_a[k] for k in sorted(demos_a.keys() - demos_b.keys())],
        decode_changes={k: [decode_a.get(k), decode_b.get(k)] for k in sorted(decode_a.keys() | decode_b.keys())
                        if decode_a.get(k) != decode_b.get(k)},
        lm_id_changed=a.lm_id != b.lm_id,
    )
