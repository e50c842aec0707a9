"""Smoke tests of the two CPU-cost benches: the tick path offline (bench.tick_bench) and a
session's calls to the room server (bench.arena_bench's client_cost). They check that the
figures come out and that the run did what it says (commands published, no underrun, every
call measured), never the timings."""

from __future__ import annotations

from bench.arena_bench import client_cost
from bench.tick_bench import run as tick_run


async def test_the_tick_bench_publishes_every_tick_of_every_session() -> None:
    result = await tick_run(sessions=3, ticks=200, chunk=20, image=(24, 32))
    assert result["underruns"] == 0
    # Every tick publishes after the first chunk: at most the ticks before it are missing.
    assert 3 * 200 <= result["commands"] <= 3 * (200 + 60)
    for key in ("tick_us_per_session_tick", "requests_and_merges_us_per_session_tick",
                "send_handoff_us_per_session_tick"):
        assert result[key]["mean"] > 0 and result[key]["p50"] > 0
    cold = await tick_run(sessions=1, ticks=20, chunk=20, image=(24, 32), cold=True)
    assert cold["cold"] and cold["underruns"] == 0 and cold["commands"] >= 20


async def test_client_cost_measures_each_call_against_a_real_room_server() -> None:
    result = await client_cost(count=60)
    assert result["count"] == 60
    for key in ("send_joints_cpu_us", "rest_get_room_cpu_us", "rest_list_rooms_cpu_us"):
        assert result[key] > 0
