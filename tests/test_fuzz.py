"""Property tests: malformed images and configs raise the project's errors, never anything else."""

import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainvq.config import Config
from brainvq.data import decode_slice
from brainvq.errors import ConfigError, DataError

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=400), png_head=st.booleans())
def test_loader_never_crashes_on_garbage(tmp_path, payload, png_head):
    p = tmp_path / "slice.png"
    p.write_bytes((PNG_HEAD if png_head else b"") + payload)
    try:
        arr, _ = decode_slice(p)
    except DataError as e:
        assert "slice.png" in str(e)
    else:
        assert arr.ndim == 2 and str(arr.dtype) == "uint8"


_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.none(),
)
_keys = st.sampled_from(
    [
        "codebook_size",
        "code_dim",
        "downsample",
        "image_size",
        "lr",
        "ema",
        "precision",
        "batch_size",
        "bogus",
        "max_minutes",
        "kind",
    ]
)
_sections = st.sampled_from(["data", "vqvae", "train", "prior", "eval", "nope"])


@settings(max_examples=150, deadline=None)
@given(raw=st.dictionaries(_sections, st.dictionaries(_keys, _values, max_size=4), max_size=4))
def test_config_parser_only_raises_config_error(raw):
    try:
        cfg = Config.from_dict(raw)
    except ConfigError:
        return
    assert cfg.validate() is cfg
    for section in cfg.to_dict().values():
        for value in section.values():
            assert value == value, "NaN accepted"  # noqa: PLR0124


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_config_text_only_raises_config_error(text, tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "c.toml"
    p.write_text(text, encoding="utf-8")
    try:
        Config.load(p)
    except ConfigError:
        return
    tomllib.loads(text)  # it loaded, so it must at least be valid TOML
