"""Programs by `compiled_id`, loaded once per process. An artifact is write-once, so its program never goes
stale; which id serves is read from the store on every request, so an alias move takes effect at once on every
replica (no TTL). Must not import the API."""

from __future__ import annotations

import threading

from overnight.compile.programs import Candidate, build_candidate, candidate_from_artifact
from overnight.domain.candidates import CandidateParams
from overnight.domain.compiling import Artifact
from overnight.errors import InvalidInput
from overnight.registry import RegisteredSignature
from overnight.store import Store


def default_candidate(entry: RegisteredSignature, lm_id: str) -> Candidate:
    """The signature's default program (first instructions, no demos, first decode): the same artifact, and so
    the same compiled_id, that compile puts first in its grid."""
    space = entry.contract.search_space
    params = CandidateParams(instruction_index=0, demo_count=0, decode_index=0, demo_ids=(),
                             decode=dict(space.decode[0]))
    return build_candidate(entry, params, {}, lm_id=lm_id)


def signature_artifact(store: Store, entry: RegisteredSignature, compiled_id: str) -> Artifact:
    """An existing artifact of this signature (404 when unknown, 422 when it is another signature's)."""
    artifact = store.get_artifact(compiled_id=compiled_id)
    if artifact.signature_id != entry.contract.signature_id:
        raise InvalidInput(f"artifact {compiled_id[:12]} belongs to {artifact.signature_id}, "
                           f"not {entry.contract.signature_id}", details={"field": "candidate_id"})
    return artifact


class ProgramCache:
    def __init__(self) -> None:
        self._programs: dict[str, Candidate] = {}
        self._defaults: dict[tuple[str, str], Candidate] = {}
        self._lock = threading.Lock()

    def default(self, store: Store, entry: RegisteredSignature, lm_id: str) -> Candidate:
        """The default program, its artifact stored once (write-once) so every receipt's id resolves."""
        key = (entry.contract.signature_id, lm_id)
        with self._lock:
            found = self._defaults.get(key)
        if found is not None:
            return found
        candidate = default_candidate(entry, lm_id)
        store.put_artifact(artifact=candidate.artifact)
        with self._lock:
            self._defaults[key] = self._programs.setdefault(candidate.compiled_id, candidate)
            return self._defaults[key]

    def get(self, store: Store, entry: RegisteredSignature, compiled_id: str) -> Candidate:
        with self._lock:
            found = self._programs.get(compiled_id)
        if found is not None:
            return found
        candidate = candidate_from_artifact(entry, signature_artifact(store, entry, compiled_id))
        with self._lock:
            return self._programs.setdefault(compiled_id, candidate)
