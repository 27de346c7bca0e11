"""The /review pages over real HTTP: sign-in and its cookie, redirects without a session, serve tokens refused,
no mutation from any page, the run page's content, paging through 10,000 events, and the live feed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import get_args
from urllib.parse import quote

import httpx
import pytest

import overnight.api
from overnight.api.app import route_inventory
from overnight.domain.canary import CanaryStatus
from overnight.domain.compiling import Artifact
from overnight.domain.runs import EventIn, FinishRun, RunStart, RunStatus
from overnight.runner import EXIT_BY_DECISION
from overnight.store.sql import SqlStore
from tests.factories import ADMIN_TOKEN, READ_TOKEN, SERVE_TOKEN, LiveServer, SteppingClock, auth, live_server
from tests.review import golden_run

RUN_PAGE = f"/review/runs/{golden_run.RUN_ID}"
PAGES = ["/review", RUN_PAGE, f"/review/signatures/{golden_run.SIG}",
         f"/review/artifacts/{golden_run.DEFAULT}/diff/{golden_run.BEST}"]


@pytest.fixture
def server(db_url: str, clock: SteppingClock, open_store: Callable[..., SqlStore]) -> Iterator[LiveServer]:
    golden_run.build(open_store(), clock)
    with live_server(db_url, clock=clock, max_events_per_run=20_000) as live:
        yield live


@contextmanager
def signed_in(server: LiveServer, token: str = READ_TOKEN) -> Iterator[httpx.Client]:
    with server.client(token=None, follow_redirects=False) as client:
        answer = client.post("/review/sign-in", content=f"token={quote(token)}&next=/review",
                             headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 303, answer.text
        yield client


def test_without_a_session_every_page_redirects_to_sign_in(server: LiveServer) -> None:
    with server.client(token=None, follow_redirects=False) as client:
        for path in [*PAGES, f"{RUN_PAGE}/stream", "/review?status=failed"]:
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == f"/review/sign-in?next={quote(path, safe='')}"
        form = client.get("/review/sign-in", params={"next": RUN_PAGE})
        assert form.status_code == 200
        assert 'name="token"' in form.text
        assert f'value="{RUN_PAGE}"' in form.text


def test_sign_in_sets_a_strict_http_only_cookie_that_is_not_the_token(server: LiveServer) -> None:
    with server.client(token=None, follow_redirects=False) as client:
        answer = client.post("/review/sign-in", content=f"token={READ_TOKEN}&next={quote(RUN_PAGE)}",
                             headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 303
        assert answer.headers["location"] == RUN_PAGE
        cookie = answer.headers["set-cookie"]
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags
        assert "samesite=strict" in flags
        assert "path=/review" in flags
        assert "secure" not in flags  # plain HTTP on loopback
        assert READ_TOKEN not in cookie
        assert client.get(RUN_PAGE).status_code == 200
        # the cookie is scoped to the pages: the API still wants a bearer token
        assert client.get(f"/api/v1/runs/{golden_run.RUN_ID}").status_code == 401


def test_the_cookie_is_secure_when_the_page_is_served_over_https(server: LiveServer) -> None:
    with server.client(token=None, follow_redirects=False) as client:
        # uvicorn trusts X-Forwarded-Proto from loopback (its default forwarded_allow_ips), as behind a proxy
        answer = client.post("/review/sign-in", content=f"token={READ_TOKEN}",
                             headers={"content-type": "application/x-www-form-urlencoded",
                                      "x-forwarded-proto": "https"})
        assert "secure" in [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]


@pytest.mark.parametrize(("token", "status", "problem"), [
    (SERVE_TOKEN, 403, "has role serve; the review needs read or admin"),
    ("not-a-token-" + "x" * 30, 401, "That token is not valid."),
    ("", 401, "That token is not valid."),
])
def test_sign_in_refuses_serve_and_unknown_tokens_without_a_cookie(server: LiveServer, token: str, status: int,
                                                                   problem: str) -> None:
    with server.client(token=None, follow_redirects=False) as client:
        answer = client.post("/review/sign-in", content=f"token={quote(token)}",
                             headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == status
        assert problem in answer.text
        assert "set-cookie" not in answer.headers
        assert client.get("/review").status_code == 303


def test_a_serve_token_is_refused_on_every_page_and_read_and_admin_tokens_are_let_in(server: LiveServer) -> None:
    for path in PAGES:
        with server.client(token=SERVE_TOKEN) as client:
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert refused.json()["code"] == "forbidden"
        for token in (READ_TOKEN, ADMIN_TOKEN):
            with server.client(token=token) as client:
                assert client.get(path).status_code == 200, path


def test_sign_in_only_redirects_to_review_pages(server: LiveServer) -> None:
    with server.client(token=None, follow_redirects=False) as client:
        for target in ("https://evil.example/", "//evil.example/review", "/review/../api/v1/runs", "/api/v1/runs"):
            answer = client.post("/review/sign-in", content=f"token={READ_TOKEN}&next={quote(target, safe='')}",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
            location = answer.headers["location"]
            assert location == "/review" or (location.startswith("/review") and ".." not in location), target


def test_sign_out_clears_the_cookie_and_a_tampered_or_expired_cookie_is_no_session(server: LiveServer) -> None:
    assert server.clock is not None
    with signed_in(server) as client:
        cookie = client.cookies["overnight_review"]
        name, expires, mac = cookie.split(":")
        assert name == "alice"
        for forged in (f"ops-agent:{expires}:{mac}", f"{name}:{int(expires) + 1}:{mac}", f"{name}:{expires}:00"):
            with server.client(token=None, follow_redirects=False, cookies={"overnight_review": forged}) as other:
                assert other.get("/review").status_code == 303, forged
        out = client.post("/review/sign-out")
        assert out.status_code == 303
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert client.get("/review").status_code == 303
    with signed_in(server) as client:
        assert client.get("/review").status_code == 200
        server.clock.advance(seconds=12 * 3600 + 1)
        assert client.get("/review").status_code == 303


def test_the_pages_have_no_controls_and_reading_them_changes_nothing(server: LiveServer) -> None:
    review = [(method, path, roles) for method, path, roles in route_inventory() if path.startswith("/review")]
    assert {p for m, p, _ in review if m != "GET"} == {"/review/sign-in", "/review/sign-out"}
    session = {"/review/sign-in", "/review/sign-out"}  # the form itself needs no session
    assert all(roles == frozenset({"admin", "read"}) for _, p, roles in review if p not in session)
    assert all(roles == frozenset() for _, p, roles in review if p in session)
    before = snapshot(server.store)
    with signed_in(server) as client:
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, path
            forms = re.findall(r'<form[^>]*action="([^"]+)"', page.text)
            assert set(forms) <= {"/review/sign-out"}, (path, forms)
            assert "<button" not in page.text.replace('<button type="submit">sign out</button>', ""), path
    assert snapshot(server.store) == before


def snapshot(store: SqlStore) -> tuple[object, ...]:
    run = store.get_run(run_id=golden_run.RUN_ID)
    canary = store.get_canary(canary_id="can-golden")
    return (run.event_count, run.status, run.summary, len(store.alias_history(signature_id=golden_run.SIG)),
            canary.status, canary.arms, len(store.list_receipts(canary_id="can-golden", limit=1000)))


def test_the_run_page_says_what_show_says(server: LiveServer) -> None:
    with signed_in(server) as client:
        page = client.get(RUN_PAGE).text
    assert "Run night-golden succeeded: SelectTool.v1 now serves bbbbbbbbbbbb" in page
    undo = "overnight rollback -s SelectTool.v1 --to default --run night-golden --reason &#39;undo night-golden&#39;"
    assert (f'<div id="undo">To undo, on a host with the store:  <pre class="mono">{undo}</pre>  or from any host, '
            'through this API (its address as <code>URL</code>) with an admin token in <code>OVERNIGHT_TOKEN</code>:  '
            f'<pre class="mono">{undo} --base-url URL</pre></div>') in page
    table = page[page.index('<table class="candidates">'):]
    table = table[:table.index("</table>")]
    assert re.findall(r'<td class="mono">(\w{12})</td>', table) == ["b" * 12, "d" * 12, "e" * 12]
    for needle in ('class="chart candidate-chart"', 'class="chart canary-chart"', 'class="threshold"',
                   "pass look at 153", "paired holdout delta +0.300 [+0.133, +0.467]", "error_rate_within_bound",
                   "quality_not_worse", "alias moves", "e2e:",
                   "5 requests served by bbbbbbbbbbbb; 2 more went to canary can-ops&#39;s candidate (not this "
                   "run&#39;s)",  # show's words (terminal.e2e_words)
                   "85 LM calls, 77 scores read back from earlier compiles",
                   f"/review/artifacts/{golden_run.DEFAULT}/diff/"):
        assert needle.lower() in page.lower(), needle
    assert page.count('<polyline class="arm-') == 4  # two arms, two panels
    assert ('<p class="rederived">re-derived: each of the 2 gate decisions follows from the inputs recorded with '
            'it</p>') in page
    assert 'class="rederived fail"' not in page


def test_the_run_page_marks_a_gate_decision_its_recorded_inputs_do_not_give(server: LiveServer, db_url: str) -> None:
    golden_run.forge_a_pass(db_url)
    with signed_in(server) as client:
        page = client.get(RUN_PAGE).text
    assert ('<p class="rederived fail">re-derived: differs — recorded gate_evaluated pass; its inputs give '
            'look_missed inconclusive</p>') in page
    assert ('<p class="rederived">re-derived: 2 of 3 gate decisions follow from the inputs recorded with them; '
            '1 DO NOT (marked above)</p>') in page


def test_the_front_page_says_what_serves_each_signature_now(server: LiveServer) -> None:
    """The morning's first look, as `overnight status` prints it: above the runs, one row per signature."""
    with signed_in(server) as client:
        page = client.get("/review").text
    serving = page[page.index('<table id="serving">'):]
    serving = serving[:serving.index("</table>")]
    assert page.index('<table id="serving">') < page.index('<table id="runs">')
    rows = re.findall(r"<tr>(.*?)</tr>", serving, flags=re.S)[1:]  # after the header
    select = next(r for r in rows if f'href="/review/signatures/{golden_run.SIG}"' in r)
    triage = next(r for r in rows if 'href="/review/signatures/SupportTriage.v1"' in r)
    for needle in ("bbbbbbbbbbbb", "promote by ops-agent (night-golden)", "none active (last can-golden: promoted)",
                   f'<a href="/review/runs/{golden_run.RUN_ID}">night-golden succeeded: promoted</a>'):
        assert needle in select, (needle, select)
    for needle in ("default program", "<td>none</td>"):
        assert needle in triage, (needle, triage)


