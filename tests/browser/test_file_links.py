"""Signed file links in Chromium, as a page that shows a task's results uses them: an
``<img>`` and a ``<video>`` whose ``src`` is the URL the Volcengine AI Server API answered,
with no key and no session. The mock's video decodes, and shows the prompt's colour."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Page

from taskgate.providers.mock import prompt_colour
from tests.e2e.conftest import Server

SHOW = """([image, video]) => new Promise((ok, fail) => {
  const img = new Image();
  const v = Object.assign(document.createElement('video'), {muted: true, playsInline: true});
  v.onerror = () => fail(new Error('video error ' + (v.error && v.error.message)));
  img.onerror = () => fail(new Error('image error'));
  v.requestVideoFrameCallback(() => {
    const c = Object.assign(document.createElement('canvas'), {width: 64, height: 48});
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    const pixels = [8, 24, 40, 56].map((x) => Array.from(g.getImageData(x, 40, 1, 1).data));
    img.onload = () => ok({pixels, size: [v.videoWidth, v.videoHeight], duration: v.duration,
                           image: img.naturalWidth});
    img.src = image;
  });
  document.body.append(v);
  v.src = video;
  v.play();
})"""


def near(pixel: list[int], rgb: tuple[int, int, int]) -> bool:
    """A canvas pixel (RGBA) of about this colour (YUV and back rounds a little)."""
    return all(abs(a - b) <= 6 for a, b in zip(pixel[:3], rgb, strict=True))


def task_url(c: httpx.Client, kind: str, prompt: str) -> str:
    body = {"prompt": prompt, "user_id": "u1", "provider": "openai", "model": "alpha"}
    task_id = c.post(f"/api/v1/ai/{kind}/task", json=body).json()["data"]["task_id"]
    end = time.monotonic() + 30
    while time.monotonic() < end:
        data: dict[str, Any] = c.get(f"/api/v1/ai/task/result/{task_id}").json()["data"]
        if data["status"] == "completed":
            return str(data[f"{kind}_url"])
        time.sleep(0.05)
    raise AssertionError(f"{kind} task did not complete")


def test_an_image_and_the_mocks_video_show_from_signed_links(page: Page, dashboard: Server) -> None:
    with dashboard.client(dashboard.create_key("acme")) as c:
        image, video = task_url(c, "image", "a red fox"), task_url(c, "video", "a red fox")
    assert "signature=" in image and "signature=" in video
    page.goto(f"{dashboard.url}/health/live")  # the server's origin: the canvas stays readable
    shown = page.evaluate(SHOW, [image, video])
    assert shown["size"] == [64, 48] and shown["duration"] == 2 and shown["image"] == 16
    want = prompt_colour("a red fox")
    # each column of the frame: the prompt's colour, but one, where the light bar is
    coloured = [p for p in shown["pixels"] if near(p, want)]
    assert len(coloured) == 3 and any(near(p, (255, 255, 255)) for p in shown["pixels"]), shown
