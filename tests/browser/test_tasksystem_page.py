"""A page on another origin that talks to taskgate as AI Task System's web page does (our own
page, tests/browser/tasksystem_page.html: its requests and the fields it reads), in Chromium:
with ``cors`` naming its origin and ``auth.anonymous_tenant`` standing for the key it never
sends, it sends a message with an image, shows the answer, lists the conversation in its
history panel, and after a reload shows the conversation again, the image included."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from taskgate.providers.mock import solid_png
from tests.e2e.conftest import Server, free_port, mock_route

HERE = Path(__file__).parent


@pytest.fixture
def page_origin() -> Iterator[str]:
    """This folder served over HTTP on a port of its own: an origin other than taskgate's."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HERE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def open_server(make_server: Any, page_origin: str) -> Server:
    server: Server = make_server(
        [mock_route()], cors={"allow_origins": [page_origin]}, auth={"anonymous_tenant": "local"}
    )
    server.start()
    return server


def test_the_page_chats_lists_its_history_and_shows_it_again_after_a_reload(
    page: Page, open_server: Server, page_origin: str, tmp_path: Path
) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(solid_png(4, (200, 30, 30)))
    page.goto(f"{page_origin}/tasksystem_page.html?api={open_server.url}")
    expect(page.locator("#history li")).to_have_count(0)
    page.fill("#prompt", "hello there")
    page.set_input_files("#files", str(image))
    page.click("#sendButton")

    answer = page.locator(".message.assistant", has_text="mock reply to: hello there")
    expect(answer).to_have_text("mock: mock reply to: hello there")
    expect(page.locator(".loading")).to_have_count(0)
    expect(page.locator("#history li")).to_have_text(["hello there"])

    page.reload()
    expect(page.locator(".message.user p")).to_have_text(["hello there"])
    expect(page.locator(".message.assistant")).to_have_text(["mock: mock reply to: hello there"])
    shown = page.locator(".message.user img")
    src = shown.get_attribute("src") or ""
    assert src.startswith(f"{open_server.url}/files/") and src.endswith(".png")
    page.wait_for_function("document.querySelector('.message.user img').naturalWidth === 4")
    expect(page.locator("#history li")).to_have_text(["hello there"])

    # a second turn joins the same conversation, and the panel still lists one
    page.fill("#prompt", "and again")
    page.click("#sendButton")
    expect(page.locator(".message.assistant", has_text="and again")).to_have_count(1)
    page.reload()
    expect(page.locator(".message.user p")).to_have_text(["hello there", "and again"])
    expect(page.locator("#history li")).to_have_count(1)


def test_the_page_served_by_taskgate_itself_needs_no_cors(page: Page, make_server: Any) -> None:
    """AI Task System's page calls its own origin: with ``static_dirs`` taskgate serves it,
    and the page works with no ``cors`` at all."""
    server: Server = make_server(
        [mock_route()], static_dirs={"/chat": str(HERE)}, auth={"anonymous_tenant": "local"}
    )
    server.start()
    page.goto(f"{server.url}/chat/tasksystem_page.html")
    page.fill("#prompt", "same origin")
    page.click("#sendButton")
    expect(page.locator(".message.assistant")).to_have_text(["mock: mock reply to: same origin"])
    expect(page.locator("#history li")).to_have_text(["same origin"])
