"""Agent rollouts with LM-emulated tools: the agent loop, the emulator, output parsing, batching, resume.

Usage::

    from prefkit.rollout import AgentConfig, EmulatorConfig, RolloutConfig, rollout_suite

    config = RolloutConfig(agent=AgentConfig(model="/models/tiny@transformers"),
                           emulator=EmulatorConfig(model="/models/tiny@transformers"), samples=2)
    summary = rollout_suite("starter", "runs/starter", config)   # resumable: re-run to finish

Modules: ``config`` (settings), ``suite`` (scenario suites), ``agent`` (prompts and parsing of agent
output), ``calls`` (schema checks of tool calls), ``emulator`` (emulator prompt and JSON parsing),
``loop`` (the step-synchronous batched loop), ``resume`` (keys and shards), ``run`` (the run folder).
"""

from prefkit.progress import Progress  # what rollout_suite reports to
from prefkit.rollout.config import (
    AgentConfig,
    EmulatorConfig,
    EmulatorMode,
    GenerateSource,
    RolloutConfig,
    RolloutLimits,
    make_rollout_config,
    make_rollout_configs,
)
from prefkit.rollout.loop import RolloutItem, RolloutLoop, run_rollouts
from prefkit.rollout.resume import TrajectoryShards, rollout_key, templates_version
from prefkit.rollout.run import (
    BackendPool,
    RolloutSummary,
    generate_source_key,
    generate_source_run,
    open_rollout_run,
    rollout_suite,
)
from prefkit.rollout.suite import Suite, bundled_suites, load_scenario_suite

__all__ = [
    "AgentConfig",
    "BackendPool",
    "EmulatorConfig",
    "EmulatorMode",
    "GenerateSource",
    "Progress",
    "RolloutConfig",
    "RolloutItem",
    "RolloutLimits",
    "RolloutLoop",
    "RolloutSummary",
    "Suite",
    "TrajectoryShards",
    "bundled_suites",
    "generate_source_key",
    "generate_source_run",
    "load_scenario_suite",
    "make_rollout_config",
    "make_rollout_configs",
    "open_rollout_run",
    "rollout_key",
    "rollout_suite",
    "run_rollouts",
    "templates_version",
]
