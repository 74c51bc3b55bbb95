"""Bounded queue and pixel budget, deterministically: a fake app that holds every request until released."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import pytest

from littune.serve.admission import Admission, Busy, PixelBudget
from littune.serve.limits import ServeLimits

from .test_admission_asgi import _call


def _limits(**kw) -> ServeLimits:
    # one client here (no peer address): let it use every slot, the per-client share is tested apart
    return ServeLimits(**{"max_active": 2, "max_queue": 3, "queue_timeout_s": 30.0, "retry_after_s": 7,
                          "max_per_client": 2, **kw})


async def _run(limits: ServeLimits, n: int, hold_s: float | None = None) -> tuple[list[dict], int]:
    """n requests at once through Admission; returns each answer and the most that ran at once."""
    release, running, peak = asyncio.Event(), 0, 0

    async def app(scope, receive, send):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await (asyncio.sleep(hold_s) if hold_s is not None else release.wait())
        running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = Admission(app, limits)

    async def one() -> dict:
        return await _call(gate, _scope(), SimpleNamespace(receive=_receive))

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0.05)  # every request has arrived: 2 run, 3 wait, the rest were answered
    assert gate.active <= limits.max_active and gate.waiting <= limits.max_queue
    release.set()
    return list(await asyncio.gather(*tasks)), peak


def _scope() -> dict:
    return {"type": "http", "method": "GET", "path": "/api/info", "headers": []}


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


def test_queue_is_bounded_and_the_rest_get_503_json_with_retry_after():
    answers, peak = asyncio.run(_run(_limits(), 12))
    ok = [a for a in answers if a["status"] == 200]
    busy = [a for a in answers if a["status"] == 503]
    assert len(ok) == 2 + 3 and len(busy) == 12 - 5 and peak == 2  # max_active run, max_queue wait
    for a in busy:
        assert a["headers"][b"content-type"] == b"application/json" and a["headers"][b"retry-after"] == b"7"
        body = json.loads(a["body"])
        assert set(body) == {"error", "field"} and "busy" in body["error"] and "retry after 7 s" in body["error"]


def test_a_request_that_waits_too_long_gets_503():
    answers, _ = asyncio.run(_run(_limits(max_queue=10, queue_timeout_s=0.2), 4, hold_s=0.6))
    assert sorted(a["status"] for a in answers) == [200, 200, 503, 503]
    assert any("waited 0.2 s" in json.loads(a["body"])["error"] for a in answers if a["status"] == 503)


def test_pixel_budget_bounds_pixels_decoded_at_once():
    budget, held, peak, lock = PixelBudget(100, timeout_s=10), 0, 0, threading.Lock()

    def decode(pixels: int):
        nonlocal held, peak
        with budget.hold(pixels):
            with lock:
                held += pixels
                peak = max(peak, held)
            time.sleep(0.02)
            with lock:
                held -= pixels

    threads = [threading.Thread(target=decode, args=(p,)) for p in (60, 40, 30, 70, 100, 10, 50, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 100 and budget.free == 100  # full use, never more, all given back


def test_pixel_budget_times_out_with_busy():
    budget = PixelBudget(100, timeout_s=0.1)
    with budget.hold(80):
        with pytest.raises(Busy, match="waited 0.1 s for 30 bytes"):
            with budget.hold(30):
                pass
    with budget.hold(100):  # everything was given back, the failed wait took nothing
        assert budget.free == 0


def test_limits_refuse_a_budget_below_max_pixels():
    with pytest.raises(ValueError, match="pixel_budget"):
        ServeLimits(max_pixels=50_000_000, pixel_budget=40_000_000)
    with pytest.raises(ValueError, match="max_active"):
        ServeLimits(max_active=0)


def test_an_image_above_the_whole_budget_is_refused_at_once():
    from littune.serve.admission import TooCostly

    budget = PixelBudget(100 * 2**20, timeout_s=10)
    t0 = time.monotonic()
    with pytest.raises(TooCostly, match="takes 101 MiB, more than the server's decoding budget of 100 MiB"):
        with budget.hold(101 * 2**20):
            pass
    assert time.monotonic() - t0 < 1 and budget.free == budget.total
