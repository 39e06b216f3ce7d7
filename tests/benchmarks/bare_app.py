"""The baseline of the load benchmark: a bare Flask endpoint (no database, no session, no
template), served by the same gunicorn command line as the portal
(``gunicorn tests.benchmarks.bare_app:app``)."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def ok() -> str:
    return "ok"
