"""The figures of `GET /system/df` as the docker CLI works them out, for what this host's engine cannot be made to
show in a test: build cache records shared or in use (the engine here has none), and sizes it did not work out (-1).
The engine tests cross-check the rest with `docker system df`."""

from __future__ import annotations

from moorage.containers.diskusage import build_cache_totals, image_totals, volume_totals
from moorage.schemas.system import DiskUsageSchema, disk_usage


def test_build_cache_counts_a_shared_record_once_and_what_is_in_use_as_kept() -> None:
    records = [
        {"ID": "a", "Size": 100, "InUse": True, "Shared": False},  # kept
        {"ID": "b", "Size": 40, "InUse": True, "Shared": True},  # counted by the record it shares with
        {"ID": "c", "Size": 10, "InUse": False, "Shared": False},
    ]
    assert build_cache_totals(records) == {
        "count": 3,
        "active": 2,
        "size": 110,
        "reclaimable": 10,
        "reclaimable_percent": 9,
    }


def test_an_image_in_use_keeps_what_it_does_not_share_and_unknown_sizes_count_for_nothing() -> None:
    images = [
        {"Id": "used", "Containers": 2, "Size": 300, "SharedSize": 100},
        {"Id": "unknown", "Containers": 1, "Size": -1, "SharedSize": -1},
        {"Id": "idle", "Containers": 0, "Size": 500, "SharedSize": 100},
    ]
    assert image_totals(images, 700) == {
        "count": 3,
        "active": 2,
        "size": 700,
        "reclaimable": 500,
        "reclaimable_percent": 71,
    }


def test_a_volume_whose_size_the_driver_does_not_tell_is_left_out_of_the_sizes() -> None:
    volumes = [
        {"Name": "remote", "UsageData": {"RefCount": 0, "Size": -1}},
        {"Name": "used", "UsageData": {"RefCount": 1, "Size": 30}},
        {"Name": "idle", "UsageData": {"RefCount": 0, "Size": 10}},
    ]
    assert volume_totals(volumes) == {"count": 3, "active": 1, "size": 40, "reclaimable": 10, "reclaimable_percent": 25}


def test_the_verbose_answer_orders_the_build_cache_as_the_cli_and_fits_its_schema() -> None:
    usage = {
        "LayersSize": 0,
        "BuildCache": [
            {"ID": "late", "Type": "regular", "Size": 1, "LastUsedAt": "2026-12-02T05:00:00.5Z"},
            {"ID": "never", "Type": "regular", "Size": 1, "LastUsedAt": None},
            {"ID": "early", "Type": "regular", "Size": 1, "LastUsedAt": "2026-12-01T05:00:00Z"},
        ],
        "Volumes": [{"Name": "remote", "Driver": "other", "UsageData": {"RefCount": -1, "Size": -1}}],
    }
    answer = disk_usage(usage, verbose=True)
    assert [r["id"] for r in answer["build_cache"]["items"]] == ["never", "early", "late"]
    assert answer["volumes"]["items"] == [{"name": "remote", "driver": "other", "links": None, "size": None}]
    assert answer["images"]["items"] == [] and answer["images"]["reclaimable_percent"] is None
    assert DiskUsageSchema().validate(answer) == {}
    assert DiskUsageSchema().validate(disk_usage(usage, verbose=False)) == {}
