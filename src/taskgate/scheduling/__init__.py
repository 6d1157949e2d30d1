"""Scheduling: per-route lanes, capacity, priorities; claim → call → outcome → events.

``scheduler.Scheduler`` composes the parts; ARCHITECTURE.md draws how a task moves
through them."""

from taskgate.scheduling.scheduler import Scheduler

__all__ = ["Scheduler"]
