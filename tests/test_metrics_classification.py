import numpy as np
import pytest
from sklearn import metrics as skm

from hierarchy.metrics import (
    accuracy,
    balanced_accuracy,
    class_auc,
    confusion,
    macro_auc,
    macro_f1,
    micro_auc,
    per_class_table,
    pr_curves,
    roc_curves,
)
from hierarchy.metrics.classification import check_inputs, headline_scores

CLASSES = ("a", "b", "c", "d")


@pytest.fixture
def fixed():
    rng = np.random.default_rng(3)
    y = np.arange(120) % 4
    logits = 1.5 * np.eye(4)[y] + rng.normal(size=(120, 4))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_headline_numbers_match_sklearn(fixed):
    y, proba = fixed
    pred = proba.argmax(1)
    assert accuracy(y, proba) == pytest.approx(skm.accuracy_score(y, pred))
    assert balanced_accuracy(y, proba) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert macro_f1(y, proba) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert macro_auc(y, proba) == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert micro_auc(y, proba) == pytest.approx(
        skm.roc_auc_score(np.eye(4)[y], proba, average="micro"))
    scores = headline_scores(y, proba, CLASSES)
    assert scores["macro_auc"] == pytest.approx(macro_auc(y, proba))
    assert scores["auc_c"] == pytest.approx(skm.roc_auc_score(y == 2, proba[:, 2]))


def test_per_class_table_matches_sklearn_and_confusion(fixed):
    y, proba = fixed
    pred = proba.argmax(1)
    table = per_class_table(y, proba, CLASSES)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred)
    np.testing.assert_allclose(table["precision"], p)
    np.testing.assert_allclose(table["recall"], r)
    np.testing.assert_allclose(table["f1"], f)
    np.testing.assert_array_equal(table["support"], s)
    cm = skm.confusion_matrix(y, pred)
    for k in range(4):
        tn = cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]
        fp = cm[:, k].sum() - cm[k, k]
        fn = cm[k].sum() - cm[k, k]
        assert table["specificity"][k] == pytest.approx(tn / (tn + fp))
        assert table["npv"][k] == pytest.approx(tn / (tn + fn))
        assert table["average_precision"][k] == pytest.approx(
            skm.average_precision_score(y == k, proba[:, k]))


def test_confusion_counts_and_row_normalisation(fixed):
    y, proba = fixed
    result = confusion(y, proba, CLASSES)
    np.testing.assert_array_equal(result["counts"], skm.confusion_matrix(y, proba.argmax(1)))
    np.testing.assert_allclose(result["normalized"],
                               skm.confusion_matrix(y, proba.argmax(1), normalize="true"))


def test_curves_match_sklearn(fixed):
    y, proba = fixed
    roc = roc_curves(y, proba, CLASSES)
    fpr, tpr, _ = skm.roc_curve(y == 1, proba[:, 1])
    np.testing.assert_allclose(roc["b"]["fpr"], fpr)
    np.testing.assert_allclose(roc["b"]["tpr"], tpr)
    pr = pr_curves(y, proba, CLASSES)
    precision, recall, _ = skm.precision_recall_curve(y == 3, proba[:, 3])
    np.testing.assert_allclose(pr["d"]["precision"], precision)
    np.testing.assert_allclose(pr["d"]["recall"], recall)


def test_absent_class_gives_undefined_auc_not_an_error(fixed):
    y, proba = fixed
    keep = y != 3
    y, proba = y[keep], proba[keep]
    assert np.isnan(class_auc(y, proba, 3))
    assert macro_auc(y, proba) == pytest.approx(np.mean([class_auc(y, proba, k) for k in range(3)]))
    assert "d" not in roc_curves(y, proba, CLASSES)
    assert np.isnan(per_class_table(y, proba, CLASSES)["recall"][3])
    never_d = proba.copy()
    never_d[:, 3] = 0.0
    assert macro_f1(y, never_d) == pytest.approx(
        skm.f1_score(y, never_d.argmax(1), labels=[0, 1, 2], average="macro"))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        check_inputs(np.array([0, 1]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="rows"):
        check_inputs(np.array([0, 1, 1]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        check_inputs(np.array([0, 1]), np.array([[np.nan, 1], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="indices"):
        check_inputs(np.array([0, 5]), np.full((2, 2), 0.5))


def test_confusion_normalised_by_predicted_class():
    from hierarchy.metrics import confusion
    # truth 0,0,0,1 ; predictions 0,1,1,1: of the three calls of class 1 only one is right
    y = np.array([0, 0, 0, 1])
    proba = np.eye(2)[[0, 1, 1, 1]]
    result = confusion(y, proba, ["a", "b"])
    assert result["counts"] == [[1, 2], [0, 1]]
    np.testing.assert_allclose(result["normalized"], [[1 / 3, 2 / 3], [0, 1]])
    np.testing.assert_allclose(result["normalized_by_predicted"], [[1, 2 / 3], [0, 1 / 3]])
