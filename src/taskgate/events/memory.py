"""In-process events for the embedded mode."""

from __future__ import annotations

from collections import defaultdict

from taskgate.events.base import Events, Message, Subscription


class MemoryEvents(Events):
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    async def publish(self, topic: str, message: Message) -> None:
        for sub in self._subs.get(topic, ()):
            sub.put(message)

    def _add(self, sub: Subscription) -> None:
        self._subs[sub.topic].add(sub)

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.topic]
