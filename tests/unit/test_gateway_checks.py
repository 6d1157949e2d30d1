"""Submissions the store could not keep are refused before anything is stored."""

from __future__ import annotations

from typing import Any

import pytest

from taskgate.errors import BadRequest
from taskgate.submission import Submission, check_storable


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_nesting_and_huge_integers_are_a_400_not_a_crash() -> None:
    assert check_storable(Submission("chat", "m", nested(100), {})).input == nested(100)
    with pytest.raises(BadRequest, match="storable JSON"):
        check_storable(Submission("chat", "m", nested(900), {}))  # deeper than recursion allows
    with pytest.raises(BadRequest, match="storable JSON"):
        check_storable(Submission("chat", "m", "x", {"seed": 2**70}))


class NoStore:
    """A store that must not be reached: the submission is refused before it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name}) for a refused submission")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"timeout": 1e20}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"queue_timeout": float("inf")}, "queue_timeout"),
        ({"queue_timeout": 0}, "queue_timeout"),
        ({"params": {"temperature": 1e20}}, "temperature"),
        ({"params": {"deep": [{"x": float("nan")}]}}, "finite"),
        ({"params": {"mock_size": 100_000}}, "mock_size"),  # the mock provider's own bound
    ],
)
async def test_every_api_s_submission_is_bounded_before_the_store(
    changes: dict[str, Any], needle: str
) -> None:
    from taskgate.config import load
    from taskgate.events import MemoryEvents
    from taskgate.gateway import Gateway
    from taskgate.models import ApiKey

    gw = Gateway(load(None, {}), NoStore(), MemoryEvents())  # type: ignore[arg-type]
    key = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)
    sub = Submission(**{"kind": "chat", "model": "mock", "input": "hi", "params": {}, **changes})
    with pytest.raises(BadRequest, match=needle):
        await gw.submit(key, sub)
    with pytest.raises(BadRequest, match=needle):
        await gw.submit_batch(key, sub, ["mock"])


URL = "https://images.example.com/cat.png"


@pytest.mark.parametrize(
    ("kind", "input"),
    [
        ("image_edit", {"prompt": "x", "image": URL}),
        ("image_edit", {"prompt": "x", "image": ["data:image/png;base64,AA==", f" {URL}"]}),
        ("image_edit", {"prompt": "x", "images": [URL]}),  # AIFlow's gpt-image-1 payload
        ("image_edit", {"prompt": "x", "image": {"file_id": "f"}, "mask": URL.upper()}),
        ("video", {"prompt": "x", "reference_images": [URL]}),
        ("transcription", URL),
        ("transcription", {"file": URL}),
        (
            "chat",
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": URL}}]}
                ]
            },
        ),
        (
            "chat",
            {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": URL}]}]},
        ),
    ],
)
async def test_media_urls_are_refused_at_submit_where_the_route_does_not_take_them(
    kind: str, input: Any
) -> None:
    from taskgate.config import load
    from taskgate.events import MemoryEvents
    from taskgate.gateway import Gateway
    from taskgate.models import ApiKey

    settings = load(None, {})
    gw = Gateway(settings, NoStore(), MemoryEvents())  # type: ignore[arg-type]
    key = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)
    sub = Submission(kind, "mock", input, {})
    with pytest.raises(BadRequest, match=r"media URLs \(http or https\) are not accepted") as err:
        await gw.submit(key, sub)
    assert "upload the file" in err.value.message and "data: URI" in err.value.message
    assert err.value.details["field"] == "input"
    with pytest.raises(BadRequest, match="not accepted for model 'mock'"):
        await gw.submit_batch(key, sub, ["mock"])


def test_a_route_takes_media_urls_only_if_every_instance_does() -> None:
    from taskgate.config import Instance, Route
    from taskgate.providers.media import allows_client_urls, client_media_urls

    def route(opts: dict[str, Any], *inst_opts: dict[str, Any]) -> Route:
        instances = [Instance(name=f"i{n}", options=o) for n, o in enumerate(inst_opts or [{}])]
        return Route(name="r", models=["m"], provider="mock", instances=instances, options=opts)

    allow = {"client_media_urls": True}
    assert allows_client_urls(route(allow)) and not allows_client_urls(route({}))
    assert allows_client_urls(route({}, allow, allow))
    assert not allows_client_urls(route(allow, {}, {"client_media_urls": False}))
    # text that merely holds a URL, a URL under another key, and data URIs are no media URLs
    chat = {"messages": [{"role": "user", "content": f"what is at {URL}?"}]}
    assert client_media_urls(chat, "chat") == []
    assert client_media_urls({"prompt": URL, "source": URL, "image": "data:,x"}, "image") == []
    assert client_media_urls(URL, "chat") == []
    assert client_media_urls({"image": [URL, {"file_id": "f"}]}, "image_edit") == [URL]
