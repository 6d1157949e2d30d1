from taskgate.events.base import Events, Message, Subscription
from taskgate.events.memory import MemoryEvents


def from_url(url: str | None) -> Events:
    """``None`` or ``memory://``: in-process. Cross-host backends come with the distributed mode."""
    if url in (None, "", "memory://"):
        return MemoryEvents()
    raise ValueError(f"unsupported events URL {url!r}")


__all__ = ["Events", "MemoryEvents", "Message", "Subscription", "from_url"]
