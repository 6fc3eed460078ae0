"""The analysts' review app: a keyboard-first queue of flagged records and cases, verdicts
with an audit trail, run and quality pages, and a JSON API with per-user tokens.

FastAPI with server-rendered Jinja2 pages and one small plain script (no CDN, no build
step). It reads and writes only through :class:`pipelines.store.ResultsStore`.
"""

from review.app import create_app

__all__ = ["create_app"]
