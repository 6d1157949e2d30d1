"""A taskgate server process whose route uses the ``openai`` provider against the fake OpenAI
server running in this test process."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.fakes import in_thread
from tests.fakes.openai_media import fake_speech, fake_transcript
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.shelf import fake_image

KEY = "sk-e2e-4b1d7e09c6a2f835"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with in_thread(FakeOpenAI(key=KEY)) as server:
        yield server


@pytest.fixture
def server(make_server: Any, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_OPENAI_KEY", KEY)
    instance = {
        "name": "fake-1",
        "endpoint": fake.base_url,
        "secret_env": "FAKE_OPENAI_KEY",
        "max_concurrency": 4,
    }
    route = {
        "name": "upstream",
        "models": ["gpt-*", "dall-e-*", "whisper-*", "tts-*"],
        "provider": "openai",
        "instances": [instance],
        "timeout": 30,
        "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
        "options": {"output_urls_private": True},  # the fake serves its images on loopback
    }
    s: Server = make_server([route])
    s.start()
    return s


def chat(c: httpx.Client, text: str, **body: Any) -> dict[str, Any]:
    return submit(c, model="gpt-fake", input=text, **body)


def assert_no_secret(c: httpx.Client, task_id: str, server: Server) -> None:
    assert KEY not in c.get(f"/v1/tasks/{task_id}").text
    assert KEY not in server.log.read_text()


def read_events(c: httpx.Client, task_id: str, fake: Any) -> list[tuple[str, Any]]:
    """The task's server-sent events; the held fake (any fake with ``release()``) answers
    once the stream is open."""
    events: list[tuple[str, Any]] = []
    name = ""
    with c.stream("GET", f"/v1/tasks/{task_id}/events") as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                fake.release()
    return events


def test_chat_task_succeeds_with_the_backends_reply(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    with server.client(key) as c:
        done = wait(c, chat(c, "hello world")["id"])
        assert done["status"] == "SUCCESS", done
        assert done["result"]["output"]["text"] == "echo: hello world"
        assert done["result"]["usage"] == {"input_tokens": 2, "output_tokens": 3}
        assert_no_secret(c, done["id"], server)
    sent = fake.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-fake"


def test_streamed_chat_sends_deltas_as_progress_events(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("hold")
    with server.client(key) as c:
        task = chat(c, "one two three", params={"stream": True})
        events = read_events(c, task["id"], fake)
    deltas = [data["data"]["delta"] for name, data in events if name == "progress"]
    assert deltas == ["echo: ", "one ", "two ", "three"]
    assert events[-1][0] == "finished"
    assert events[-1][1]["result"]["output"]["text"] == "echo: one two three"


def test_a_500_is_retried_and_succeeds_on_attempt_2(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("server_error")
    with server.client(key) as c:
        done = wait(c, chat(c, "again")["id"])
    assert done["status"] == "SUCCESS"
    assert done["attempts"] == 2
    assert [a["outcome"] for a in done["history"]] == ["retry", "success"]
    assert done["history"][0]["error"]["type"] == "overloaded"
    assert done["result"]["output"]["text"] == "echo: again"


def test_a_400_fails_at_once_with_the_providers_message(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    bad = {"messages": [{"role": "wizard", "content": "hi"}]}
    with server.client(key) as c:
        done = wait(c, submit(c, model="gpt-fake", input=bad)["id"])
    assert done["status"] == "FAILED"
    assert done["attempts"] == 1
    assert done["error"]["type"] == "invalid_input"
    assert done["error"]["message"] == "Invalid value for 'messages[0].role': 'wizard'."
    assert len(fake.requests) == 1


def test_a_backend_quoting_the_secret_does_not_leak_it(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("revoked")
    with server.client(key) as c:
        done = wait(c, chat(c, "hi")["id"])
        assert done["status"] == "FAILED"
        assert done["error"]["type"] == "auth_failed"
        assert "Incorrect API key provided: ***" in done["error"]["message"]
        assert_no_secret(c, done["id"], server)


@pytest.mark.parametrize("stream", [False, True])
def test_a_backend_echoing_the_key_in_its_answer_does_not_leak_it(
    server: Server, key: str, fake: FakeOpenAI, stream: bool
) -> None:
    fake.script("echo_key")
    with server.client(key) as c:
        task = chat(c, "hi", params={"stream": stream})
        events = read_events(c, task["id"], fake)
        done = wait(c, task["id"])
        shown = [c.get(f"/v1/tasks/{task['id']}").text, c.get("/v1/tasks").text]
    assert done["status"] == "SUCCESS", done
    assert done["result"]["output"]["text"] == "you sent Bearer *** ok"
    if stream:
        deltas = [data["data"]["delta"] for name, data in events if name == "progress"]
        assert deltas == ["you ", "sent ", "Bearer ", "*** ", "ok"]
    assert KEY not in json.dumps(events)
    assert not any(KEY in text for text in shown)
    assert KEY not in server.log.read_text()
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"  # it was sent


# --- images and audio --------------------------------------------------------------------

PNG = fake_image("an uploaded picture")
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(48))


def input_ref(c: httpx.Client, data: bytes, content_type: str, name: str) -> Any:
    """An uploaded file's reference; a data: URI where the server takes no uploads."""
    r = c.post("/v1/files", files={"file": (name, data, content_type)})
    if r.status_code in (404, 405):
        return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
    assert r.status_code == 201, r.text
    return {"file_id": r.json()["id"]}


