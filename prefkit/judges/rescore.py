"""``prefkit rescore``: re-parse every stored judge answer with the current parser.

Each judgment's ``raw_output`` goes through ``parse_answer`` again (for imported ToolEmu judgments the
raw output is the eval record's JSON line, so its fields are re-read, replicate by replicate); logprob
judgments are re-scored from their stored distribution. Score, label and status are replaced; the
rationale, attempts and everything else stay. The table is rewritten atomically.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict

from prefkit.judges.judge import open_run
from prefkit.judges.logprob import score_from_distribution
from prefkit.judges.parse import ParsedAnswer, parse_answer
from prefkit.store import RunStore


class RescoreSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    judgments: int
    scores_changed: int
    """Judgments whose score differs after re-parsing (a score gained or lost counts)."""
    status_changed: int
    by_status: dict[str, int]


def _reparse(raw: str, metric: str, replicate: int, distribution: list[float] | None) -> ParsedAnswer:
    if distribution is not None:
        return ParsedAnswer(score=score_from_distribution(distribution), parse_status="ok")
    return parse_answer(raw, metric, replicate=replicate)


def rescore_run(run: RunStore | str | Path) -> RescoreSummary:
    """Re-parse the raw answers of every judgment in ``run`` and rewrite its judgments table.

    Raises:
        InputError: ``run`` is not a prefkit run.
    """
    store = open_run(run)
    old = store.frame("judgments")
    # Parsing free text is per answer by nature; everything around it stays in columns.
    parsed = [
        _reparse(raw, metric, replicate, distribution)
        for raw, metric, replicate, distribution in zip(
            old["raw_output"].to_list(), old["metric"].to_list(), old["replicate"].to_list(),
            old["distribution"].to_list(), strict=True)
    ]
    new = old.with_columns(
        score=pl.Series([p.score for p in parsed], dtype=pl.Int64),
        label=pl.Series([p.label for p in parsed], dtype=pl.String),
        parse_status=pl.Series([p.parse_status for p in parsed], dtype=pl.String),
    )
    # a logprob judgment keeps its label and status: only its score is recomputed
    is_logprob = old["distribution"].is_not_null()
    new = new.with_columns(
        label=pl.when(is_logprob).then(old["label"]).otherwise(pl.col("label")),
        parse_status=pl.when(is_logprob).then(old["parse_status"]).otherwise(pl.col("parse_status")),
    )
    store.write_frame("judgments", new)
    changed = new.select(
        scores=(pl.col("score").ne_missing(old["score"])).sum(),
        status=(pl.col("parse_status") != old["parse_status"]).sum(),
    ).row(0)
    counts = new["parse_status"].value_counts()
    return RescoreSummary(
        judgments=new.height,
        scores_changed=int(changed[0]),
        status_changed=int(changed[1]),
        by_status={s: int(c) for s, c in counts.iter_rows()},
    )
