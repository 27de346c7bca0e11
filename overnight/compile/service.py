"""`compile_signature`: one compile job, from the signature's current dataset to a stored report.

1. The job spec (`domain/jobspec.py`) and the dataset hash name the job; a completed report for the same
   (signature, job_hash, dataset_hash) is returned as is, with `cached: true` and no LM call.
2. Candidates: the grid of the search space, demos picked by the optimizer (`compile/optimizers.py`), plus the
   incumbent (the champion, or the default program).
3. Successive halving on train: every candidate on a small slice, the best 1/eta on an eta-times larger slice,
   … until the finalists remain. `search="grid"` scores every candidate on all of train instead (for comparison).
4. The finalists and the incumbent are scored paired on holdout, leaving out holdout rows whose input is one of
   a finalist's demos (leakage, flagged). The best by holdout score wins ties in favour of the incumbent.
5. The paired delta (best - incumbent) with a seeded bootstrap interval and exact McNemar goes in the report,
   both adjusted for the best having been picked among the finalists on those same rows.
A budget (LM calls, tokens, seconds) ends the job cleanly as `budget_exhausted`, best-so-far marked and the limit
reached named; it is not cached, and a rerun resumes from the persisted per-example results. Must not import the API.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from statistics import mean
from typing import Any, Literal

from overnight.compile.evaluate import BudgetExhausted, Evaluator
from overnight.compile.optimizers import DemoSelector, demo_selector
from overnight.compile.programs import Candidate, build_candidate, candidate_from_artifact
from overnight.domain.candidates import grid, halving_schedule
from overnight.domain.compiling import CandidateReport, CompileReport, report_id_for
from overnight.domain.datasets import StoredExample, dataset_hash
from overnight.domain.hashing import canonical_json
from overnight.domain.jobspec import job_spec
from overnight.domain.stats import PairedDelta, paired_delta
from overnight.errors import DatasetNotReady
from overnight.lm.backends import Backend
from overnight.registry import RegisteredSignature
from overnight.store import Store

Progress = Callable[[str, dict[str, Any]], None]


def compile_signature(
    store: Store, entry: RegisteredSignature, backend: Backend, *, seed: int = 0, max_lm_calls: int | None = None,
    max_tokens: int | None = None, max_seconds: int | None = None, concurrency: int = 4,
    search: Literal["halving", "grid"] = "halving",
    first_slice: int = 8, eta: int = 3, finalists: int = 2, progress: Progress | None = None,
    optimizer_id: str = "grid@1",
) -> CompileReport:
    started = time.monotonic()
    contract = entry.contract
    selector = demo_selector(optimizer_id, entry)
    optimizer = (f"{optimizer_id}+halving(first_slice={first_slice},eta={eta},finalists={finalists})"
                 if search == "halving" else f"{optimizer_id}+full(finalists={finalists})")
    spec = job_spec(contract, lm_id=backend.lm_id, seed=seed, optimizer_id=optimizer,
                    incumbent=store.champion(signature_id=contract.signature_id))
    rows = store.all_examples(signature_id=contract.signature_id)
    data_hash = dataset_hash((r.example_id, r.split, r.row_hash) for r in rows)
    cached = store.find_compile_report(signature_id=contract.signature_id, job_hash=spec.job_hash(),
                                       dataset_hash=data_hash)
    if cached is not None:
        return cached.model_copy(update={"cached": True})
    train = [r for r in rows if r.split == "train"]
    holdout = [r for r in rows if r.split == "holdout"]
    if not train or not holdout:
        todo = "import a dataset first"
        if rows:
            missing, why = (("holdout", "the paired gate scores candidates on them, never shown as demos") if train
                            else ("train", "demos and the search come from them"))
            todo = f'mark some of the dataset\'s rows "split": "{missing}" ({why}) and import it again'
        raise DatasetNotReady(f"{contract.signature_id} needs train and holdout rows to compile "
                              f"(has {len(train)} train, {len(holdout)} holdout): {todo}")
    candidates, incumbent = _candidates(store, entry, backend, train, seed=seed, selector=selector)
    evaluator = Evaluator(store, backend, entry, max_lm_calls, max_tokens, concurrency,
                          until=None if max_seconds is None else started + max_seconds)
    search_state = _Search(candidates, incumbent, evaluator, _ordered(train, seed), progress or (lambda *_: None))
    size = len(train) if search == "grid" else first_slice
    schedule = halving_schedule(candidates=len(candidates), train_size=len(train), first_slice=size, eta=eta,
                                finalists=finalists)
    status: Literal["completed", "budget_exhausted"] = "completed"
    delta, leaked = None, list[str]()
    try:
        alive = search_state.halve(schedule, finalists)
        best, delta, leaked = search_state.holdout(alive, holdout, seed)
    except BudgetExhausted:
        status, best = "budget_exhausted", search_state.best_so_far()
    report = CompileReport(
        report_id=report_id_for(signature_id=contract.signature_id, job_hash=spec.job_hash(), dataset_hash=data_hash),
        signature_id=contract.signature_id, job_hash=spec.job_hash(), dataset_hash=data_hash,
        job_spec=spec.model_dump(mode="json"), status=status, best_compiled_id=best.compiled_id,
        incumbent_compiled_id=incumbent.compiled_id,
        improved=best.compiled_id != incumbent.compiled_id and delta is not None and delta.delta > 0,
        candidates=[report.model_copy(update=evaluator.cost(cid)) for cid, report in search_state.reports.items()],
        rungs=search_state.rungs, paired_delta=delta,
        leakage=leaked, lm_calls=evaluator.lm_calls, evaluations=evaluator.evaluations, reused=evaluator.reused,
        tokens=evaluator.tokens,
        full_grid_lm_calls=len(candidates) * len(train),
        budget={"max_lm_calls": max_lm_calls, "max_tokens": max_tokens, "max_seconds": max_seconds},
        stopped_by=evaluator.stopped_by if status == "budget_exhausted" else None,
    )
    return store.save_compile_report(report=report) if status == "completed" else report


def _candidates(store: Store, entry: RegisteredSignature, backend: Backend, train: list[StoredExample], *,
                seed: int, selector: DemoSelector) -> tuple[list[Candidate], Candidate]:
    by_id = {row.example_id: row for row in train}
    candidates = [build_candidate(entry, params, by_id, lm_id=backend.lm_id)
                  for params in grid(entry.contract.search_space, list(by_id), seed, selector)]
    incumbent = candidates[0]  # the default program, unless a champion exists
    champion_id = store.champion(signature_id=entry.contract.signature_id)
    if champion_id is not None:
        known = {c.compiled_id: c for c in candidates}
        incumbent = known.get(champion_id) or candidate_from_artifact(
            entry, store.get_artifact(compiled_id=champion_id))
        if incumbent.compiled_id not in known:
            candidates.append(incumbent)
    for candidate in candidates:
        store.put_artifact(artifact=candidate.artifact)
    return candidates, incumbent


def _ordered(train: list[StoredExample], seed: int) -> list[StoredExample]:
    """Train rows in a seeded order: each rung's slice is a prefix, so earlier results are reused."""
    rows = sorted(train, key=lambda r: r.example_id)
    random.Random(f"train|{seed}").shuffle(rows)  # noqa: S311 - a recorded, reproducible order
    return rows


