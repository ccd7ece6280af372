"""Event ids and resumption: a client that reconnects after any event gets every later one once, even where many
events share a moment (log lines written in the same nanosecond)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from moorage.errors import BadRequest
from moorage.timestamps import rfc3339_ns
from moorage.web.sse import Places, Position, resumed_from, sse_event


def stamp(second: int, fraction: str) -> str:
    return f"2026-12-04T10:00:{second:02d}{'.' + fraction if fraction else ''}Z"


def ids(moments: list[str], after: Position | None = None) -> list[str]:
    places = Places(after)
    return [f"{moment}:{index}" for moment in moments if (index := places.place(moment)) is not None]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["", "1", "5", "123456789"])), max_size=30), st.data())
def test_resuming_after_any_event_gives_exactly_the_rest(times: list[tuple[int, str]], data: st.DataObject) -> None:
    moments = sorted((stamp(s, f) for s, f in times), key=rfc3339_ns)
    sent = ids(moments)
    assert len(set(sent)) == len(sent)
    cut = data.draw(st.integers(0, len(sent)))
    if cut == 0:
        return
    request = make_mocked_request("GET", "/", headers={"Last-Event-ID": sent[cut - 1]})
    # What the engine sends again on `since=moment`: every line of that moment onwards.
    after = resumed_from(request)
    assert after is not None
    again = [moment for moment in moments if rfc3339_ns(moment) >= after.ns]
    assert ids(again, after) == sent[cut:]


def test_the_engines_stamps_are_read_to_the_nanosecond() -> None:
    assert rfc3339_ns("2026-12-04T10:00:00.000000001Z") - rfc3339_ns("2026-12-04T10:00:00Z") == 1
    assert rfc3339_ns("2026-12-04T10:00:00.1Z") == rfc3339_ns("2026-12-04T10:00:00.100000000Z")


@pytest.mark.parametrize(
    "value",
    [
        "nonsense",
        "2026-12-04T10:00:00Z",
        "2026-12-04T10:00:00.Z:1",
        "2026-12-04T10:00:00+01:00:1",
        "12:-1",
        "1:" + "9" * 10,
        "9" * 19 + ":0",  # past 2262: the engine's int64 nanoseconds overflow
        "9999-12-31T00:00:00Z:0",
    ],
)
def test_an_id_not_of_ours_is_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(BadRequest) as raised:
        resumed_from(make_mocked_request("GET", "/", headers={"Last-Event-ID": value}))
    assert [e["field"] for e in raised.value.errors] == ["Last-Event-ID"]


def test_an_engine_events_id_is_its_time_in_nanoseconds() -> None:
    request = make_mocked_request("GET", "/", headers={"Last-Event-ID": "1796378400123456789:2"})
    assert resumed_from(request) == Position(1796378400123456789, 2)


def test_an_event_is_one_data_line_whatever_it_holds() -> None:
    framed = sse_event("line", {"line": "two\nlines\r\n"}, "x:0")
    assert framed == b'id: x:0\nevent: line\ndata: {"line":"two\\nlines\\r\\n"}\n\n'
