"""The compile evidence a canary start and a promotion rely on: a completed compile report on the signature's
*current* dataset, for the current contract and LM, that names the candidate. Must not import the API."""

from __future__ import annotations

from overnight.domain.compiling import CompileReport
from overnight.domain.datasets import dataset_hash
from overnight.errors import CompileEvidenceMissing, Conflict
from overnight.registry import RegisteredSignature
from overnight.serving.programs import ProgramCache, signature_artifact
from overnight.store import Store


def current_dataset_hash(store: Store, signature_id: str) -> str:
    return dataset_hash((r.example_id, r.split, r.row_hash) for r in store.all_examples(signature_id=signature_id))


def naming_report(store: Store, entry: RegisteredSignature, *, lm_id: str, candidate_id: str,
                  report_id: str | None = None) -> CompileReport:
    """The newest matching report (or the one named, checked). Raises `compile_evidence_missing` saying why."""
    contract = entry.contract
    current = current_dataset_hash(store, contract.signature_id)
    if report_id is not None:
        reports = [store.get_compile_report(report_id=report_id)]
    else:
        reports = store.list_compile_reports(signature_id=contract.signature_id, dataset_hash=current)
    problems = []
    for report in reports:
        problem = _mismatch(report, signature_id=contract.signature_id, contract_hash=contract.contract_hash(),
                            lm_id=lm_id, current=current, candidate_id=candidate_id)
        if problem is None:
            return report
        problems.append(f"{report.report_id}: {problem}")
    raise CompileEvidenceMissing(
        f"no compile report for the current dataset {current[:12]} names {candidate_id[:12]} "
        f"({'; '.join(problems) or 'no completed compile on this dataset'}): compile first",
        details={"dataset_hash": current, "candidate_id": candidate_id, "checked": problems})


def _mismatch(report: CompileReport, *, signature_id: str, contract_hash: str, lm_id: str, current: str,
              candidate_id: str) -> str | None:
    if report.signature_id != signature_id:
        return f"is for {report.signature_id}"
    if report.dataset_hash != current:
        return f"was compiled on dataset {report.dataset_hash[:12]}, not the current one"
    if report.job_spec.get("contract_hash") != contract_hash:
        return "was compiled against an older contract of the signature"
    if report.job_spec.get("lm_id") != lm_id:
        return f"was compiled with {report.job_spec.get('lm_id')}, not the serving LM {lm_id}"
    if all(c.compiled_id != candidate_id for c in report.candidates):
        return "does not name the candidate"
    return None


def serving_champion(store: Store, entry: RegisteredSignature, programs: ProgramCache, lm_id: str) -> str:
    """The compiled_id that serves when no canary runs: the champion, or the default program's id."""
    champion = store.champion(signature_id=entry.contract.signature_id)
    return champion if champion is not None else programs.default(store, entry, lm_id).compiled_id


def contender_against(store: Store, entry: RegisteredSignature, programs: ProgramCache, *, candidate_id: str,
                      run_id: str | None, lm_id: str) -> str:
    """Check a candidate (an artifact of this signature, not the champion) and its run; return the champion id
    it would replace."""
    signature_artifact(store, entry, candidate_id)
    if run_id is not None:
        store.get_run(run_id=run_id)
    champion = serving_champion(store, entry, programs, lm_id)
    if champion == candidate_id:
        raise Conflict(f"{candidate_id[:12]} already is the champion of {entry.contract.signature_id}")
    return champion
