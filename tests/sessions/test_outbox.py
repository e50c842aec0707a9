"""The command outbox a session's tick hands its command to: what it sends, drops and
counts (its own task sends; a stop drops what waits)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.sessions.scheduler import Outbox


async def test_a_command_waiting_at_a_stop_is_never_sent() -> None:
    sent: list[Mapping[str, float]] = []
    done: list[tuple[Mapping[str, float], bool]] = []

    async def send(command: Mapping[str, float]) -> bool:
        sent.append(command)
        return True

    outbox = Outbox(send, lambda c, at, ok, ctx: done.append((c, ok)))
    task = asyncio.create_task(outbox.run())
    outbox.put({"a": 1.0}, 0.0)
    outbox.clear()  # e.g. an emergency stop, before the outbox's task ran
    await asyncio.sleep(0.05)
    outbox.put({"a": 2.0}, 0.1)
    async with asyncio.timeout(30):
        while len(sent) < 1:
            await asyncio.sleep(0.01)
    task.cancel()
    assert sent == [{"a": 2.0}]
    assert outbox.stats.dropped_on_stop == 1 and done == [({"a": 2.0}, True)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["put", "clear", "send", "refuse", "raise"]), max_size=40))
def test_outbox_accounts_for_every_command(ops: list[str]) -> None:
    results = {"send": True, "refuse": False}
    done: list[bool] = []

    async def scenario() -> None:
        mode = ["send"]

        async def send(_: Mapping[str, float]) -> bool:
            if mode[0] == "raise":
                raise OSError("connection reset")
            return results[mode[0]]

        outbox = Outbox(send, lambda c, at, ok, ctx: done.append(ok))
        for i, op in enumerate(ops):
            if op == "put":
                outbox.put({"j": float(i)}, float(i))
            elif op == "clear":
                outbox.clear()
            else:
                mode[0] = op
                await outbox.send_pending()
        s = outbox.stats
        waiting = 1 if outbox.pending else 0
        # Every command handed over is sent, refused, failed, replaced, dropped at a stop,
        # or still waiting: none vanishes.
        assert s.handed == s.sent + s.not_sent + s.superseded + s.dropped_on_stop + waiting
        assert s.failed <= s.not_sent and s.repeated <= max(0, s.sent - 1)
        assert done.count(True) == s.sent
        assert done.count(False) == s.not_sent + s.superseded

    asyncio.run(scenario())


async def test_a_repeated_command_is_counted() -> None:
    async def send(_: Mapping[str, float]) -> bool:
        return True

    outbox = Outbox(send, lambda *_: None)
    for values in ({"a": 1.0}, {"a": 1.0}, {"a": 2.0}, {"a": 2.0}, {"a": 2.0}):
        outbox.put(dict(values), 0.0)
        await outbox.send_pending()
    assert outbox.stats.sent == 5 and outbox.stats.repeated == 3
