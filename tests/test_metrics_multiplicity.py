"""Holm and Benjamini-Hochberg adjustment on hand-worked families."""

import numpy as np
import pytest

from hierarchy.metrics.multiplicity import adjust_family, adjust_p_values


def test_holm_hand_worked():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(adjust_p_values([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # a p of 0.027 that is third smallest of four doubles (as in the quick-profile example)
    assert adjust_p_values([0.027, 0.001, 0.002, 0.5])[0] == pytest.approx(0.054)
    assert adjust_p_values([0.6, 0.9]).tolist() == [1.0, 1.0]


def test_benjamini_hochberg_hand_worked():
    # sorted p * m / rank = 0.02, 0.02, 0.04, 0.04; running min from the largest keeps them
    np.testing.assert_allclose(adjust_p_values([0.01, 0.04, 0.03, 0.005], "bh"), [0.02, 0.04, 0.04, 0.02])


def test_family_table_keeps_raw_and_adjusted_and_skips_missing():
    rows = adjust_family({"primary": 0.027, "whole test": 0.001, "external": None, "macro-AUC": 0.3})
    assert [r["name"] for r in rows] == ["primary", "whole test", "external", "macro-AUC"]
    primary = rows[0]
    assert primary["p_raw"] == 0.027 and primary["p_adjusted"] == pytest.approx(0.054)
    assert primary["significant"] is False and primary["m"] == 3 and primary["method"] == "holm"
    assert rows[2]["p_adjusted"] is None and rows[1]["significant"] is True


def test_bad_families_are_refused():
    with pytest.raises(ValueError, match="method"):
        adjust_p_values([0.1], "bonferonni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([0.1, float("nan")])
