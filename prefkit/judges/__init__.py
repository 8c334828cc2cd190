"""Judges: rubrics, the one score parser, the judge's view of a trajectory, the judging loop with its
cache, replicate aggregation and agreement between judges.

Entry points: ``judge_run(run, JudgeConfig(...))`` judges a run's trajectories through a backend;
``parse_answer(text, metric)`` is the one parser of judge answers; ``rescore_run(run)`` re-parses stored
answers; ``judge_agreement(judgments, a=..., b=..., metric=...)`` compares two judges.
"""

from prefkit.judges.agreement import AgreementReport, judge_agreement, run_agreement
from prefkit.judges.judge import JudgeConfig, JudgeSummary, judge_run, make_judge_config
from prefkit.judges.parse import ParsedAnswer, parse_answer, parse_fields
from prefkit.judges.replicates import aggregate_scores, replicate_stats
from prefkit.judges.rescore import RescoreSummary, rescore_run
from prefkit.judges.rubrics import RUBRICS, Rubric, rubric
from prefkit.judges.view import judge_messages, trajectory_view

__all__ = [
    "RUBRICS",
    "AgreementReport",
    "JudgeConfig",
    "JudgeSummary",
    "ParsedAnswer",
    "RescoreSummary",
    "Rubric",
    "aggregate_scores",
    "judge_agreement",
    "judge_messages",
    "judge_run",
    "make_judge_config",
    "parse_answer",
    "parse_fields",
    "replicate_stats",
    "rescore_run",
    "rubric",
    "run_agreement",
    "trajectory_view",
]
