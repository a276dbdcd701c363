"""One reliability table and one ECE for every figure that carries the name."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibration import expected_calibration_error, reliability
from service.learning.report import calibration
from training.metrics import expected_calibration_error as training_ece


def test_bins_and_ece_by_hand() -> None:
    pairs = [(0.05, 0), (0.05, 0), (0.15, 1), (0.95, 1), (0.95, 0), (1.0, 1)]
    table = reliability(pairs)
    assert [(b.low, b.n) for b in table] == [(0.0, 2), (0.1, 1), (0.9, 3)]  # 1.0 falls in the last bin
    # |0.05 - 0| * 2/6 + |0.15 - 1| * 1/6 + |(0.95 + 0.95 + 1.0) / 3 - 2/3| * 3/6
    expected = 0.05 * 2 / 6 + 0.85 / 6 + abs(2.9 / 3 - 2 / 3) * 3 / 6
    assert expected_calibration_error(table) == pytest.approx(expected)
    assert expected_calibration_error([]) is None


def test_training_and_live_reports_give_the_same_figure() -> None:
    rng = np.random.default_rng(3)
    probability = rng.random(5_000)
    y = (rng.random(5_000) < probability**1.5).astype(int)  # miscalibrated on purpose
    live = calibration(zip(probability.tolist(), y.tolist(), strict=True))
    assert training_ece(y, probability) == pytest.approx(live["ece"], abs=5e-5)  # the report rounds to 4
    assert training_ece(y, probability) > 0.05
