"""Pure parts of the fleet, without Ray: registry records, error round trips, stale delete
marks, the order in which Triton replicas are tried."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.fleet.deletes import stale_marks
from orchestrator.fleet.registry import SessionRecord
from orchestrator.fleet.worker import _error, record_error
from orchestrator.sessions.errors import InvalidTransition, SessionError, TooManySessions
from orchestrator.sessions.spec import SessionSpec
from orchestrator.triton.replicas import ReplicatedTriton

names = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=12)


@given(sid=names, owner=st.integers(0, 64), cameras=st.lists(names, min_size=1, max_size=3),
       desired=st.sampled_from(["creating", "ready", "running", "stopped"]),
       latched=st.booleans(), reason=st.text(max_size=40),
       limits=st.dictionaries(names, st.tuples(st.floats(-1e3, 0), st.floats(1, 1e3)),
                              max_size=3))
def test_a_record_survives_its_json(sid: str, owner: int, cameras: list[str], desired: str,
                                    latched: bool, reason: str,
                                    limits: dict[str, tuple[float, float]]) -> None:
    spec = SessionSpec(session_id=sid, policy_path="m", camera_names=tuple(cameras),
                       workspace_id="ws", joint_limits=limits)
    record = SessionRecord(sid, owner, spec.to_dict(), desired, latched,  # type: ignore[arg-type]
                           reason, time.time())
    back = SessionRecord.from_json(record.to_json())
    assert back == record
    assert SessionSpec.from_dict(back.spec) == spec


@given(message=st.text(max_size=80))
def test_session_errors_cross_the_process_boundary_as_themselves(message: str) -> None:
    for exc in (TooManySessions(message), InvalidTransition(message)):
        again = record_error(_error(exc)["error"])
        assert type(again) is type(exc) and again.message == message
        assert again.status_code == exc.status_code
    unknown = record_error(["SomethingElse", 418, message])
    assert type(unknown) is SessionError and unknown.status_code == 418


@given(n=st.integers(1, 6), preferred=st.integers(0, 20),
       down=st.sets(st.integers(0, 5)))
def test_replicas_are_tried_preferred_first_and_cooling_ones_last(
        n: int, preferred: int, down: set[int]) -> None:
    client = ReplicatedTriton([f"127.0.0.1:{9000 + i}" for i in range(n)], preferred=preferred)
    for i in down:
        if i < n:
            client._down_until[i] = time.monotonic() + 60
    order = client.order()
    assert sorted(order) == list(range(n))  # every replica, once
    up = [i for i in order if i not in down]
    assert order[:len(up)] == up  # the live ones first
    if preferred % n not in down:
        assert order[0] == preferred % n


jobs = st.text("0123456789abcdef", min_size=8, max_size=8)


@given(marks=st.dictionaries(
           st.one_of(st.builds(lambda j, n: f"api-{j}-{n}", jobs, st.integers(1, 99)),
                     st.builds(lambda i, p, n: f"worker-{i}-{p}-{n}", st.integers(0, 3),
                               st.integers(100, 103), st.integers(1, 99))),
           st.floats(0, 200), max_size=6),
       live=st.sets(jobs, max_size=4), now=st.floats(0, 200),
       workers=st.sets(st.integers(0, 3)))
def test_a_delete_mark_is_stale_only_when_its_writer_is_gone_or_out_of_time(
        marks: dict[str, float], live: set[str], now: float, workers: set[int]) -> None:
    stale = stale_marks(marks, live, now, 50.0, workers)
    for by, since in marks.items():
        kind, writer = by.split("-")[:2]
        gone = writer not in live if kind == "api" else int(writer) not in workers
        assert (by in stale) == (gone or now - since > 50.0), (by, since)
