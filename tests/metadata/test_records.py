"""Times and records as JSON: one definition, shared by the API, the event log and exports."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from gateway.datasets.export import record_document
from gateway.metadata.base import ImageRecord, iso_time, parse_iso_time, to_millis

WHEN = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)


def record() -> ImageRecord:
    time = to_millis(WHEN)
    return ImageRecord(
        collection="photos", id="0123456789abcdef01234567", image="a.png", time=time, updated_at=time + timedelta(seconds=1),
        content_type="image/png", format="png", width=3, height=2, size=10, sha256="0" * 64,
        path="photos/0123456789abcdef01234567.png", properties={"tags": ["x"], "n": 1}, owner="alice", version=2,
    )


def test_times_are_written_in_utc_to_the_millisecond_with_a_z() -> None:
    assert iso_time(WHEN) == "2024-05-01T12:30:15.123Z"
    assert iso_time(WHEN.astimezone(timezone(timedelta(hours=-5)))) == "2024-05-01T12:30:15.123Z"
    assert iso_time(WHEN.replace(microsecond=0)) == "2024-05-01T12:30:15.000Z"
    assert to_millis(WHEN) == WHEN.replace(microsecond=123000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01T12:30:15.123Z", datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=timezone.utc)),
        ("2024-05-01T07:30:15-05:00", datetime(2024, 5, 1, 12, 30, 15, tzinfo=timezone.utc)),
        ("2024-05-01T12:30:15", datetime(2024, 5, 1, 12, 30, 15, tzinfo=timezone.utc)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ],
)
def test_times_are_read_as_aware_utc(raw: str, expected: datetime) -> None:
    parsed = parse_iso_time(raw)
    assert parsed == expected and parsed.tzinfo == timezone.utc


def test_unreadable_and_out_of_range_times_raise_distinct_errors() -> None:
    with pytest.raises(ValueError):
        parse_iso_time("yesterday")
    with pytest.raises(OverflowError):
        parse_iso_time("9999-12-31T23:00:00-05:00")


def test_a_record_survives_json() -> None:
    original = record()
    data = json.loads(json.dumps(original.to_json()))
    assert ImageRecord.from_json(data) == original
    assert list(data) == [
        "collection", "id", "image", "time", "updated_at", "content_type", "format", "width", "height", "size",
        "sha256", "path", "properties", "owner", "version", "orientation",
    ]
    assert (data["time"], data["updated_at"]) == ("2024-05-01T12:30:15.123Z", "2024-05-01T12:30:16.123Z")


def test_records_an_older_gateway_put_in_the_event_log_still_read() -> None:
    # It wrote `datetime.isoformat()`: an offset instead of the Z, microseconds.
    data = record().to_json() | {"time": "2024-05-01T12:30:15.123000+00:00", "updated_at": "2024-05-01T12:30:16.123000+00:00"}
    assert ImageRecord.from_json(data) == record()


def test_the_export_document_keeps_its_exact_bytes() -> None:
    line = json.dumps(record_document(record()), ensure_ascii=False, separators=(",", ":"))
    assert line == (
        '{"collection":"photos","image":"a.png","time":"2024-05-01T12:30:15.123Z","updated_at":"2024-05-01T12:30:16.123Z",'
        '"content_type":"image/png","format":"png","width":3,"height":2,"size":10,"sha256":"' + "0" * 64 + '",'
        '"path":"photos/0123456789abcdef01234567.png","properties":{"tags":["x"],"n":1},"owner":"alice","version":2,'
        '"orientation":null,"_id":"0123456789abcdef01234567","member":"0123456789abcdef01234567.png"}'
    )