def stored(c: httpx.Client, done: dict[str, Any]) -> httpx.Response:
    assert done["status"] == "SUCCESS", done
    [f] = done["result"]["files"]
    r = c.get(f["url"])
    assert r.status_code == 200 and r.headers["content-type"] == f["content_type"]
    return r


def test_an_image_url_is_copied_into_a_stored_file(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model="dall-e-3", input="a red fox")["id"])
        assert stored(c, done).content == fake_image("a red fox")
        [meta] = done["result"]["output"]["images"]
        assert meta["revised_prompt"] == "A detailed picture of a red fox"
        assert_no_secret(c, done["id"], server)
    assert len(fake.shelf.downloads) == 1


def test_an_expired_image_url_is_retried(server: Server, key: str, fake: FakeOpenAI) -> None:
    fake.script("expired_url")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model="dall-e-2", input="a fox")["id"])
        assert stored(c, done).content == fake_image("a fox")
    assert [a["outcome"] for a in done["history"]] == ["retry", "success"]
    assert done["history"][0]["error"]["type"] == "bad_response"


def test_a_refused_image_prompt_fails_at_once(server: Server, key: str, fake: FakeOpenAI) -> None:
    fake.script("content_policy")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model="gpt-image-1", input="no")["id"])
    assert done["status"] == "FAILED" and done["attempts"] == 1
    assert done["error"]["type"] == "content_refused"
    assert done["error"]["provider_code"] == "content_policy_violation"


def test_an_image_edit_of_an_uploaded_file(server: Server, key: str, fake: FakeOpenAI) -> None:
    with server.client(key) as c:
        image = input_ref(c, PNG, "image/png", "photo.png")
        edit = {"prompt": "add a hat", "image": image}
        done = wait(c, submit(c, kind="image_edit", model="gpt-image-1", input=edit)["id"])
        assert stored(c, done).content == fake_image("add a hat")
    form = fake.requests[-1].body
    assert form["image"].data == PNG
    assert form["image"].filename == ("photo.png" if isinstance(image, dict) else "image.png")
    assert form["prompt"] == "add a hat"


def test_a_transcription_and_a_speech_task(server: Server, key: str, fake: FakeOpenAI) -> None:
    with server.client(key) as c:
        audio = input_ref(c, WAV, "audio/wav", "memo.wav")
        heard = wait(
            c, submit(c, kind="transcription", model="whisper-1", input={"file": audio})["id"]
        )
        said = wait(c, submit(c, kind="speech", model="tts-1", input="Hello.")["id"])
        assert said["result"]["output"] == {"format": "mp3"}
        assert stored(c, said).content == fake_speech("Hello.")
    assert heard["status"] == "SUCCESS", heard
    assert heard["result"]["output"] == {"text": fake_transcript(WAV)}
    assert heard["result"]["usage"] == {"seconds": 1}


def test_a_429_waits_out_retry_after_then_succeeds(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("rate_limit")  # 429 with Retry-After: 1
    with server.client(key) as c:
        done = wait(c, chat(c, "patience")["id"])
    assert done["status"] == "SUCCESS"
    first, second = done["history"]
    assert first["error"]["type"] == "rate_limited" and first["error"]["retry_after"] == 1
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["ended_at"])
    assert gap.total_seconds() >= 0.99  # the route's own backoff is 0.05 s: Retry-After won


def test_a_backend_that_stays_silent_times_out(
    make_server: Any, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", KEY)
    route = {
        "name": "upstream",
        "models": ["gpt-*"],
        "provider": "openai",
        "instances": [{"name": "f", "endpoint": fake.base_url, "secret_env": "FAKE_OPENAI_KEY"}],
        "timeout": 0.5,
        "retry": {"max_attempts": 2, "backoff_base": 0.05},
    }
    server: Server = make_server([route])
    server.start()
    fake.slow_seconds = 3
    fake.script("slow", "slow")
    with server.client(server.create_key("acme")) as c:
        done = wait(c, chat(c, "anyone there?")["id"])
    assert done["status"] == "TIMEOUT"
    assert [a["outcome"] for a in done["history"]] == ["retry", "timeout"]
    assert done["error"]["type"] == "timeout"