def test_the_signature_and_diff_pages(server: LiveServer) -> None:
    with signed_in(server) as client:
        signature = client.get(f"/review/signatures/{golden_run.SIG}").text
        diff = client.get(f"/review/artifacts/{golden_run.DEFAULT}/diff/{golden_run.BEST}").text
        missing = client.get(f"/review/artifacts/{'f' * 64}/diff/{golden_run.BEST}")
    assert f"Serving now: <code>{golden_run.BEST}</code>" in signature
    undo = "overnight rollback -s SelectTool.v1 --reason &#39;undo the last promotion&#39;"
    assert (f"To undo the last promotion: <code>{undo}</code> on a host with the store, or <code>{undo} --base-url "
            "URL</code> from any host (this API's address as <code>URL</code>) with an admin token in "
            "<code>OVERNIGHT_TOKEN</code>.") in signature
    assert "cr-golden" in signature
    assert golden_run.RUN_ID in signature
    assert "+Answer with the tool&#39;s name only." in diff
    assert "send_email" in diff
    assert missing.status_code == 404
    assert missing.json()["code"] == "artifact_not_found"


def test_ten_thousand_events_are_paged_not_sent_at_once(server: LiveServer) -> None:
    store = server.store
    store.start_run(request=RunStart(run_id="night-busy", signature_ids=["SupportTriage.v1"]), actor="ops-agent",
                    default_lease_s=600)
    for i in range(10_000 - 1):
        store.append_event(run_id="night-busy", event=EventIn(kind="traffic.batch", phase="traffic",
                                                             message=f"batch {i}"))
    assert store.get_run(run_id="night-busy").event_count == 10_000
    with signed_in(server) as client:
        first = client.get("/review/runs/night-busy")
        last = client.get("/review/runs/night-busy", params={"after": 9_800})
    assert first.status_code == 200
    assert first.text.count("<td>traffic.batch</td>") == 199  # 200 rows: run.started, then 199 batches
    assert 'id="next-events" href="?after=200#events"' in first.text
    assert len(first.content) < 200_000
    assert last.text.count("<td>traffic.batch</td>") == 200
    assert "batch 9998" in last.text
    assert 'id="next-events"' not in last.text
    assert "following live" in first.text  # the run is still running: the page follows it


