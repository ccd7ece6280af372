"""to_the_end: a step that must not be stopped half-way runs to its end, and the cancellation is passed on."""

from __future__ import annotations

import asyncio

import pytest

from moorage.background import to_the_end


async def _slow(result: int | None = None, fails: bool = False) -> int | None:
    await asyncio.sleep(0.2)
    if fails:
        raise ValueError("the step failed")
    return result


@pytest.mark.parametrize("fails", [False, True])
async def test_a_cancelled_caller_waits_for_the_step_then_is_cancelled(fails: bool) -> None:
    ended = asyncio.Event()

    async def step() -> None:
        try:
            await _slow(fails=fails)
        finally:
            ended.set()

    caller = asyncio.create_task(to_the_end(step()))
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError) as raised:
        await caller
    assert ended.is_set()  # the step ran to its end before the caller was let go
    assert isinstance(raised.value.__cause__, ValueError) is fails


async def test_without_a_cancellation_the_step_answers_or_raises() -> None:
    assert await to_the_end(_slow(5)) == 5
    with pytest.raises(ValueError):
        await to_the_end(_slow(fails=True))
