"""Which sessions' video rooms clash in a workspace (``camera_room_clash``): property
tests over ids and camera names made of the characters both may hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.sessions.spec import SessionSpec, camera_room, camera_room_clash

NAMES = st.text(alphabet="ab-", min_size=1, max_size=4)  # few letters: clashes are likely


def spec(session_id: str, cameras: list[str], workspace: str | None = "w") -> SessionSpec:
    return SessionSpec(session_id=session_id, policy_path="m", camera_names=tuple(cameras),
                       workspace_id=workspace)


@given(NAMES, st.lists(NAMES, min_size=1, max_size=3, unique=True),
       st.lists(st.tuples(NAMES, st.lists(NAMES, min_size=1, max_size=3, unique=True),
                          st.sampled_from(["w", "other"])), max_size=4))
def test_a_clash_is_reported_exactly_when_a_room_is_another_session_s_there(
    sid: str, cameras: list[str], others: list[tuple[str, list[str], str]]
) -> None:
    mine = {camera_room(sid, c) for c in cameras}
    taken = {camera_room(o, c) for o, cams, ws in others if ws == "w" and o != sid
             for c in cams}
    clash = camera_room_clash(spec(sid, cameras), "w",
                              [spec(o, cams, ws) for o, cams, ws in others])
    assert (clash is not None) == bool(mine & taken), (clash, mine, taken)
    if clash is not None:
        assert any(f"video room {room!r}" in clash for room in mine & taken), clash


def test_the_two_layouts_of_one_room_clash() -> None:
    clash = camera_room_clash(spec("a", ["x-front"]), "w", [spec("a-x", ["front"])])
    assert clash is not None and "'a-x-front'" in clash and "'a-x'" in clash
    assert camera_room_clash(spec("a", ["x-front"]), "w", [spec("a-x", ["front"], "v")]) is None
