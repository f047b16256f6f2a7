"""Running test code in several fresh worker processes, as a server's workers would."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable


def run_workers(target: Callable[..., None], args: list[tuple[Any, ...]], timeout: float = 240) -> None:
    """Start one spawned process per ``args`` tuple, wait for all, and require each to exit 0."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as `uvicorn --workers` starts them
    processes = [context.Process(target=target, args=a) for a in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
    assert [p.exitcode for p in processes] == [0] * len(processes)
