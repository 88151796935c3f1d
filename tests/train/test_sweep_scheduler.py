"""Early stopping rules and the coordinator, fed by hand (no Ray, no training)."""

from __future__ import annotations

import math

import pytest

from sim2real.train.sweep_scheduler import (
    ASHA,
    CONTINUE,
    INTERRUPT,
    STOP,
    MedianStopping,
    NoStopping,
    SweepCoordinator,
    make_scheduler,
    metric_value,
)


def test_asha_rungs_grow_by_eta_and_keep_the_top_third() -> None:
    asha = ASHA(grace_steps=100, eta=3)
    assert [asha.milestone(k) for k in range(3)] == [100, 300, 900]
    # Nothing is decided before the first rung.
    assert asha.report("a", 50, -100.0)
    # The first trial at a rung always continues (nothing to compare with yet).
    assert asha.report("a", 100, 1.0)
    # Two at the rung: the top max(1, 2 // 3) = 1 continues, i.e. only the better one.
    assert not asha.report("b", 100, 0.5)
    assert asha.report("c", 100, 2.0)
    # Four and five recorded, still one place: a worse one stops, a tie with the best does not.
    assert not asha.report("d", 100, 1.5)
    assert asha.report("e", 100, 2.0)
    # Six recorded: the top 2 continue; 1.9 is third.
    assert not asha.report("f", 100, 1.9)
    assert asha.rungs[0] == {"a": 1.0, "b": 0.5, "c": 2.0, "d": 1.5, "e": 2.0, "f": 1.9}


def test_asha_decides_each_rung_once_and_a_jump_past_several_rungs_records_at_each() -> None:
    asha = ASHA(grace_steps=10, eta=2)
    assert asha.report("a", 10, 5.0)
    assert asha.report("a", 11, -50.0)  # rung 0 is decided; 11 < 20 is no new rung
    assert asha.rungs[0] == {"a": 5.0}
    # An evaluation interval coarser than the rungs: step 45 passes rungs 10, 20 and 40.
    assert not asha.report("b", 45, 1.0)
    assert asha.rungs[0]["b"] == asha.rungs[1]["b"] == asha.rungs[2]["b"] == 1.0
    # Replayed reports (a resumed sweep) do not change what a rung recorded.
    asha.report("b", 45, 100.0)
    assert asha.rungs[0]["b"] == 1.0
    with pytest.raises(ValueError, match="grace_steps >= 1 and eta > 1"):
        ASHA(grace_steps=0)


def test_the_median_rule_compares_the_best_so_far_with_the_others_running_means() -> None:
    rule = MedianStopping(grace_steps=200, min_trials=2)
    for trial, values in {"a": [1.0, 3.0], "b": [2.0, 4.0]}.items():
        for step, value in zip((100, 200), values, strict=True):
            assert rule.report(trial, step, value)  # a, b: fewer than 2 others to compare with
    # c at step 100: within the grace period, whatever it scores.
    assert rule.report("c", 100, -10.0)
    # c at 200: best so far 2.5; running means at 200: a (1+3)/2 = 2, b (2+4)/2 = 3 -> median 2.5.
    assert rule.report("c", 200, 2.5)
    # d: best 2.4 against a 2, b 3 and c (-10 + 2.5) / 2 = -3.75, median 2: keeps going.
    assert rule.report("d", 200, 2.4)
    rule2 = MedianStopping(grace_steps=0, min_trials=2)
    rule2.report("a", 100, 10.0)
    rule2.report("b", 100, 20.0)
    assert not rule2.report("c", 100, 5.0)  # best 5 < median(10, 20) = 15
    # Trials that have not reached a step are not compared there.
    assert rule2.report("d", 300, 0.0)


def test_make_scheduler_and_no_stopping() -> None:
    assert isinstance(make_scheduler({"scheduler": "none"}), NoStopping)
    assert isinstance(make_scheduler({"scheduler": "median", "grace_steps": 5, "min_trials": 1}), MedianStopping)
    assert make_scheduler({"scheduler": "asha", "grace_steps": 5, "eta": 2}).eta == 2
    assert NoStopping().report("a", 10**9, -math.inf)
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler({"scheduler": "pbt"})


def test_metric_value_reads_finite_numbers_only() -> None:
    record = {"return_mean": -3, "task.fall_rate": None, "x": float("nan"), "ok": True}
    assert metric_value(record, "return_mean") == -3.0
    assert metric_value(record, "task.fall_rate") is None  # the judge had nothing to judge
    assert metric_value(record, "x") is None and metric_value(record, "ok") is None
    assert metric_value(record, "missing") is None


def test_the_coordinator_stops_minimized_metrics_and_queues_events() -> None:
    # mode min: the lower error is better; ASHA (eta 2) stops the second, worse trial.
    coordinator = SweepCoordinator({"scheduler": "asha", "grace_steps": 100, "eta": 2},
                                   "task.walking_planar_error", "min")
    assert coordinator.start("a", {"node": "n1", "resumed_from": None}) == CONTINUE
    assert coordinator.report("a", [{"step": 100, "task.walking_planar_error": 0.2}]) == CONTINUE
    assert coordinator.report("b", []) == CONTINUE  # a heartbeat
    assert coordinator.report("b", [{"step": 100, "task.walking_planar_error": 0.5}]) == STOP
    assert coordinator.report("b", []) == STOP  # stays stopped until its process is gone
    # A record without the metric (nothing to judge) is no score.
    assert coordinator.report("c", [{"step": 100, "task.walking_planar_error": None}]) == CONTINUE
    events = coordinator.drain()
    assert [e["type"] for e in events] == ["started", "records", "records", "stop", "records"]
    assert events[3] == {"type": "stop", "trial_id": "b", "step": 100,
                         "metric": "task.walking_planar_error", "value": 0.5}
    assert coordinator.drain() == []
    coordinator.interrupt()
    assert coordinator.report("a", []) == INTERRUPT
    assert coordinator.start("d", {}) == INTERRUPT  # queued trials do not start any more


def test_replayed_results_count_for_the_rungs_without_events() -> None:
    coordinator = SweepCoordinator({"scheduler": "asha", "grace_steps": 100, "eta": 2}, "return_mean", "max")
    coordinator.replay("old", [{"step": 100, "return_mean": 10.0}, {"step": 200, "return_mean": 12.0}])
    assert coordinator.drain() == []
    assert coordinator.report("new", [{"step": 100, "return_mean": 5.0}]) == STOP
