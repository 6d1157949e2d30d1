"""Signed, expiring links to stored files (taskgate.files.signing): a link opens its own file
until it expires, and nothing else; every other link is refused with a 403."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from taskgate.errors import Forbidden
from taskgate.files import FileLinks

NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def parts(path: str) -> tuple[str, str, str]:
    """The file id, expires and signature of a link."""
    url = urlsplit(path)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path.startswith("/v1/files/") and set(query) == {"expires", "signature"}
    return url.path.removeprefix("/v1/files/"), query["expires"], query["signature"]


def test_a_link_opens_its_file_until_it_expires() -> None:
    clock = Clock()
    links = FileLinks("server-secret", 3600, clock=clock)
    file_id, expires, signature = parts(links.path("f1"))
    assert file_id == "f1"
    assert NOW + 3600 <= int(expires) <= NOW + 3600 + 60  # rounded up, at most a minute
    links.check("f1", expires, signature)
    clock.now = int(expires)  # the last second it is good
    links.check("f1", expires, signature)
    clock.now = int(expires) + 1
    with pytest.raises(Forbidden, match="expired"):
        links.check("f1", expires, signature)


def test_a_link_never_opens_another_file_nor_after_its_time_is_changed() -> None:
    links = FileLinks("server-secret", 3600, clock=Clock())
    _, expires, signature = parts(links.path("f1"))
    with pytest.raises(Forbidden, match="invalid file link signature"):
        links.check("f2", expires, signature)
    with pytest.raises(Forbidden, match="invalid file link signature"):
        links.check("f1", str(int(expires) + 86_400), signature)  # a longer life
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(Forbidden, match="invalid file link signature"):
        links.check("f1", expires, flipped)


def test_only_the_same_secret_checks_a_link() -> None:
    clock = Clock()
    mine, other = FileLinks("one", 600, clock=clock), FileLinks("two", 600, clock=clock)
    _, expires, signature = parts(mine.path("f1"))
    FileLinks("one", 60, clock=clock).check("f1", expires, signature)  # another process
    with pytest.raises(Forbidden):
        other.check("f1", expires, signature)
    assert parts(FileLinks.ephemeral().path("f1"))[2] != parts(FileLinks.ephemeral().path("f1"))[2]


@pytest.mark.parametrize(
    ("expires", "signature", "message"),
    [
        (None, "sig", "needs both expires and signature"),
        ("1700000000", None, "needs both expires and signature"),
        ("", "", "needs both expires and signature"),
        ("-1", "sig", "invalid file link signature"),
        ("1e9", "sig", "invalid file link signature"),
        ("\u0661\u0667" + "\u0660" * 8, "sig", "invalid file link signature"),  # not ASCII
        ("9" * 4000, "sig", "invalid file link signature"),
        ("1700003600", "é" * 50, "invalid file link signature"),
    ],
)
def test_malformed_links_are_refused(
    expires: str | None, signature: str | None, message: str
) -> None:
    with pytest.raises(Forbidden, match=message) as refused:
        FileLinks("s", 3600, clock=Clock()).check("f1", expires, signature)
    assert refused.value.status_code == 403


def test_links_within_a_step_are_the_same_and_short_lifetimes_step_by_the_second() -> None:
    clock = Clock(NOW)
    links = FileLinks("s", 3600, clock=clock)
    first = links.path("f1")
    clock.now = NOW + 0.5
    assert links.path("f1") == first  # a polling page sees one URL (a cached image)
    short = FileLinks("s", 2, clock=Clock(NOW + 0.25))
    assert int(parts(short.path("f1"))[1]) == NOW + 3  # 2.25 s up to the next second


def test_results_and_turns_get_their_files_signed_and_keep_the_rest() -> None:
    links = FileLinks("s", 60, clock=Clock())
    result = {
        "output": {"digest": "x"},
        "files": [
            {"id": "f1", "url": "/v1/files/f1", "content_type": "image/png"},
            {"url": "https://elsewhere/x.png"},  # no id: left as it is
            "not a file",
        ],
    }
    signed = links.result(result)
    assert signed["output"] == result["output"] and result["files"][0]["url"] == "/v1/files/f1"
    assert signed["files"][0] == {**result["files"][0], "url": links.path("f1")}
    assert signed["files"][1:] == result["files"][1:]
    absolute = links.result(result, "http://h:8000/")["files"][0]["url"]
    assert absolute == "http://h:8000" + links.path("f1")
    for plain in (None, "text", {"output": 1}, {"files": []}):
        assert links.result(plain) == plain
    assert parts(links.path("a/b"))[0] == "a%2Fb"  # an id never leaves the path
