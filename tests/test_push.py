"""babyllama push: final model to main, each word checkpoint to its branch; one line when offline (mocked Hub)."""

import json
from unittest import mock

import pytest

from babyllama.cli import main


def _model_folder(root, checkpoints=("chck_1M", "chck_2M", "chck_250K")):
    root.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json"):
        (root / name).write_text("{}")
    (root / ".hidden").write_text("x")
    (root / "zero_shot").mkdir()
    (root / "zero_shot" / "results.json").write_text("{}")
    for name in checkpoints:
        folder = root / "word_checkpoints" / name
        folder.mkdir(parents=True)
        for file in ("config.json", "model.safetensors", "word_checkpoint.json"):
            (folder / file).write_text("{}")
    return root


def test_push_uploads_main_then_one_branch_per_checkpoint(tmp_path, capsys):
    model = _model_folder(tmp_path / "m")
    with mock.patch("huggingface_hub.HfApi") as hf:
        api = hf.return_value
        api.create_repo.return_value = "https://huggingface.co/me/baby"
        assert main(["push", str(model), "--repo", "me/baby", "--private"]) == 0
    hf.assert_called_once_with(token=None)
    api.create_repo.assert_called_once_with("me/baby", private=True, exist_ok=True)
    uploads = api.upload_folder.call_args_list
    assert uploads[0].kwargs["folder_path"] == model and "revision" not in uploads[0].kwargs
    assert uploads[0].kwargs["allow_patterns"] == ["config.json", "metrics.json", "model.safetensors", "tokenizer.json"]
    branches = [c.kwargs["branch"] for c in api.create_branch.call_args_list]
    assert branches == ["chck_250K", "chck_1M", "chck_2M"]  # by words seen
    assert [(c.kwargs["revision"], c.kwargs["folder_path"].name, c.kwargs["delete_patterns"]) for c in uploads[1:]] \
        == [(b, b, ["*"]) for b in branches]
    out = capsys.readouterr().out
    assert "branch chck_250K (the 2025 pipeline reads only chck_{N}M names)" in out and "branch chck_1M\n" in out


def test_no_checkpoints_uploads_main_only(tmp_path):
    model = _model_folder(tmp_path / "m")
    with mock.patch("huggingface_hub.HfApi") as hf:
        assert main(["push", str(model), "--repo", "me/baby", "--no-checkpoints", "--token", "t"]) == 0
    hf.assert_called_once_with(token="t")
    assert hf.return_value.upload_folder.call_count == 1 and not hf.return_value.create_branch.called


def test_offline_push_fails_in_one_line(tmp_path, capsys, monkeypatch):
    from huggingface_hub.errors import OfflineModeIsEnabled

    model = _model_folder(tmp_path / "m")
    with mock.patch("huggingface_hub.HfApi") as hf:
        hf.return_value.create_branch.side_effect = OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline")
        assert main(["push", str(model), "--repo", "me/baby"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == ("error: push to me/baby failed after main (offline, no token, or no write access?): "
                   "Cannot reach https://huggingface.co: offline")


def test_real_client_in_offline_mode_fails_in_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["push", str(_model_folder(tmp_path / "m")), "--repo", "me/baby", "--token", "hf_x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: push to me/baby failed (offline") and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--repo", "no-slash"], "--repo 'no-slash': expected USER/NAME"),
    (["--repo", "me/baby"], "not a model folder (needs config.json and *.safetensors weights)"),
])
def test_bad_input_is_refused_before_any_upload(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    with mock.patch("huggingface_hub.HfApi") as hf:
        assert main(["push", str(tmp_path / "empty"), *args]) == 2
    assert message in capsys.readouterr().err and not hf.called
