"""Retention's pure parts: ages, the configured cutoffs per tenant, the files an input names,
and how ``taskgate purge`` words its answer."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from taskgate.cli.retention import size, summary
from taskgate.config import RetentionSettings, Settings
from taskgate.ops.retention import DAY, parse_age, scopes
from taskgate.store import Scope
from taskgate.store.file_refs import file_ids

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("12h", 43200),
        ("7d", 7 * DAY),
        ("2w", 14 * DAY),
        ("1.5h", 5400),
        (" 7D ", 7 * DAY),
        ("90", 90),
        (3600, 3600),
        (0.5, 0.5),
        ("0s", 0),
    ],
)
def test_ages_in_seconds_or_with_a_unit(given: str | float, seconds: float) -> None:
    assert parse_age(given) == seconds


@pytest.mark.parametrize("given", ["7x", "d", "", "-1d", "7 days", "1e3s", -5, True, "inf"])
def test_anything_else_is_not_an_age(given: Any) -> None:
    with pytest.raises(ValueError, match="is not an age"):
        parse_age(given)


def test_the_default_keeps_thirty_days_for_every_tenant() -> None:
    assert scopes(Settings().retention, NOW) == [Scope(NOW - 30 * DAY)]


def test_tenants_with_days_of_their_own_are_left_out_of_the_default() -> None:
    conf = RetentionSettings(days=30, tenants={"b": 7, "a": None, "c": 0.5})
    assert scopes(conf, NOW) == [
        Scope(NOW - 7 * DAY, "b"),
        Scope(NOW - 0.5 * DAY, "c"),
        Scope(NOW - 30 * DAY, None, ("a", "b", "c")),
    ]
    assert scopes(conf, NOW, "a") == []
    assert scopes(conf, NOW, "b") == [Scope(NOW - 7 * DAY, "b")]
    assert scopes(conf, NOW, "zed") == [Scope(NOW - 30 * DAY, "zed")]


def test_no_default_days_purges_only_the_tenants_that_have_some() -> None:
    conf = RetentionSettings(days=None, tenants={"b": 7})
    assert scopes(conf, NOW) == [Scope(NOW - 7 * DAY, "b")]
    assert scopes(conf, NOW, "other") == []


@pytest.mark.parametrize(
    "bad",
    [{"days": 0}, {"days": -1}, {"tenants": {"a": 0}}, {"batch": 0}, {"interval": 0}, {"x": 1}],
)
def test_bad_retention_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetentionSettings(**bad)


def test_the_files_an_input_names_at_any_depth() -> None:
    value = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"file_id": "a"}}]},
            {"role": "user", "content": "a file_id in words"},
        ],
        "image": [{"file_id": "b"}, {"file_id": "a"}],
        "mask": {"file_id": "c", "nested": {"file_id": "d"}},
        "not": {"file_id": 5},
    }
    assert file_ids(value) == {"a", "b", "c", "d"}
    assert file_ids("plain text") == set()
    assert file_ids(42) == set()
    assert file_ids([[{"file_id": "e"}]]) == {"e"}


def test_the_purge_summary_names_each_count_and_the_cutoffs() -> None:
    answer = {
        "dry_run": False,
        "cutoffs": {"acme": "2024-01-01T00:00:00.000Z", "*": "2023-12-01T00:00:00.000Z"},
        "tasks": 1,
        "attempts": 2,
        "logs": 1,
        "webhook_deliveries": 0,
        "batches": 0,
        "files": 3,
        "bytes": 1234567,
    }
    assert summary(answer).splitlines() == [
        "Purged 1 task, 2 attempts, 1 log entry, 0 webhook deliveries, 0 batches and 3 files"
        " (1.2 MB).",
        "  tenant acme: what ended before 2024-01-01T00:00:00.000Z",
        "  every other tenant: what ended before 2023-12-01T00:00:00.000Z",
    ]
    dry = summary({**answer, "dry_run": True, "cutoffs": {"*": "2024-01-01T00:00:00.000Z"}})
    assert dry.startswith("Would purge 1 task,")
    assert dry.endswith("every tenant: what ended before 2024-01-01T00:00:00.000Z")
    assert "kept forever" in summary({**answer, "cutoffs": {}})


@pytest.mark.parametrize(
    ("n", "shown"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (2_500_000, "2.5 MB")]
)
def test_sizes_as_people_read_them(n: int, shown: str) -> None:
    assert size(n) == shown
