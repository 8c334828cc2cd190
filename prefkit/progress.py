"""Progress of work that takes minutes: one protocol for every long stage, and its renderers.

The protocol (``Progress``) has three methods, called by the library as work goes on:

- ``start(task, total, done=0, unit=...)``: a task begins; ``total`` items (``None``: unknown), of which
  ``done`` are already done (e.g. found in a cache when a killed run resumes);
- ``advance(task, n)``: ``n`` more items are done (and written: prefkit counts an item when it is kept);
- ``finish(task, detail)``: the task ended (``detail``: e.g. ``"cached"``).

Tasks of prefkit: ``rollout`` (trajectories, ``prefkit.rollout``), ``judging`` (judgments,
``prefkit.judges.judge_run``), ``build`` (stages) with one task per build stage (``prefkit.build``).
A task may be started again (a resumed or second phase): its counts start over.

Renderers (``Tally`` and its subclasses) keep the counts of every task, which is also what the command
line reports after Ctrl-C (``Tally.interrupted_line``): ``RichProgress`` draws rich progress bars (items
done / total, rate, elapsed and remaining time) on a terminal; ``LogProgress`` writes a plain line now and
then when the output is not a terminal (every ``fraction`` of the total, and at least every ``interval``
seconds while a task runs, so a log shows signs of life); ``Tally`` alone prints nothing (``--quiet``).
``progress_for`` chooses. ``NullProgress`` is the library's silent default.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """What long-running library functions report to (see the module docstring)."""

    def start(self, task: str, total: int | None = None, *, done: int = 0, unit: str = "items") -> None: ...

    def advance(self, task: str, n: int = 1) -> None: ...

    def finish(self, task: str, detail: str = "") -> None: ...


class NullProgress:
    """Reports nowhere: the default when the caller passes no progress."""

    def start(self, task: str, total: int | None = None, *, done: int = 0, unit: str = "items") -> None:
        return None

    def advance(self, task: str, n: int = 1) -> None:
        return None

    def finish(self, task: str, detail: str = "") -> None:
        return None


@dataclass
class TaskState:
    """The counts of one task (times from ``time.monotonic``)."""

    name: str
    total: int | None
    done: int
    unit: str
    started: float
    done_at_start: int
    finished: bool = False
    detail: str = ""

    def rate(self, now: float) -> float | None:
        """Items per second done in this call (items found done at the start do not count)."""
        elapsed = now - self.started
        return (self.done - self.done_at_start) / elapsed if elapsed > 0 else None

    def counts(self) -> str:
        """``7/12 trajectories (58%)``; without a total ``7 trajectories``, or ``running`` before the first."""
        if self.total is None:
            return f"{self.done} {self.unit}" if self.done else "running"
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        return f"{self.done}/{self.total} {self.unit}{share}"


@dataclass
class Tally:
    """A ``Progress`` that keeps the counts and prints nothing; the base of the renderers."""

    tasks: dict[str, TaskState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self, task: str, total: int | None = None, *, done: int = 0, unit: str = "items") -> None:
        with self._lock:
            self.tasks.pop(task, None)  # a restarted task moves to the end (the order things happen in)
            self.tasks[task] = TaskState(task, total, done, unit, time.monotonic(), done)
        self._started(self.tasks[task])

    def advance(self, task: str, n: int = 1) -> None:
        if task not in self.tasks:
            self.start(task)
        with self._lock:
            state = self.tasks[task]
            state.done += n
        self._advanced(state, n)

    def finish(self, task: str, detail: str = "") -> None:
        if task not in self.tasks:
            self.start(task)
        with self._lock:
            state = self.tasks[task]
            state.finished, state.detail = True, detail
        self._finished(state)

    def close(self) -> None:
        """Stop drawing (the renderers' bars and timers); the counts stay."""

    # what the command line says after Ctrl-C ----------------------------------------------------

    def kept(self) -> str:
        """What was done, task by task, e.g. ``"1 of 7 stages and 7 of 12 trajectories"`` (tasks with a
        total, in the order they started); ``""`` when no such task started."""
        parts = [f"{s.done} of {s.total} {s.unit}" for s in self.tasks.values() if s.total is not None]
        if len(parts) < 2:
            return "".join(parts)
        return ", ".join(parts[:-1]) + " and " + parts[-1]

    def interrupted_line(self, out: Any) -> str:
        """The one line printed after Ctrl-C: what is kept in ``out`` and how to go on."""
        kept = self.kept()
        what = f"kept {kept} in {out}" if kept else f"nothing finished yet in {out}"
        return f"interrupted: {what}; run the same command again to resume"

    # hooks of the renderers ---------------------------------------------------------------------

    def _started(self, state: TaskState) -> None:
        return None

    def _advanced(self, state: TaskState, n: int) -> None:
        return None

    def _finished(self, state: TaskState) -> None:
        return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass
class LogProgress(Tally):
    """Plain lines on ``stream`` (a log file, a pipe): ``rollout: 7/12 trajectories (58%), 0.21/s, 33s``.

    A line when a task starts and finishes, when its count crosses another ``fraction`` of its total,
    and, after ``interval`` seconds without a line, one for the innermost running task (from a timer
    thread, so a log shows signs of life even while nothing finishes).
    """

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    fraction: float = 0.1
    interval: float = 30.0
    _printed: dict[str, tuple[float, int]] = field(default_factory=dict, repr=False)
    """Task -> (time, count) of its last line."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _timer: threading.Thread | None = field(default=None, repr=False)

    def line(self, state: TaskState, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        text = f"{state.name}: {state.counts()}"
        rate = state.rate(now)
        if rate is not None and state.done > state.done_at_start:
            text += f", {rate:.3g} {state.unit}/s"
        return f"{text}, {_duration(now - state.started)}"

    def _write(self, text: str, state: TaskState) -> None:
        with self._lock:
            self._printed[state.name] = (time.monotonic(), state.done)
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (ValueError, OSError):  # the stream was closed under us (e.g. a pipe's reader left)
                pass

    def _started(self, state: TaskState) -> None:
        if self._timer is None and self.interval > 0:
            self._timer = threading.Thread(target=self._beat, name="prefkit-progress", daemon=True)
            self._timer.start()
        if state.total is not None:  # stages without a count get one line when they finish
            self._write(self.line(state), state)

    def _advanced(self, state: TaskState, n: int) -> None:
        if not state.total:
            return
        step = max(1, int(state.total * self.fraction))
        _, last = self._printed.get(state.name, (0.0, state.done_at_start))
        if state.done // step > last // step and state.done < state.total:  # the last line: at finish
            self._write(self.line(state), state)

    def _finished(self, state: TaskState) -> None:
        text = self.line(state) if state.total is not None else state.name
        self._write(f"{text}: {state.detail or 'done'}", state)

    def _beat(self) -> None:
        """Every ``interval`` without a line: one line for the innermost running task (the last started)."""
        while not self._stop.wait(min(self.interval, 1.0)):
            now = time.monotonic()
            running = [s for s in list(self.tasks.values()) if not s.finished]
            last_line = max((t for t, _ in self._printed.values()), default=0.0)
            if running and now - max(last_line, running[-1].started) >= self.interval:
                self._write(self.line(running[-1], now), running[-1])

    def close(self) -> None:
        self._stop.set()


class RichProgress(Tally):
    """Rich progress bars on a terminal: one per running task with items done / total, the rate and the
    elapsed and remaining time (a spinner for tasks without a total), and one line per finished task."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as Bars,
        )

        super().__init__()
        self.console = console
        self._bars = Bars(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[rate]}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self._ids: dict[str, Any] = {}
        self._live = False

    def _rate(self, state: TaskState) -> str:
        rate = state.rate(time.monotonic())
        return f"{rate:.3g}/s" if rate and state.done > state.done_at_start else ""

    def _started(self, state: TaskState) -> None:
        if not self._live:
            self._bars.start()
            self._live = True
        if state.name in self._ids:
            self._bars.remove_task(self._ids.pop(state.name))
        self._ids[state.name] = self._bars.add_task(state.name, total=state.total, completed=state.done,
                                                    unit=state.unit if state.total is not None else "",
                                                    rate="")

    def _advanced(self, state: TaskState, n: int) -> None:
        if state.name in self._ids:
            self._bars.update(self._ids[state.name], completed=state.done, rate=self._rate(state))

    def _finished(self, state: TaskState) -> None:
        if state.name in self._ids:
            self._bars.remove_task(self._ids.pop(state.name))
        mark = "[dim]↺[/]" if state.detail == "cached" else "[green]✓[/]"
        counts = f" {state.counts()}" if state.total is not None else ""
        took = f" in {_duration(time.monotonic() - state.started)}" if state.detail != "cached" else ""
        detail = f" {state.detail}" if state.detail not in ("", "done") else ""
        self._bars.console.print(f"{mark} {state.name}{counts}{detail}{took}", highlight=False)

    def close(self) -> None:
        if self._live:
            self._bars.stop()
            self._live = False


def progress_for(stream: TextIO | None = None, *, quiet: bool = False) -> Tally:
    """The progress renderer for a command line writing to ``stream`` (default stderr): nothing but
    counts when ``quiet``, rich bars when ``stream`` is a terminal, plain lines otherwise."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return Tally()
    if stream.isatty():
        from rich.console import Console

        return RichProgress(Console(file=stream))
    return LogProgress(stream=stream)


__all__ = ["LogProgress", "NullProgress", "Progress", "RichProgress", "Tally", "TaskState", "progress_for"]
