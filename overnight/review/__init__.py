"""The morning review: a run's records assembled into one `RunReview` (assemble), and its renderings for the
terminal (terminal, show) and the browser (charts; the pages themselves are `overnight.api.routes.review`).
Reads only. Must not import SQL, FastAPI or HTTP."""
