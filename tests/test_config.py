import tomllib

import pytest

from brainvq.config import Config
from brainvq.errors import ConfigError


def test_toml_round_trip(tmp_path):
    cfg = Config()
    cfg.vqvae.codebook_size = 256
    cfg.train.lr = 3e-4
    cfg.vqvae.kmeans_init = True
    cfg.data.cache_dir = "/tmp/x"
    p = tmp_path / "c.toml"
    cfg.save(p)
    back = Config.load(p)
    assert back == cfg


def test_overrides_parse_types():
    cfg = Config().override(
        ["vqvae.codebook_size=128", "train.lr=2e-3", "vqvae.ema=false", "train.precision=32"]
    )
    assert cfg.vqvae.codebook_size == 128
    assert cfg.train.lr == 2e-3
    assert cfg.vqvae.ema is False
    assert cfg.train.precision == "32"


@pytest.mark.parametrize(
    "item, needle",
    [
        ("vqvae.codebook_size=-3", "vqvae.codebook_size"),
        ("data.image_size=130", "not divisible"),
        ("vqvae.downsample=3", "vqvae.downsample"),
        ("vqvae.nope=1", "unknown key vqvae.nope"),
        ("nosuch.key=1", "unknown section"),
        ("train.lr=fast", "must be a number"),
        ("vqvae.ema=maybe", "true or false"),
        ("codebook_size=5", "section.key"),
        ("vqvae.codebook_size", "section.key=value"),
        ("train.lr=nan", "finite"),
    ],
)
def test_bad_overrides_name_the_setting(item, needle):
    with pytest.raises(ConfigError, match=needle):
        Config().override([item])


def test_unknown_key_in_toml_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[vqvae]\ncodebook_sise = 12\n")
    with pytest.raises(ConfigError, match="codebook_sise"):
        Config.load(p)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[vqvae\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(p)
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "missing.toml")


def test_line_endings_are_read_as_toml_defines_them(tmp_path):
    p = tmp_path / "c.toml"
    p.write_bytes(b"[vqvae]\r\ncodebook_size = 12\r\n")  # CRLF is valid TOML
    assert Config.load(p).vqvae.codebook_size == 12
    for text in (b"\r", b"[vqvae]\rcodebook_size = 12\n"):  # a lone CR is not
        p.write_bytes(text)
        with pytest.raises(ConfigError, match="not valid TOML"):
            Config.load(p)


OLD_PRIOR_SECTION = """
[prior]
kind = "maskgit"
transformer_dim = 96
transformer_layers = 3
maskgit_steps = 8
lr = 5e-4
latent_dim = 64
pixelcnn_kernel = 7
tune_decoder_minutes = 0.0
"""


def test_configs_written_before_the_per_kind_sections_still_load(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(OLD_PRIOR_SECTION)
    p = Config.load(path).prior
    assert (p.maskgit.dim, p.transformer.dim, p.maskgit.layers) == (96, 96, 3)
    assert p.maskgit.steps == 8 and p.dcgan.latent_dim == 64 and p.pixelcnn.kernel == 7
    assert p.maskgit.lr == p.transformer.lr == p.pixelcnn.lr == 5e-4
    assert Config.load(path).tune.max_minutes == 0.0
    # written back, it uses the new sections and reads back the same
    back = tmp_path / "new.toml"
    Config.load(path).save(back)
    written = tomllib.loads(back.read_text())["prior"]
    assert "maskgit" in written and "maskgit_steps" not in written
    assert Config.load(back) == Config.load(path)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("prior.maskgit_steps=8", "--prior.maskgit.steps"),
        ("prior.tune_decoder_minutes=1", "--tune.max_minutes"),
        ("prior.transformer_dim=64", "--prior.transformer.dim and --prior.maskgit.dim"),
    ],
)
def test_old_keys_on_the_command_line_name_the_new_ones(old, new):
    with pytest.raises(ConfigError, match=f"old key: use {new}"):
        Config().override([old])


def test_nested_overrides_and_their_errors():
    cfg = Config().override(["prior.maskgit.steps=6", "prior.dcgan.design=snap"])
    assert cfg.prior.maskgit.steps == 6 and cfg.prior.dcgan.design == "snap"
    with pytest.raises(ConfigError, match="unknown section prior.gan"):
        Config().override(["prior.gan.steps=1"])
    with pytest.raises(ConfigError, match="prior.maskgit is a section"):
        Config().override(["prior.maskgit=1"])
    with pytest.raises(ConfigError, match="unknown key prior.maskgit.stepz"):
        Config().override(["prior.maskgit.stepz=1"])


def test_the_quick_preset_budgets_every_stage_in_steps_with_minutes_only_as_a_cap():
    # the demo must end at the same point on a free and on a busy CPU: every stage it trains
    # stops by steps; the minutes caps sit far above what those steps take (a safety net)
    cfg = Config.load("quick")
    assert cfg.train.max_steps > 0 and cfg.prior.max_steps > 0
    assert cfg.train.max_minutes >= 30 and cfg.prior.max_minutes >= 30
    assert not cfg.tune.enabled()  # no stage that only a clock would end
    assert cfg.train.precision == "32"  # not `auto`: the same arithmetic on every CPU


def test_a_command_on_an_existing_run_starts_from_the_runs_own_config(tmp_path):
    from brainvq.config import command_config

    run = tmp_path / "run"
    run.mkdir()
    Config.load("quick").save(run / "config.toml")
    assert command_config(None, str(run)).prior.max_steps == Config.load("quick").prior.max_steps
    assert command_config(None, str(tmp_path / "new")).prior.max_steps == Config().prior.max_steps
    assert command_config("quick", str(tmp_path / "new")).train.max_steps > 0


def test_default_budgets_are_in_steps_with_minutes_only_as_a_cap():
    """Rule: quality must not depend on machine load; the default stages end by step budgets."""
    cfg = Config()
    assert cfg.train.max_steps > 0 and cfg.train.max_minutes >= 30
    for kind, steps in (("maskgit", 600), ("dcgan", cfg.prior.dcgan.step_budget)):
        cfg.prior.kind = kind
        assert cfg.prior.step_budget() == steps > 0
    cfg.prior.max_steps = 7
    assert cfg.prior.step_budget() == 7  # prior.max_steps wins over the kind's own
    cfg.prior.kind, cfg.prior.max_steps = "pixelcnn", 0
    assert cfg.prior.step_budget() == 0  # not measured yet: its epochs and minutes end it


def test_the_anomaly_section_is_set_from_toml_and_checked(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[anomaly]\ndetect = "maskgit"\nthreshold = 0.005\nsigma = 2.0\n')
    a = Config.load(path).anomaly
    assert (a.detect, a.heal, a.threshold, a.sigma, a.maskgit_steps) == (
        "maskgit",
        "",
        0.005,
        2.0,
        4,
    )
    assert Config().override(["anomaly.top_share=0.05"]).anomaly.top_share == 0.05
    for bad, needle in [
        ("anomaly.detect=pixelcnn", "anomaly.detect"),
        ("anomaly.threshold=1.5", "anomaly.threshold"),
        ("anomaly.top_share=0", "anomaly.top_share"),
        ("anomaly.maskgit_steps=0", "anomaly.maskgit_steps"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            Config().override([bad])
