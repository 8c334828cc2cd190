"""Judges: rubrics, the one score parser, the judge's view of a trajectory, the judging loop with its
cache, replicate aggregation and agreement between judges."""

from prefkit.judges.parse import ParsedAnswer, parse_answer, parse_fields
from prefkit.judges.rubrics import RUBRICS, Rubric, rubric

__all__ = ["RUBRICS", "ParsedAnswer", "Rubric", "parse_answer", "parse_fields", "rubric"]
