"""The anatomy rule (brainvq.data.anatomy) on slices drawn here with known areas."""

from __future__ import annotations

import numpy as np
import pytest

from brainvq.data.anatomy import ANATOMY, anatomy, masks

from ..conftest import SHARED_128

SIZE = 128
BRAIN_TOLERANCE = 0.002  # absolute, in fractions of the slice (about 33 of 16384 pixels)
VENTRICLE_TOLERANCE = 0.05  # relative to the drawn ventricle area


def ellipse(cy, cx, ry, rx, angle=0.0, size=SIZE) -> np.ndarray:
    """Boolean ellipse (centre, radii in pixels, rotated by angle radians)."""
    y, x = np.mgrid[:size, :size].astype(float)
    y, x = y - cy, x - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1


def drawn_slice(seed: int, ventricles: bool = True):
    """A T1-like slice: a brain ellipse (grey-matter rim, white-matter core), two dark ventricle
    ellipses near the middle, dark sulci at the edge (thin radial lines and one wide groove)
    that are not ventricles, and noise; returns (uint8 image, brain pixels, ventricle pixels)."""
    rng = np.random.default_rng(seed)
    cy, cx = SIZE / 2 + rng.uniform(-4, 4, 2)
    ry, rx = rng.uniform(44, 54), rng.uniform(36, 46)
    brain = ellipse(cy, cx, ry, rx)
    wm = ellipse(cy, cx, ry - 8, rx - 8)
    img = np.where(brain, 0.45, 0.0) + np.where(wm, 0.35, 0.0)  # GM 0.45, WM 0.8
    for k in range(12):  # thin sulci: one pixel wide, from the edge a third of the way in
        a = 2 * np.pi * (k + rng.uniform(0, 0.5)) / 12
        for r in np.linspace(0.65, 1.0, 40):
            y, x = int(cy + r * ry * np.sin(a)), int(cx + r * rx * np.cos(a))
            img[y, x] = 0.12
    groove = ellipse(cy, cx - rx * 0.85, 3, 9) & brain  # a wide sulcus at the side
    img[groove] = 0.1
    vent = np.zeros_like(brain)
    if ventricles:
        h, w = rng.uniform(7, 16), rng.uniform(3, 6)
        gap = rng.uniform(6, 10)
        for side in (-1, 1):
            vent |= ellipse(cy, cx + side * gap, h, w, side * rng.uniform(0.1, 0.4))
        img[vent] = 0.1
    img = img + rng.normal(0, 0.03, img.shape) * brain
    image = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return image, int(brain.sum()), int(vent.sum())


@pytest.mark.parametrize("seed", range(6))
def test_fractions_match_drawn_areas(seed):
    image, brain_px, vent_px = drawn_slice(seed)
    a = anatomy(image)
    assert set(a) == set(ANATOMY) and a["brain_fraction"].shape == (1,)
    assert abs(a["brain_fraction"][0] - brain_px / SIZE**2) < BRAIN_TOLERANCE
    measured = a["ventricle_fraction"][0] * SIZE**2
    assert abs(measured - vent_px) <= VENTRICLE_TOLERANCE * vent_px, (measured, vent_px)


def test_sulci_alone_are_no_ventricles():
    image, _, _ = drawn_slice(7, ventricles=False)
    assert anatomy(image)["ventricle_fraction"][0] * SIZE**2 < 5  # the groove and lines drop


def test_larger_ventricles_read_larger_and_float_input_reads_the_same():
    base, _, _ = drawn_slice(3)
    bigger = base.copy()
    brain, vent = masks(base)
    grown = np.zeros_like(vent)
    grown[1:] |= vent[:-1]
    grown[:-1] |= vent[1:]
    grown[:, 1:] |= vent[:, :-1]
    bigger[grown | vent] = base[vent].min()
    small, large = anatomy(np.stack([base, bigger]))["ventricle_fraction"]
    assert large > small * 1.1
    as_float = anatomy(base.astype(np.float32) / 255)
    assert as_float["ventricle_fraction"][0] == pytest.approx(small, abs=1e-6)


def test_blank_slices_measure_nothing():
    a = anatomy(np.zeros((2, 32, 32), dtype=np.uint8))
    assert a["brain_fraction"].tolist() == [0, 0] and a["ventricle_fraction"].tolist() == [0, 0]


@pytest.mark.skipif(not SHARED_128.is_dir(), reason="shared dev data absent")
def test_real_slices_read_within_anatomical_ranges():
    from brainvq.config import DataConfig
    from brainvq.data import load_data

    splits, arrays = load_data(SHARED_128, DataConfig(image_size=128), progress=False)
    a = anatomy(arrays["test"])
    assert 0.3 < np.median(a["brain_fraction"]) < 0.7
    assert 0.005 < np.median(a["ventricle_fraction"]) < 0.15
    # higher levels (the lateral ventricles' bodies) against the lowest: both in range
    assert (a["ventricle_fraction"] < a["brain_fraction"] / 3).all()
