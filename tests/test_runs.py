import pytest
import torch

from brainvq.errors import RunError
from brainvq.io import atomic_write_text
from brainvq.nn.vqvae import VQVAE
from brainvq.runs import RunDir, check_compatible, load_vqvae, save_vqvae

from .conftest import tiny_config


def test_safetensors_round_trip_carries_config(tmp_path):
    cfg = tiny_config()
    m = VQVAE(cfg.vqvae)
    p = tmp_path / "vqvae.safetensors"
    save_vqvae(m, p, cfg)
    back = load_vqvae(p)  # config read from the file's metadata
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(m.eval().encode(x), back.encode(x))
    assert back.cfg == cfg.vqvae


def test_weights_from_other_config_refused(tmp_path):
    cfg = tiny_config()
    p = tmp_path / "vqvae.safetensors"
    save_vqvae(VQVAE(cfg.vqvae), p, cfg)
    other = tiny_config()
    other.vqvae.codebook_size = 64
    with pytest.raises(RunError, match="do not fit"):
        load_vqvae(p, other)


def test_run_folder_with_other_config_refused(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    cfg = tiny_config()
    cfg.save(run.config)
    check_compatible(run, cfg)  # same config: fine
    other = tiny_config()
    other.vqvae.code_dim = 4
    with pytest.raises(RunError, match="vqvae.code_dim 8 -> 4"):
        check_compatible(run, other)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "a" / "m.json"
    atomic_write_text(p, "{}")
    atomic_write_text(p, '{"x": 1}')
    assert p.read_text() == '{"x": 1}'
    assert [q.name for q in p.parent.iterdir()] == ["m.json"]


def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunError, match="not writable"):
        RunDir(blocker / "run").ensure_writable()


def test_data_json_records_a_relative_data_folder_as_an_absolute_path(tmp_path, monkeypatch):
    """A run trained with a relative --data finds its data from any folder afterwards."""
    import json

    from brainvq.runs import load_run
    from brainvq.training.vqvae import train_vqvae

    from .conftest import write_slices

    write_slices(tmp_path / "data" / "keras_png_slices_train", 6, 32, seed=1)
    write_slices(tmp_path / "data" / "keras_png_slices_validate", 2, 32, seed=2)
    write_slices(tmp_path / "data" / "keras_png_slices_test", 2, 32, seed=3)
    monkeypatch.chdir(tmp_path)
    train_vqvae("data", "run", tiny_config(max_epochs=1, max_steps=1), progress=False)
    record = json.loads((tmp_path / "run" / "data.json").read_text())
    assert record["data"] == str((tmp_path / "data").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_run(tmp_path / "run").data_root() == str((tmp_path / "data").resolve())
