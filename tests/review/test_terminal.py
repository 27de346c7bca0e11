"""The runner's closing summary, as a cron log or an agent's transcript shows it: each line names what exists."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from overnight.review.terminal import Rows, duration, e2e_line, summary_text
from overnight.runner import SignatureResult, Summary


def _summary(**result: object) -> str:
    sig = SignatureResult(signature_id="SelectTool.v1", **result)
    return summary_text(Summary(run_id="night-1", status="succeeded", exit_code=0, verdict="…", base_url="",
                                signatures={"SelectTool.v1": sig}))


def test_a_night_with_no_canary_says_so_rather_than_printing_empty_counts() -> None:
    text = _summary(decision="no_improvement", reason="compile found nothing better than the champion",
                    dataset_hash="335dd4a62bc1" + "0" * 52, report_id="cr-1", champion_before="7bedaebd3fa9" + "0" * 52,
                    champion_after="7bedaebd3fa9" + "0" * 52)
    assert "    dataset 335dd4a62bc1, compile report cr-1, no canary, champion 7bedaebd3fa9" in text
    assert "canary -" not in text
    assert "0 of 0" not in text


def test_a_canary_is_named_with_its_status_and_the_requests_on_its_arms() -> None:
    text = _summary(decision="promoted", reason="…", dataset_hash="d" * 64, report_id="cr-1", canary_id="can-1",
                    canary_status="passed", requests_sent=480, requests_on_arms=464, champion_after="a" * 64)
    assert ", canary can-1 (passed, 464 of 480 requests sent on its arms), champion aaaaaaaaaaaa" in text


def test_a_canary_driven_partly_by_a_killed_runner_does_not_count_its_requests_as_the_resumes() -> None:
    """The resume knows what it sent, not what the killed process had: "464 of 0 requests sent" was printed."""
    text = _summary(decision="promoted", reason="…", dataset_hash="d" * 64, report_id="cr-1", canary_id="can-1",
                    canary_status="passed", requests_sent=40, requests_on_arms=543, requests_before=503,
                    champion_after="a" * 64)
    assert ", canary can-1 (passed, 543 requests on its arms, 503 before this runner carried it on, 40 sent since)" \
        in text
    assert "543 of 40" not in text


def test_a_signature_that_failed_before_its_dataset_names_only_the_champion() -> None:
    text = _summary(decision="failed", reason="dataset_invalid: line 3", champion_after=None)
    assert "  SelectTool.v1: failed — dataset_invalid: line 3\n    champion default" in text
    assert "compile report -" not in text
    assert "dataset -" not in text


def test_a_canary_whose_traffic_never_finished_is_named_without_counts() -> None:
    text = _summary(decision="failed", reason="api_unreachable: …", dataset_hash="d" * 64, report_id="cr-1",
                    canary_id="can-1", champion_after=None)
    assert "    dataset dddddddddddd, compile report cr-1, canary can-1, champion default" in text


def _rendered(rows: Rows, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(rows)
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_rows_are_a_table_while_every_cell_fits_its_prose_wrapping_and_records_when_not() -> None:
    rows = Rows("timeline", ("seq", "kind", "message"), wrap="message")
    rows.add_row("1", "canary.started", "the canary opened at 25% of the traffic on two arms")
    rows.add_row("2", "canary.decided", "passed")
    wide = _rendered(rows, 120)
    assert "│ 1   │ canary.started │ the canary opened at 25% of the traffic on two arms │" in wide
    wrapped = _rendered(rows, 40)  # the message wraps between its words; nothing else does
    assert "│ 1   │ canary.started │ the canary    │" in wrapped
    assert not any("…" in line for line in wrapped)
    records = _rendered(rows, 26)  # no room for `canary.started` and the longest word beside it
    assert records == ["timeline", "1", "  kind     canary.started", "  message  the canary",
                       "           opened at 25%", "           of the traffic", "           on two arms", "2",
                       "  kind     canary.decided", "  message  passed"]


def test_rows_refuse_a_row_of_the_wrong_length_and_an_unknown_wrap_column() -> None:
    with pytest.raises(ValueError, match=r"wrap='msg' is not one of the columns \(seq, message\)"):
        Rows("t", ("seq", "message"), wrap="msg")
    with pytest.raises(ValueError, match=r"1 cells for 2 columns \(seq, message\)"):
        Rows("t", ("seq", "message")).add_row("1")


def test_the_e2e_line_names_the_predicts_another_canary_took() -> None:
    e2e = {"ok": True, "requests": 5, "served": ["a" * 64], "problem": "", "lm_failures": [],
           "elsewhere": {"can-theirs": 4}}
    assert e2e_line(e2e) == ("e2e: ok — 5 requests served by aaaaaaaaaaaa; 4 more went to canary can-theirs's "
                             "candidate (not this run's)")
    assert e2e_line({**e2e, "ok": False, "requests": 0, "served": [], "problem": "no request reached the champion"}) \
        == ("e2e: FAILED — 0 requests served by nothing: no request reached the champion; 4 more went to canary "
            "can-theirs's candidate (not this run's)")


@pytest.mark.parametrize(("ms", "said"), [
    (3_800, "3.8s"),  # as the timeline says a step's time: a 3.8 s run did not take "0m03s"
    (59_940, "59.9s"), (59_960, "1m00s"), (61_600, "1m02s"), (3_599_600, "1h00m00s"), (7_384_000, "2h03m04s"),
])
def test_a_duration_says_seconds_to_the_tenth_under_a_minute_and_rounds_above(ms: int, said: str) -> None:
    assert duration(1_000, 1_000 + ms) == said
    assert duration(1_000, None) == "running"
