"""A pickled or text weights file, given where a model's starting weights go, is one error naming the file,
and nothing in it runs (issue 24)."""

from __future__ import annotations

import pickle

import pytest

from hierarchy.models import create

LITE0 = "tf_efficientnet_lite0"


class _Payload:
    def __reduce__(self):
        return (pytest.fail, ("the pickled weights file ran code",))


@pytest.mark.parametrize("content", [pickle.dumps(_Payload()), b"these are not weights\n"], ids=["pickled", "text"])
def test_a_pickled_or_text_weights_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"weights file {path}.*not a safetensors file") as err:
        create(LITE0, 4, weights=path)
    assert "\n" not in str(err.value)
    safetensors = tmp_path / "weights.safetensors"
    safetensors.write_bytes(content)
    with pytest.raises(ValueError, match=f"weights file {safetensors}"):
        create(LITE0, 4, weights=safetensors)


@pytest.mark.parametrize("flag", [["--set", "train.epochs=3.5"], ["--plane-epochs", "3.5"]])
def test_train_refuses_fractional_epochs_in_one_line_before_training(tmp_path, capsys, monkeypatch, flag):
    import hierarchy.routing
    from hierarchy.cli import main
    monkeypatch.setattr(hierarchy.routing.Router, "fit", lambda *a, **k: pytest.fail("training started"))
    try:
        code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *flag])
    except SystemExit as stop:  # argparse refuses a flag of the wrong type itself
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "epochs" in err and "3.5" in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