def test_the_live_feed_sends_plain_messages_a_browser_sees_and_ends_with_the_run(server: LiveServer) -> None:
    store = server.store
    store.start_run(request=RunStart(run_id="night-live", signature_ids=["SupportTriage.v1"]), actor="ops-agent",
                    default_lease_s=600)
    store.append_event(run_id="night-live", event=EventIn(kind="compile.started", phase="compile"))
    store.finish_run(run_id="night-live", finish=FinishRun(status="succeeded"), actor="ops-agent")
    with signed_in(server) as client:
        stream = client.get("/review/runs/night-live/stream", params={"after": 1}).text
    blocks = [b for b in stream.split("\n\n") if b.startswith("id:")]
    assert [b.splitlines()[0] for b in blocks] == ["id: 2", "id: 3"]
    assert all(not line.startswith("event:") for b in blocks for line in b.splitlines())
    assert stream.rstrip().endswith("event: end\ndata: {}")


def test_a_bearer_read_token_works_for_scripts(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, headers=auth(READ_TOKEN)) as client:
        assert client.get("/review").status_code == 200


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"


def test_recorded_text_is_shown_as_text_never_as_markup(server: LiveServer) -> None:
    """What the pages show comes from callers and from production data (event messages, reasons, the demos a
    compile picked from imported examples): all of it is escaped, wherever it lands."""
    store = server.store
    store.start_run(request=RunStart(run_id="night-hostile", signature_ids=[golden_run.SIG]), actor="ops-agent",
                    default_lease_s=600)
    store.append_event(run_id="night-hostile", event=EventIn(kind="note", phase="run", message=HOSTILE))
    old, new = "1" * 64, "2" * 64
    for compiled_id, instructions in ((old, "Pick a tool."), (new, f"Pick a tool. {HOSTILE}")):
        store.put_artifact(artifact=Artifact(
            compiled_id=compiled_id, signature_id=golden_run.SIG, lm_id="sim:x", params={},
            state={"signature": {"instructions": instructions},
                   "demos": [{"message": HOSTILE, "tool": "send_email"}] if compiled_id == new else []}))
    champion = store.alias_history(signature_id=golden_run.SIG)[-1].to_id
    store.promote(signature_id=golden_run.SIG, seen=champion, to_id=new, actor="ops-agent", reason=f"forced: {HOSTILE}",
                  run_id="night-hostile", evidence={}, canary_id=None)
    store.rollback(signature_id=golden_run.SIG, to_id=None, explicit=False, actor="ops-agent", reason=HOSTILE,
                   run_id="night-hostile")
    with signed_in(server) as client:
        pages = {path: client.get(path).text for path in (
            "/review/runs/night-hostile", f"/review/signatures/{golden_run.SIG}",
            f"/review/artifacts/{old}/diff/{new}")}
    for path, text in pages.items():
        assert "<script>alert" not in text, path
        assert "<img src=x" not in text, path
        assert ESCAPED in text, path  # shown, as text


