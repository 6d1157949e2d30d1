"""One provider on one route whose single instance points at a fake backend: what the
provider integration tests share. It records progress events and checks that no error
carries the secret."""

from __future__ import annotations

import json
from typing import Any, Self

import pytest
from pydantic import SecretStr

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import Call, OutputFile, Result, build


class ProviderHarness:
    def __init__(
        self,
        provider: str,
        endpoint: str | None,
        *,
        watch: str,
        secret: str | None,
        model: str,
        instance_options: dict[str, Any] | None = None,
        route_options: dict[str, Any] | None = None,
    ) -> None:
        instance = Instance(
            name=f"{provider}-1",
            endpoint=endpoint,
            secret=SecretStr(secret) if secret else None,
            options=instance_options or {},
        )
        self.route = Route(
            name="r",
            models=["*"],
            provider=provider,
            instances=[instance],
            options=route_options or {},
        )
        self.provider = build(self.route)
        self.watch = watch  # text that must appear in no error
        self.model = model
        self.events: list[dict[str, Any]] = []
        self.files: dict[str, OutputFile] = {}  # what Call.read_file finds, by file id

    async def emit(self, data: dict[str, Any]) -> None:
        self.events.append(data)

    def call(
        self, input: Any = "hello", kind: str = "chat", model: str | None = None, **params: Any
    ) -> Call:
        return Call(
            task_id="t1",
            kind=kind,
            model=model or self.model,
            input=input,
            params=params,
            attempt=1,
            instance=self.route.instances[0],
            route=self.route,
            emit=self.emit,
            read_file=self.read_file,
        )

    async def read_file(self, file_id: str) -> OutputFile:
        if file_id not in self.files:
            raise errors.InvalidInput(f"no file {file_id!r}")
        return self.files[file_id]

    async def run(
        self, input: Any = "hello", *, kind: str = "chat", model: str | None = None, **params: Any
    ) -> Result:
        """Run a call that answers at once (a job is an error here: use provider.run)."""
        out = await self.provider.run(self.call(input, kind, model, **params))
        assert isinstance(out, Result), f"expected a Result, got {out!r}"
        return out

    async def fails(self, cls: type[errors.ProviderError], *args: Any, **kw: Any) -> Any:
        """Run, expecting exactly ``cls``; check that the secret is nowhere in the error."""
        with pytest.raises(errors.ProviderError) as caught:
            await self.run(*args, **kw)
        error = caught.value
        assert type(error) is cls, repr(error)
        assert self.watch not in str(error)
        assert self.watch not in json.dumps(error.as_dict())
        assert self.watch not in repr(error.__cause__)
        return error

    def deltas(self, kind: str = "delta") -> list[str]:
        return [e[kind] for e in self.events if kind in e]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.provider.aclose()