class _Search:
    def __init__(self, candidates: list[Candidate], incumbent: Candidate, evaluator: Evaluator,
                 train: list[StoredExample], progress: Progress) -> None:
        self.candidates, self.incumbent, self.evaluator, self.train = candidates, incumbent, evaluator, train
        self.progress = progress
        self.position = {c.compiled_id: i for i, c in enumerate(candidates)}
        self.reports = {c.compiled_id: CandidateReport(
            compiled_id=c.compiled_id, params=c.artifact.params, is_default=bool(c.params and c.params.is_default),
            is_incumbent=c.compiled_id == incumbent.compiled_id) for c in candidates}
        self.rungs: list[dict[str, int]] = []

    def halve(self, schedule: list[tuple[int, int]], finalists: int) -> list[Candidate]:
        alive = list(self.candidates)
        for rung, (_, size) in enumerate(schedule):
            rows = self.train[:size]
            scores = {c.compiled_id: mean(self.evaluator.rewards(c, rows).values()) for c in alive}
            for c in alive:
                self.reports[c.compiled_id] = self.reports[c.compiled_id].model_copy(
                    update={"train_n": size, "train_score": scores[c.compiled_id]})
            keep = schedule[rung + 1][0] if rung + 1 < len(schedule) else finalists
            ranked = sorted(alive, key=lambda c: (-scores[c.compiled_id], self.position[c.compiled_id]))
            for c in ranked[keep:]:
                report = self.reports[c.compiled_id]
                self.reports[c.compiled_id] = report.model_copy(update={"eliminated_at_rung": rung})
            self.rungs.append({"rung": rung, "candidates": len(alive), "train_examples": size,
                               "evaluations_so_far": self.evaluator.evaluations})
            self.progress("compile.rung", self.rungs[-1])
            alive = ranked[:keep]
        return alive

    def holdout(self, alive: list[Candidate], holdout: list[StoredExample],
                seed: int) -> tuple[Candidate, PairedDelta | None, list[str]]:
        finalists = alive + ([self.incumbent] if self.incumbent not in alive else [])
        demo_inputs = {canonical_json(d) for c in finalists for d in c.demo_inputs()}
        leaked = sorted(r.example_id for r in holdout if canonical_json(r.input) in demo_inputs)
        gate = [r for r in holdout if r.example_id not in leaked]
        scored = {c.compiled_id: self.evaluator.rewards(c, gate) for c in finalists}
        for c in finalists:
            results = scored[c.compiled_id]
            self.reports[c.compiled_id] = self.reports[c.compiled_id].model_copy(update={
                "holdout_n": len(results), "holdout_score": mean(results.values()) if results else None,
                "holdout_results": results})
        best = max(finalists, key=lambda c: (mean(scored[c.compiled_id].values()) if gate else 0.0,
                                             c is self.incumbent, -self.position[c.compiled_id]))
        ids = [r.example_id for r in gate]
        delta = paired_delta([scored[best.compiled_id][i] for i in ids],
                             [scored[self.incumbent.compiled_id][i] for i in ids], seed=seed,
                             compared=max(1, len(finalists) - 1)) if ids else None  # picked among them on holdout
        return best, delta, leaked

    def best_so_far(self) -> Candidate:
        scored = [c for c in self.candidates if self.reports[c.compiled_id].train_score is not None]
        if not scored:
            return self.incumbent
        return max(scored, key=lambda c: (self.reports[c.compiled_id].train_score or 0.0,
                                          c is self.incumbent, -self.position[c.compiled_id]))