def test_the_signature_page_after_a_rollback_to_the_default(server: LiveServer) -> None:
    """It said "the default program (never promoted)" above a history of moves, and offered a rollback that
    would be refused (nothing to roll back)."""
    server.store.rollback(signature_id=golden_run.SIG, to_id=None, explicit=False, actor="ops-agent",
                          reason="undo", run_id=None)
    with signed_in(server) as client:
        page = client.get(f"/review/signatures/{golden_run.SIG}").text
    assert "Serving now: the default program." in page
    assert "never promoted" not in page
    assert "overnight rollback" not in page


def test_the_runs_lists_say_what_was_moved_since_a_run(server: LiveServer, clock: SteppingClock) -> None:
    """A night whose promotion was undone the next morning, answering it (`--run`), was listed as `promoted` and
    nothing more: on the front page (its last run, and the runs) and on the signature page."""
    clock.advance(seconds=8 * 3600)
    server.store.rollback(signature_id=golden_run.SIG, to_id=None, explicit=False, actor="ops-agent",
                          reason="undo night-golden", run_id=golden_run.RUN_ID)
    with signed_in(server) as client:
        front, signature = client.get("/review").text, client.get(f"/review/signatures/{golden_run.SIG}").text
    runs = front[front.index('<table id="runs">'):]
    night = next(r for r in re.findall(r"<tr>(.*?)</tr>", runs, flags=re.S) if golden_run.RUN_ID in r)
    assert ('<span class="promoted">promoted</span>, then ops-agent rolled back to the default program'
            in night), night
    serving = front[front.index('<table id="serving">'):front.index('<table id="runs">')]
    assert (f'<a href="/review/runs/{golden_run.RUN_ID}">night-golden succeeded: promoted, then ops-agent rolled '
            'back to the default program</a>') in serving, serving
    recent = signature[signature.index("Recent runs"):]
    assert f"— {golden_run.SIG}: promoted, then ops-agent rolled back to the default program</li>" in recent, recent


