"""The training profile on the card: per-insurer rows, async rate and codes; old cards still load."""

from __future__ import annotations

import math

import pandas as pd

from model.profile import MAX_CODES_PER_INSURER, TrainingProfile, data_profile
from tests.factories import toy_frame


def test_profile_counts_rows_rates_and_codes_per_insurer():
    frame = toy_frame(600)
    profile = data_profile(frame)["insurers"]
    assert set(profile) == set(frame["insurer"])
    acme = frame[frame["insurer"] == "acme"]
    assert profile["acme"]["rows"] == len(acme)
    assert math.isclose(profile["acme"]["async_rate"], acme["async_eligible"].mean(), abs_tol=1e-4)
    assert set(profile["acme"]["codes"]) == set(acme["error_code"].dropna())


def test_empty_codes_are_not_codes_and_the_list_is_capped():
    codes = [None, "", "  "] + [f"C{i}" for i in range(MAX_CODES_PER_INSURER + 10)]
    frame = pd.DataFrame({"insurer": "x", "error_code": codes, "async_eligible": 1})
    kept = data_profile(frame)["insurers"]["x"]["codes"]
    assert len(kept) == MAX_CODES_PER_INSURER
    assert "" not in kept and "  " not in kept


def test_profile_round_trips_through_a_card():
    card = {"training_data": {"rows": 10, "profile": data_profile(toy_frame(300))}}
    profile = TrainingProfile.from_card(card)
    assert profile.available
    assert profile.knows_code("acme", "E1001") is True
    assert profile.knows_code("acme", "NEVER-SEEN") is False
    assert profile.knows_code("new-insurer", "E1001") is False
    assert profile.knows_code("acme", None) is None
    assert profile.async_rate("acme") is not None
    assert profile.async_rate("new-insurer") is None


def test_a_card_without_profile_gives_an_empty_one():
    for card in ({}, {"training_data": {"rows": 3}}, {"training_data": {"profile": "garbage"}}):
        profile = TrainingProfile.from_card(card)
        assert not profile.available
        assert profile.knows_code("acme", "E1") is None
