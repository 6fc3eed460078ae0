"""``POST /score`` of ``vigil api`` at the cost of the scoring itself.

A payment scored from the running state costs well under a millisecond; through
FastAPI's usual path it paid more than that again in framework work: a thread-pool
hand-off for a sync endpoint, routing and dependency solving, the body validated field
by field and the answer encoded value by value. Here the body is parsed and validated by
pydantic-core in one call, the payment is scored on the event loop when the running
state covers the model (in the thread pool otherwise: the kept-rows path takes tens of
milliseconds), and the answer is written as JSON bytes. :class:`ScoreRoute` answers the
route straight from the ASGI scope in front of the router; the FastAPI route stays for
the OpenAPI schema and calls the same :class:`ScoreAnswer`. Errors answer as FastAPI's
would: 422 with ``detail`` (the validation errors, or the scorer's one-line reason).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

try:  # installed with prefect; the standard library's json is the fallback
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

_JSON = b"application/json"


def dumps(value: Any) -> bytes:
    """JSON bytes (numpy numbers as numbers, anything else unknown as text)."""
    if orjson is not None:
        return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(value, default=str).encode()


class ScoreAnswer:
    """The status and JSON body of one ``POST /score`` (see the module docstring)."""

    def __init__(self, scorer, metrics, request_type) -> None:
        self.scorer, self.metrics, self.request_type = scorer, metrics, request_type

    async def __call__(self, body: bytes) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            parsed = self.request_type.model_validate_json(body)
        except ValidationError as exc:
            self.metrics.failed("invalid", time.perf_counter() - started)
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            detail = [{**e, "loc": ["body", *e["loc"]]} for e in errors]
            return 422, dumps({"detail": detail})
        try:
            if self.scorer.scores_inline():
                response = self.scorer.score(parsed)
            else:
                response = await run_in_threadpool(self.scorer.score, parsed)
        except ValueError as exc:  # missing columns, unknown model: the caller's to fix
            self.metrics.failed("invalid", time.perf_counter() - started)
            return 422, dumps({"detail": str(exc)})
        except Exception:
            self.metrics.failed("internal", time.perf_counter() - started)
            raise
        content = dumps(response)
        self.metrics.observe(response, time.perf_counter() - started)
        return 200, content


class ScoreRoute:
    """ASGI middleware: ``POST /score`` answered by ``answer``, anything else by the app."""

    def __init__(self, app, answer: ScoreAnswer, path: str = "/score") -> None:
        self.app, self.answer, self.path = app, answer, path

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in (self.path, scope.get("root_path", "") + self.path)
        ):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        status, content = await self.answer(body)
        headers = [(b"content-type", _JSON), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