def test_every_page_forbids_scripts_it_did_not_write_and_being_framed(server: LiveServer) -> None:
    """Defence in depth behind the escaping: a Content-Security-Policy whose only script is the page's own (a
    fresh nonce per response), no framing, no MIME sniffing, no referrer leaving the page."""
    store = server.store
    store.start_run(request=RunStart(run_id="night-live", signature_ids=[golden_run.SIG]), actor="ops-agent",
                    default_lease_s=600)  # a running run: its page carries the live feed's script
    live = "/review/runs/night-live"
    nonces = []
    with signed_in(server) as client:
        for path in [*PAGES, live, live, "/review/sign-in"]:
            answer = client.get(path)
            assert answer.status_code == 200, path
            policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
            nonce_source = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{22,})'", policy.pop("script-src"))
            assert nonce_source is not None, path  # the only scripts allowed are the ones carrying this nonce
            nonce = nonce_source.group(1)
            assert policy == {"default-src": "'none'", "style-src": "'unsafe-inline'", "img-src": "'self' data:",
                              "connect-src": "'self'", "form-action": "'self'", "frame-ancestors": "'none'",
                              "base-uri": "'none'"}, path
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"
            scripts = re.findall(r"<script[^>]*>", answer.text)
            assert all(tag == f'<script nonce="{nonce}">' for tag in scripts), (path, scripts)
            if path == live:
                assert scripts, "the running run's page has its live-feed script"
            nonces.append(nonce)
    assert len(set(nonces)) == len(nonces)  # never reused


def test_every_status_and_decision_the_pages_print_has_a_colour() -> None:
    """The pages colour a word by its class (`<span class="held">held</span>`): a status or decision added without
    a rule in the stylesheet would be printed in plain ink, as if nothing were to be looked at."""
    style = (Path(overnight.api.__file__).parent / "templates" / "base.html").read_text()
    style = style[style.index("<style>"):style.index("</style>")]
    coloured = set(re.findall(r"\.([a-z_]+)\b(?=[^{]*\{[^}]*color: var\(--(?:good|bad|warn)\))", style))
    words = set(EXIT_BY_DECISION) | {s.value for s in RunStatus} | set(get_args(CanaryStatus)) | {"pass", "fail"}
    assert words - coloured == set()
