"""Replay: a snapshot's answers normalized and loaded again, with no API call.

The same list and price code as a sync, minus the network: the snapshot is
only read, and the replay writes under its own run directory.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from etl.context import Job
from etl.errors import SnapshotError
from etl.lists import apply_list, list_summary
from etl.normalize import Normalizer
from etl.outcome import Policy, worst
from etl.plan import Plan
from etl.prices import PriceCounts, price_summary
from etl.stages import Stages


def replay(job: Job) -> dict[str, Any]:
    """Normalize and load a snapshot's answers again: lists first, then prices.

    The snapshot (``job.source``) is only read; typed parts, rejects and the
    manifest of the replay go under the replay's own run directory.
    """
    source = job.source
    assert source is not None
    manifest = source.manifest()
    summary: dict[str, Any] = {"status": "ok", "replayed_run": manifest.get("run_id")}
    list_parts = list(source.raw_parts("list"))
    if list_parts:
        raw = pl.concat(list_parts)
        results = {
            ex: apply_list(job, raw.filter(pl.col("exchange") == ex), ex)
            for ex in raw["exchange"].unique(maintain_order=True).to_list()
        }
        summary.update(list_summary(results, Policy.from_settings(job.settings)))
    normalizer = Normalizer.of(source, job.snapshot)
    price_parts = source.parts("kind=prices")
    if price_parts and normalizer is None:
        raise SnapshotError(f"{source.path} has price answers but no plan.parquet")
    if normalizer is not None:
        started = time.monotonic()
        options = manifest.get("options", {})
        stages = Stages(job, normalizer, bool(options.get("overwrite")))
        counts = PriceCounts.of(None, stages.run(price_parts))
        plan = Plan(normalizer.context, [], int(manifest.get("plan", {}).get("up_to_date", 0)), {})
        prices = price_summary(job, plan, counts, time.monotonic() - started)
        reasons = summary.get("reasons", []) + prices.get("reasons", [])
        summary.update({k: v for k, v in prices.items() if k != "status"})
        summary["status"] = worst(summary["status"], prices["status"])
        if reasons:
            summary["reasons"] = reasons
    if not list_parts and normalizer is None:
        raise SnapshotError(f"{source.path} holds no list or price answers to replay")
    job.snapshot.update_manifest(loaded=True)
    return summary
