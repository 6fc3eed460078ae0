"""Scoring runs: the list, one run's page (score histogram, flag rates, quarantine,
health), and the same runs in the API."""

from __future__ import annotations

from fastapi import HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from review import charts
from review.deps import StoreDep
from review.queries import run_out
from review.routers.base import api_router, page_router
from review.schemas import RunOut
from review.templating import render

pages = page_router()
api = api_router()


@pages.get("/runs", response_class=HTMLResponse)
def runs_view(request: Request, store: StoreDep):
    listed = store.list_runs(100)
    health = store.run_health_status([r.id for r in listed])
    return render(request, "runs.html", {"runs": listed, "health": health})


@pages.get("/runs/{run_id}", response_class=HTMLResponse)
def run_view(request: Request, run_id: str, store: StoreDep):
    run = store.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no scoring run {run_id}")
    earlier = [run_out(r) for r in reversed(store.runs_for_model(run.model_name, 30))]
    quarantine = store.quarantine_frame(run.id)
    return render(
        request,
        "run.html",
        {
            "run": run,
            "histogram": charts.score_histogram(store.score_values(run.id).tolist(), run.threshold),
            "rates": charts.flag_rate_bars(earlier, run.id),
            "quarantine": quarantine.head(500).to_dict("records"),
            "quarantine_total": len(quarantine),
            "health": store.run_health(run.id),
        },
    )


@api.get("/runs", response_model=list[RunOut])
def runs(store: StoreDep, limit: int = Query(50, ge=1, le=1000)):
    return [run_out(r) for r in store.list_runs(limit)]


@api.get("/runs/{run_id}", response_model=RunOut)
def run(run_id: str, store: StoreDep):
    found = store.get_run(run_id)
    if found is None:
        raise HTTPException(404, f"no scoring run {run_id}")
    return run_out(found)
