"""The job queue: huey, embedded (SQLite file, consumer threads in ``replyflow serve``) or distributed (Redis).

Domain modules declare jobs with :func:`job` / :func:`periodic` at import time; :func:`build_huey` creates the
huey instance for a given configuration and registers every declared job on it. The database stays the source
of truth: a job only says "look at X now"; losing one is repaired by the sweepers, never by hope.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

from replyflow.config import Settings

JobFunc = Callable[..., Any]


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: JobFunc
    retries: int
    retry_delay: int
    every_minutes: int | None = None


_JOBS: dict[str, JobSpec] = {}
_JOB_MODULES = (
    "replyflow.webhooks.tasks",
    "replyflow.accounts.tasks",
    "replyflow.automation.tasks",
    "replyflow.conversations.tasks",
    "replyflow.analytics.tasks",
)


def job(*, name: str, retries: int = 0, retry_delay: int = 0) -> Callable[[JobFunc], JobFunc]:
    def register(func: JobFunc) -> JobFunc:
        _JOBS[name] = JobSpec(name=name, func=func, retries=retries, retry_delay=retry_delay)
        return func

    return register


def periodic(*, name: str, every_minutes: int) -> Callable[[JobFunc], JobFunc]:
    """A job the consumer's scheduler runs every N minutes (huey's crontab resolution is a minute)."""

    def register(func: JobFunc) -> JobFunc:
        _JOBS[name] = JobSpec(name=name, func=func, retries=0, retry_delay=0, every_minutes=every_minutes)
        return func

    return register


def _import_job_modules() -> None:
    import importlib

    for module in _JOB_MODULES:
        importlib.import_module(module)


class Queue:
    """Our handle on huey: enqueue by job name, run a consumer in-process or as a worker."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._tasks: dict[str, Any] = {}
        for spec in _JOBS.values():
            if spec.every_minutes is not None:
                minutes = "*" if spec.every_minutes <= 1 else f"*/{spec.every_minutes}"
                self._tasks[spec.name] = huey.periodic_task(crontab(minute=minutes), name=spec.name)(spec.func)
            else:
                self._tasks[spec.name] = huey.task(retries=spec.retries, retry_delay=spec.retry_delay, name=spec.name)(
                    spec.func
                )

    def enqueue(self, name: str, *args: Any, eta: dt.datetime | None = None, delay: float | None = None) -> None:
        task = self._tasks[name]
        if eta is not None:
            task.schedule(args=args, eta=eta.astimezone(dt.UTC).replace(tzinfo=None))
        elif delay is not None and delay > 0:
            task.schedule(args=args, delay=delay)
        else:
            task(*args)

    def create_consumer(self, *, workers: int) -> Consumer:
        return self.huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=True,
            initial_delay=0.05,
            max_delay=1.0,
            backoff=1.5,
            check_worker_health=True,
        )


def build_queue(settings: Settings, *, name: str = "replyflow", immediate: bool = False) -> Queue:
    _import_job_modules()
    huey: Huey
    if settings.redis_url:
        huey = RedisHuey(name, url=settings.redis_url, results=False, utc=True, immediate=immediate)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(
            name,
            filename=str(settings.data_dir / "queue.db"),
            results=False,
            utc=True,
            immediate=immediate,
            fsync=False,
            timeout=10,
        )
    return Queue(huey)
