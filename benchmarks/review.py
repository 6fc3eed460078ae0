"""Review app at scale on PostgreSQL: 1,000,000 flags over 200,000 entities.

    python -m benchmarks review [--database-url URL] [--flags 100000 --seconds 20]

Measures, against the app served by uvicorn in a separate process on loopback:
- queue page (HTML, first page and deep keyset pages) and ``GET /api/queue``, each item
  with its payment (amount, currency, merchant, time from the flag's snapshot): server time
  (the app's ``Server-Timing`` header) and client time, median and p95; the queue filtered
  by an entity tag on 1% of the cards and by one on 20 cards;
- verdict ``POST /api/queue/{id}/verdict``: server time median and p95;
- N concurrent simulated analysts for T seconds (claim next, read the case, give a
  verdict, bounded loop): requests, 5xx, conflicts, and afterwards the store is counted:
  every verdict answered 200 has exactly its label rows, nothing lost or duplicated;
- joining a run's flags to cases (``complete_run``) for a 50,000-flag run.

Needs PostgreSQL (``VIGIL_TEST_POSTGRES_URL`` or ``--database-url``); works in a
throwaway schema that it drops at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _copy(conn, table: str, columns: list[str], rows) -> None:
    """Bulk load through PostgreSQL COPY (tab-separated text)."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buffer.seek(0)
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def _snapshot(i: int, entity: int, score: float, now: datetime) -> dict:
    """A flag's record as scoring keeps it, with the payment the queue shows."""
    amount = round(score * 40, 2)
    at = (now - timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
    merchant = f"merchant {i % 5000}"
    return {
        "tx_id": f"tx{i}",
        "card_id": f"card{entity}",
        "timestamp": at,
        "merchant_id": merchant,
        "amount": amount,
        "_payment": {
            "entity": f"card{entity}",
            "time": at,
            "merchant": merchant,
            "amount": amount,
            "currency": "USD",
        },
    }


def load(url: str, flags: int, entities: int, seed: int = 0) -> dict:
    """A store with ``flags`` open flags over ``entities`` open cases (sequence mode)."""
    from pipelines.store import ResultsStore

    started = time.perf_counter()
    store = ResultsStore(url)
    rng = np.random.default_rng(seed)
    runs = 10
    per_run = flags // runs
    now = datetime.now(UTC)
    raw = store.engine.raw_connection()
    try:
        conn = raw.driver_connection
        run_ids = [str(uuid.uuid4()) for _ in range(runs)]
        _copy(
            conn,
            "scoring_runs",
            [
                "id",
                "batch_id",
                "source",
                "dataset",
                "model_name",
                "model_version",
                "model_alias",
                "threshold",
                "status",
                "rows_in",
                "rows_scored",
                "rows_quarantined",
                "rows_flagged",
                "started_at",
                "finished_at",
            ],
            [
                (
                    rid,
                    f"night{i}",
                    f"night{i}.parquet",
                    "cards",
                    "cards-seq_vae",
                    str(1 + i % 2),
                    "champion",
                    1.0,
                    "completed",
                    per_run * 20,
                    per_run * 20,
                    0,
                    per_run,
                    (now - timedelta(days=runs - i)).isoformat(),
                    (now - timedelta(days=runs - i)).isoformat(),
                )
                for i, rid in enumerate(run_ids)
            ],
        )
        entity_of_flag = rng.integers(0, entities, size=flags)
        entity_of_flag[:entities] = np.arange(entities)  # every entity has a flag
        scores = 1.0 + rng.gamma(1.5, 0.8, size=flags)
        max_score = np.zeros(entities)
        np.maximum.at(max_score, entity_of_flag, scores)
        count = np.bincount(entity_of_flag, minlength=entities)
        _copy(
            conn,
            "cases",
            [
                "id",
                "dataset",
                "entity_key",
                "entity",
                "status",
                "priority",
                "max_score",
                "flag_count",
                "first_flag_at",
                "last_flag_at",
                "version",
                "opened_at",
            ],
            [
                (
                    e + 1,
                    "cards",
                    f"entity:card{e}",
                    f"card{e}",
                    "open",
                    float(max_score[e]),
                    float(max_score[e]),
                    int(count[e]),
                    (now - timedelta(minutes=int(e % 10000))).isoformat(),
                    (now - timedelta(minutes=int(e % 10000))).isoformat(),
                    1,
                    now.isoformat(),
                )
                for e in range(entities)
            ],
        )
        reasons = json.dumps(
            [
                {
                    "feature": "ctx_amount_vs_history",
                    "contribution": 2.0,
                    "share": 0.6,
                    "text": "amount 5.0x this card's usual amount (60% of the anomaly score)",
                },
                {
                    "feature": "ctx_count_1h",
                    "contribution": 1.0,
                    "share": 0.3,
                    "text": "7 payments in 1 hour (30% of the anomaly score)",
                },
            ]
        )
        _copy(
            conn,
            "flags",
            [
                "run_id",
                "record_id",
                "entity",
                "case_id",
                "score",
                "threshold",
                "record",
                "reasons",
                "status",
                "created_at",
            ],
            (
                (
                    run_ids[i // per_run if i // per_run < runs else runs - 1],
                    f"tx{i}",
                    f"card{entity_of_flag[i]}",
                    int(entity_of_flag[i]) + 1,
                    float(scores[i]),
                    1.0,
                    json.dumps(_snapshot(i, int(entity_of_flag[i]), float(scores[i]), now)),
                    reasons,
                    "open",
                    now.isoformat(),
                )
                for i in range(flags)
            ),
        )
        conn.commit()
        with conn.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), %s)", (entities,))
            cursor.execute("ANALYZE")
        conn.commit()
    finally:
        raw.close()
    tag_entities(store, entities, rng)
    return {"store": store, "seconds": time.perf_counter() - started, "run_ids": run_ids}


