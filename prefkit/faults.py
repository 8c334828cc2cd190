"""Test hook: stop the process at a named point, as a kill or a Ctrl-C would, to prove that re-running
the same command resumes to the same result.

``PREFKIT_FAULT_STAGE=<point>`` makes ``fault_point(<point>)`` signal its own process: SIGKILL (no
cleanup at all) by default, SIGINT (what Ctrl-C sends) with ``PREFKIT_FAULT_SIGNAL=INT``. The points:
``prefkit build``'s stages (``source``, ``judge``, ``pair``, ``validate``, ``audit``, ``card``,
``publish``: in the middle of the stage, after it wrote part of its outputs, before its marker),
``rollout`` (once the first finished trajectories of a rollout are written) and ``import`` (``prefkit
import toolemu``, after reading its input, before writing the run).
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "PREFKIT_FAULT_STAGE"
FAULT_SIGNAL_ENV = "PREFKIT_FAULT_SIGNAL"


def fault_point(point: str) -> None:
    """Signal this process here when ``PREFKIT_FAULT_STAGE`` names ``point`` (see the module docstring).

    With SIGINT, Python raises ``KeyboardInterrupt`` in the main thread right after this returns.
    """
    if os.environ.get(FAULT_ENV) == point:
        name = os.environ.get(FAULT_SIGNAL_ENV, "KILL").upper()
        os.kill(os.getpid(), signal.SIGINT if name == "INT" else signal.SIGKILL)
