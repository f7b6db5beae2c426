"""The roll-ups' pure parts: the duration histogram and the store's arithmetic."""

from __future__ import annotations

import math
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lambdad.rollups import COUNTERS, Delta, Histogram, RollupStore


@given(st.lists(st.floats(0.001, 900_000.0), min_size=1, max_size=200), st.floats(0.01, 1.0))
def test_a_percentile_is_within_one_bucket_above_the_true_value(
    durations: list[float], q: float
) -> None:
    counts: dict[int, int] = {}
    Histogram.add(counts, durations)
    ordered = sorted(durations)
    true = ordered[max(1, math.ceil(q * len(ordered))) - 1]
    got = Histogram.percentile(counts, q)
    assert got >= min(true, Histogram.LOW) * 0.999
    # The bound is rounded to the microsecond (Histogram.upper): up to 0.0005 ms more.
    assert got <= max(true * Histogram.F * 1.001, Histogram.LOW * 1.001) + 0.0005


def test_histograms_merge_as_if_they_were_one() -> None:
    rng = random.Random(7)
    a = [rng.lognormvariate(1, 1) for _ in range(500)]
    b = [rng.lognormvariate(3, 0.5) for _ in range(500)]
    ha: dict[int, int] = {}
    hb: dict[int, int] = {}
    whole: dict[int, int] = {}
    Histogram.add(ha, a)
    Histogram.add(hb, b)
    Histogram.add(whole, a + b)
    Histogram.add_counts(ha, hb)
    assert ha == whole


def test_the_store_adds_deltas_and_prunes_oldest_first(tmp_path: Path) -> None:
    store = RollupStore(str(tmp_path / "r.sqlite3"))
    store.open()
    one = Delta(counters=dict.fromkeys(COUNTERS, 1), gb_seconds=0.5, durations={3: 2})
    store.add(600, {"f": one})
    store.add(600, {"f": one, "g": one})
    store.add(660, {"f": one})
    rows = {(r[0], r[1]): r for r in store.query(0, None)}
    assert rows[("f", 600)][2:7] == (2, 2, 2, 2, 1.0)
    assert rows[("f", 600)][7] == '{"3": 4}'
    assert store.totals()["f"] == (3, 3, 3, 3, 1.5)
    assert store.prune(oldest_minute=0, max_rows=2) == 1  # the oldest row of the three goes
    assert len(store.query(0, None)) == 2
    assert store.prune(oldest_minute=660, max_rows=10) == 1
    assert [(r[0], r[1]) for r in store.query(0, None)] == [("f", 660)]
    store.forget("f")
    assert "f" not in store.totals()
    store.close()