#: The tags the benchmark puts on cards: (tag, how many cards).
TAGS = {"watch": 0.01, "vip": 20}


def tag_entities(store, entities: int, rng) -> None:
    """Analysts' tags on cards, for the queue's tag filter: ``watch`` on 1% of the cards
    (spread over the queue) and ``vip`` on 20."""
    now = datetime.now(UTC).isoformat()
    rows = []
    for tag, share in TAGS.items():
        n = int(entities * share) if share < 1 else int(share)
        for e in rng.choice(entities, size=min(n, entities), replace=False):
            rows.append(("cards", f"card{e}", tag, "benchmark", now))
    raw = store.engine.raw_connection()
    try:
        conn = raw.driver_connection
        _copy(conn, "entity_tags", ["dataset", "entity", "tag", "added_by", "added_at"], rows)
        conn.commit()
        with conn.cursor() as cursor:
            cursor.execute("ANALYZE entity_tags")
        conn.commit()
    finally:
        raw.close()


def attach_cost(store, flags: int = 50_000) -> dict:
    """Time for a completed run's flags to join (mostly existing) open cases."""
    import pandas as pd

    from pipelines.store.runs import ChunkWrite

    batch_id = f"attach-{uuid.uuid4().hex[:6]}"
    ticket = store.claim_run(
        batch_id=batch_id,
        source="bench",
        dataset="cards",
        model_name="cards-seq_vae",
        model_version="3",
        model_alias="champion",
        threshold=1.0,
        chunk_size=flags,
        lease_seconds=600,
    )
    rng = np.random.default_rng(1)
    entity = rng.integers(0, 250_000, size=flags)  # a fifth are new entities
    records = [f"att{i}" for i in range(flags)]
    store.write_chunk(
        ticket.run.id,
        ticket.owner,
        ChunkWrite(
            chunk_number=0,
            chunk_size=flags,
            first_row=0,
            rows_in=flags,
            scores=pd.DataFrame({"record_id": records, "score": 2.0, "is_anomaly": True}),
            flags=[
                {
                    "record_id": r,
                    "entity": f"card{e}",
                    "score": 2.0,
                    "threshold": 1.0,
                    "record": {"tx_id": r},
                    "reasons": [],
                }
                for r, e in zip(records, entity, strict=True)
            ],
            quarantined=pd.DataFrame(),
            rows_quarantined=0,
            batch_id=batch_id,
            source="bench",
        ),
    )
    started = time.perf_counter()
    store.complete_run(ticket.run.id, ticket.owner, group_by_entity=True)
    seconds = time.perf_counter() - started
    return {"flags": flags, "seconds": seconds, "flags_per_s": flags / seconds}


