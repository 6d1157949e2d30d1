"""Input and output media of providers: references, data URIs, base64."""

from __future__ import annotations

import dataclasses

import pytest

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import Call, OutputFile
from taskgate.providers.media import (
    data_uri,
    from_data_uri,
    inline_file_images,
    input_bytes,
    input_url,
    name_for,
    output_from_b64,
)

ROUTE = Route(name="r", models=["*"], provider="mock", instances=[Instance(name="i")])


def call(files: dict[str, OutputFile], fetched: list[str] | None = None) -> Call:
    """A call reading ``files``; a client's URL it downloads is noted in ``fetched``."""

    async def read(file_id: str) -> OutputFile:
        if file_id not in files:
            raise errors.InvalidInput(f"input file {file_id!r} not found")
        return files[file_id]

    async def fetch(url: str, what: str) -> OutputFile:
        assert fetched is not None, "no download expected"
        fetched.append(url)
        return OutputFile(b"fetched", "image/png", f"{what}.png")

    return Call(
        "t",
        "image_edit",
        "m",
        None,
        {},
        1,
        ROUTE.instances[0],
        ROUTE,
        read_file=read,
        fetch_url=fetch,
    )


async def test_a_file_reference_reads_the_tenants_file() -> None:
    f = OutputFile(b"\x89PNG", "image/png", "a.png")
    assert await input_bytes(call({"f1": f}), {"file_id": "f1"}) == f
    with pytest.raises(errors.InvalidInput, match="f2"):
        await input_bytes(call({}), {"file_id": "f2"})


async def test_urls_pass_through_and_our_files_become_data_uris() -> None:
    f = OutputFile(b"abc", "image/png", "a.png")
    c = call({"f1": f})
    with pytest.raises(errors.InvalidInput, match="media URLs from clients are refused"):
        await input_url(c, "https://example.com/a.png")
    allowed = dataclasses.replace(
        c, route=ROUTE.model_copy(update={"options": {"client_media_urls": True}})
    )
    assert await input_url(allowed, "https://example.com/a.png") == "https://example.com/a.png"
    assert await input_url(c, {"file_id": "f1"}) == "data:image/png;base64,YWJj"
    with pytest.raises(errors.InvalidInput, match="media URLs from clients are refused"):
        await input_bytes(c, "https://example.com/a.png")  # not downloaded either


async def test_bytes_of_a_clients_url_are_downloaded_only_where_the_route_allows_it() -> None:
    fetched: list[str] = []
    allowed = dataclasses.replace(call({}, fetched), route=ALLOWING)
    got = await input_bytes(allowed, " HTTPS://example.com/a.png", "image")
    assert (got.data, fetched) == (b"fetched", ["https://example.com/a.png"])
    with pytest.raises(errors.InvalidInput, match="media URLs from clients are refused"):
        await input_bytes(call({}), "https://example.com/a.png", "image")
    bare = Call("t", "image_edit", "m", None, {}, 1, ROUTE.instances[0], ALLOWING)
    with pytest.raises(errors.InvalidInput, match="not downloaded here"):
        await input_bytes(bare, "https://example.com/a.png", "image")


def test_data_uris_round_trip_and_bad_ones_are_invalid_input() -> None:
    f = from_data_uri("data:audio/wav;base64,UklGRg==", "audio")
    assert (f.data, f.content_type, f.name) == (b"RIFF", "audio/wav", "audio.wav")
    assert from_data_uri(data_uri(f)).data == b"RIFF"
    for bad in ("data:,plain", "data:image/png;base64,@@@", "nocomma"):
        with pytest.raises(errors.InvalidInput):
            from_data_uri(bad)


def test_bad_base64_from_a_backend_is_a_bad_response() -> None:
    assert output_from_b64("YWJj", "image/png", "x.png").data == b"abc"
    with pytest.raises(errors.BadResponse):
        output_from_b64("not base64!", "image/png", "x.png")
    assert name_for("image", "image/jpeg") == "image.jpg"
    assert name_for("blob", "application/x-unknown") == "blob.bin"


PNG_URI = "data:image/png;base64,iVBORw0KGgo="
ALLOWING = ROUTE.model_copy(update={"options": {"client_media_urls": True}})


@pytest.mark.parametrize(
    ("given", "by_default", "where_allowed"),
    [
        # http(s) in any case, after any blank: refused unless the route allows client URLs
        ("HTTP://h/x.png", None, "http://h/x.png"),
        ("Http://h/x.png", None, "http://h/x.png"),
        ("hTTps://h/x.png", None, "https://h/x.png"),
        ("HTTPS://h/x.png", None, "https://h/x.png"),
        (" http://h/x.png", None, "http://h/x.png"),
        ("\thttp://h/x.png\n", None, "http://h/x.png"),
        # never: another scheme, no scheme, no host, a data URI that is not base64
        ("//h/x.png", None, None),
        ("file:///etc/passwd", None, None),
        ("FILE:///etc/passwd", None, None),
        ("ftp://h/x", None, None),
        ("gopher://h:70/_x", None, None),
        ("javascript:alert(1)", None, None),
        ("x.png", None, None),
        ("/etc/passwd", None, None),
        ("http:///x.png", None, None),
        ("http:x.png", None, None),
        ("h\ttp://h/x.png", None, None),
        ("data:text/plain,hello", None, None),
        # a base64 data URI: always, as a clean data: URI
        (PNG_URI, PNG_URI, PNG_URI),
        (" DATA:image/png;base64,iVBORw0KGgo=", PNG_URI, PNG_URI),
    ],
)
async def test_one_rule_for_the_urls_a_client_may_give(
    given: str, by_default: str | None, where_allowed: str | None
) -> None:
    fetched: list[str] = []
    plain = call({}, fetched)
    allowing = dataclasses.replace(plain, route=ALLOWING)
    for c, expected in ((plain, by_default), (allowing, where_allowed)):
        if expected is None:
            with pytest.raises(errors.InvalidInput, match=r"^image: |^image must be"):
                await input_url(c, given, "image")
            with pytest.raises(errors.InvalidInput):
                await input_bytes(c, given, "image")
        else:
            assert await input_url(c, given, "image") == expected
            await input_bytes(c, given, "image")
    # only an http(s) URL is downloaded (clean), and only where the route allows it
    assert fetched == ([] if by_default is not None or where_allowed is None else [where_allowed])


@pytest.mark.parametrize("url", ["HTTP://10.0.0.1/x.png", " http://h/x.png", "file:///etc/passwd"])
@pytest.mark.parametrize("field", ["image_url", "video_url"])
async def test_chat_media_parts_follow_the_rule(url: str, field: str) -> None:
    messages = [{"role": "user", "content": [{"type": field, field: {"url": url}}]}]
    c = dataclasses.replace(call({}), kind="chat", input={"messages": messages})
    with pytest.raises(errors.InvalidInput):
        await inline_file_images(c)


async def test_chat_media_parts_are_sent_clean_and_files_inlined() -> None:
    f = OutputFile(b"abc", "image/png", "a.png")
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": " DATA:image/png;base64,YWJj", "detail": "low"}},
        {"type": "image_url", "image_url": {"file_id": "f1", "detail": "high"}},
        {"type": "video_url", "video_url": "HTTPS://h/v.mp4"},
    ]
    c = dataclasses.replace(
        call({"f1": f}),
        kind="chat",
        input={"messages": [{"role": "user", "content": content}]},
        route=ALLOWING,
    )
    [message] = (await inline_file_images(c)).input["messages"]
    assert message["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,YWJj", "detail": "low"}},
        {"type": "image_url", "image_url": {"detail": "high", "url": "data:image/png;base64,YWJj"}},
        {"type": "video_url", "video_url": "https://h/v.mp4"},
    ]


async def test_a_chat_without_media_parts_is_sent_as_it_is() -> None:
    text_only = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    c = dataclasses.replace(call({}), kind="chat", input={"messages": text_only})
    assert await inline_file_images(c) is c  # not copied: most chats have no media
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    c = dataclasses.replace(call({}), kind="chat", input={"messages": parts})
    assert (await inline_file_images(c)).input == c.input