def _start_app(url: str, port: int, home: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": url,
        "VIGIL_HOME": str(home),
        "VIGIL_REVIEW_CLAIM_MINUTES": "10",
    }
    code = (
        "import uvicorn; from review import create_app; "
        f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("review app did not start")


def _stats(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": float(np.quantile(values, 0.95)) * 1000,
    }


def _timed(client, method: str, path: str, **kwargs) -> tuple[object, float, float]:
    started = time.perf_counter()
    response = client.request(method, path, **kwargs)
    client_s = time.perf_counter() - started
    timing = response.headers.get("server-timing", "app;dur=nan")
    server_s = float(timing.split("dur=")[1]) / 1000
    return response, server_s, client_s


def measure_pages(base: str, token: str, session_cookie: str, repeats: int) -> dict:
    import httpx

    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    pages = httpx.Client(base_url=base, cookies={"vigil_session": session_cookie}, timeout=30)
    out: dict[str, dict] = {}
    for name, client, path in (
        ("queue page (HTML, first page)", pages, "/queue"),
        ("GET /api/queue (first page)", api, "/api/queue"),
        ("queue page, filtered by model", pages, "/queue?model=cards-seq_vae/2"),
        ("queue page, filtered by a tag on 1% of the cards", pages, "/queue?tag=watch"),
        ("queue page, filtered by a tag on 20 cards", pages, "/queue?tag=vip"),
    ):
        server, wall = [], []
        for _ in range(repeats):
            response, s, c = _timed(client, "GET", path)
            assert response.status_code == 200, response.text[:300]
            server.append(s)
            wall.append(c)
        out[name] = {"server": _stats(server), "client": _stats(wall)}
    # Deep pages: follow the keyset cursor 200 pages down.
    server, cursor = [], None
    for _ in range(200):
        response, s, _c = _timed(
            api, "GET", "/api/queue", params={"cursor": cursor} if cursor else None
        )
        server.append(s)
        cursor = response.json()["next_cursor"]
    out["GET /api/queue, pages 1-200 by cursor"] = {"server": _stats(server)}
    return out


def measure_verdicts(base: str, token: str, case_ids: list[int]) -> dict:
    import httpx

    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    server, wall = [], []
    for case_id in case_ids:
        response, s, c = _timed(
            api,
            "POST",
            f"/api/queue/{case_id}/verdict",
            json={"verdict": "not_fraud", "note": "bench"},
        )
        assert response.status_code == 200, response.text[:300]
        server.append(s)
        wall.append(c)
    return {"server": _stats(server), "client": _stats(wall)}


def simulate_analysts(base: str, tokens: list[str], seconds: float) -> dict:
    """Each analyst loops: claim next, read the case, give a verdict."""
    import httpx

    lock = threading.Lock()
    totals = {"requests": 0, "5xx": 0, "conflicts": 0, "verdicts_ok": 0, "errors": 0}
    decided: list[int] = []
    deadline = time.time() + seconds
    verdicts = ("fraud", "not_fraud", "unsure")

    def analyst(token: str, index: int) -> None:
        client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        n = 0
        while time.time() < deadline:
            try:
                claimed = client.post("/api/queue/claim-next")
                case_id = claimed.json().get("id") if claimed.status_code == 200 else None
                responses = [claimed]
                if case_id is not None:
                    case = client.get(f"/api/queue/{case_id}")
                    responses.append(case)
                    done = client.post(
                        f"/api/queue/{case_id}/verdict",
                        json={
                            "verdict": verdicts[(index + n) % 3],
                            "version": case.json()["version"],
                        },
                    )
                    responses.append(done)
                n += 1
                with lock:
                    totals["requests"] += len(responses)
                    totals["5xx"] += sum(r.status_code >= 500 for r in responses)
                    totals["conflicts"] += sum(r.status_code == 409 for r in responses)
                    if case_id is not None and responses[-1].status_code == 200:
                        totals["verdicts_ok"] += 1
                        decided.append(case_id)
            except httpx.HTTPError:
                with lock:
                    totals["errors"] += 1

    threads = [threading.Thread(target=analyst, args=(t, i)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals["decided_cases"] = decided
    return totals


def count_labels(store, case_ids: list[int]) -> dict:
    """Store-side check: every case decided once, with one label per record of the case."""
    from pipelines.store import Case, Flag, Label

    with store.session() as session:
        per_case = dict(
            session.execute(
                sa.select(Label.case_id, sa.func.count())
                .where(Label.case_id.in_(case_ids), Label.note.is_(None))
                .group_by(Label.case_id)
            ).all()
        )
        records = dict(
            session.execute(
                sa.select(Flag.case_id, sa.func.count(sa.distinct(Flag.record_id)))
                .where(Flag.case_id.in_(case_ids))
                .group_by(Flag.case_id)
            ).all()
        )
        closed = session.scalar(
            sa.select(sa.func.count())
            .select_from(Case)
            .where(Case.id.in_(case_ids), Case.status == "closed")
        )
    lost = [c for c in case_ids if per_case.get(c, 0) == 0]
    duplicated = [c for c in case_ids if per_case.get(c, 0) > records.get(c, 0)]
    return {
        "cases": len(case_ids),
        "distinct_cases": len(set(case_ids)),
        "closed": closed,
        "label_rows": int(sum(per_case.values())),
        "lost": len(lost),
        "duplicated": len(duplicated),
    }


def run(
    url: str, flags: int, entities: int, analysts: int, seconds: float, repeats: int, home: Path
) -> dict:
    from pipelines.accounts import hash_password

    loaded = load(url, flags, entities)
    store = loaded["store"]
    attach = attach_cost(store)
    password_hash = hash_password("benchmark-password")
    names = [f"analyst{i}" for i in range(analysts)] + ["lead"]
    for name in names:
        store.add_user(name, "analyst", password_hash, actor="benchmark")
    tokens = [store.create_token(name, actor="benchmark") for name in names]
    cookie, _csrf = store.create_session(store.get_user("lead"), ttl=timedelta(hours=2))
    port = _free_port()
    process = _start_app(url, port, home)
    base = f"http://127.0.0.1:{port}"
    try:
        pages = measure_pages(base, tokens[-1], cookie, repeats)
        verdict_cases = [item["id"] for item in store.queue_page(limit=repeats).items]
        verdicts = measure_verdicts(base, tokens[-1], verdict_cases)
        simulation = simulate_analysts(base, tokens[:analysts], seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)
    decided = simulation.pop("decided_cases")
    ledger = count_labels(store, decided)
    return {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "database": "PostgreSQL (loopback)",
            "flags": flags,
            "entities": entities,
            "load_seconds": loaded["seconds"],
        },
        "pages": pages,
        "verdict_post": verdicts,
        "attach_flags_to_cases": attach,
        "concurrent_analysts": {
            "analysts": analysts,
            "seconds": seconds,
            **simulation,
            "store_check": ledger,
        },
    }


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: queue and verdict latency, the concurrent analysts and what the
    store holds afterwards, and the cost of joining a run's flags to cases."""
    meta = report["meta"]
    lines = [
        f"{meta['flags']:,} flags over {meta['entities']:,} open cases (one per card), "
        f"loaded by COPY in {meta['load_seconds']:.0f} s; each flag's snapshot carries the "
        "payment the queue shows (amount with its currency, merchant, time). Server time is "
        "the app's own "
        "`Server-Timing` (handler + template + store queries); client time adds HTTP on "
        "loopback. Aims: queue page median ≤ 50 ms and p95 ≤ 150 ms; verdict POST "
        "median ≤ 30 ms.",
        "",
        "| request | server median | server p95 | client median | client p95 |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = {**report["pages"], "POST /api/queue/{id}/verdict": report["verdict_post"]}
    for name, timing in rows.items():
        server, client = timing["server"], timing.get("client")
        lines.append(
            f"| {name} | {server['median_ms']:.1f} ms | {server['p95_ms']:.1f} ms | "
            + (
                f"{client['median_ms']:.1f} ms | {client['p95_ms']:.1f} ms |"
                if client
                else "– | – |"
            )
        )
    sim = report["concurrent_analysts"]
    check = sim["store_check"]
    attach = report["attach_flags_to_cases"]
    lines += [
        "",
        f"{sim['analysts']} concurrent analysts for {sim['seconds']:.0f} s (claim next, read "
        f"the case, verdict): {sim['requests']:,} requests, {sim['5xx']} 5xx, "
        f"{sim['conflicts']} conflicts, {sim['errors']} transport errors; "
        f"{sim['verdicts_ok']:,} verdicts answered 200 on {check['distinct_cases']:,} "
        f"distinct cases; in the store afterwards {check['closed']:,} of them closed, "
        f"{check['label_rows']:,} label rows, {check['lost']} lost, "
        f"{check['duplicated']} duplicated.",
        "",
        f"A run's flags joining cases at completion: {attach['flags']:,} flags in "
        f"{attach['seconds']:.1f} s ({attach['flags_per_s']:,.0f} flags/s).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--flags", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--analysts", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", required=True, help="the report (JSON)")
    args = parser.parse_args(argv)
    base_url = args.database_url or os.environ.get("VIGIL_TEST_POSTGRES_URL") or DEFAULT_URL
    schema = f"vigil_bench_review_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    home = Path(os.environ.get("TMPDIR", "/tmp")) / schema
    try:
        report = run(
            url, args.flags, args.entities, args.analysts, args.seconds, args.repeats, home
        )
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
