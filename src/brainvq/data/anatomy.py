"""Anatomy measured from each slice: brain area and ventricle area, as fractions of the slice.

The rule, per slice (8-bit or [0, 1] images; skull-stripped T1 slices, CSF dark, tissue bright,
the background near 0):

1. **brain**: pixels brighter than BACKGROUND (a tenth) of the slice's bright level (its 99th
   percentile), closed by a disc of radius 1, holes filled, the largest connected piece kept.
   ``brain_fraction`` = its pixels / the slice's pixels. The ventricles and other CSF inside it
   count as brain: it is the area within the brain's outline.
2. **CSF**: brain pixels darker than the lower of the two three-class Otsu thresholds of the
   brain's intensities (CSF / grey matter / white matter; skimage.filters.threshold_multiotsu),
   where the brain has enough pixels, else none.
3. **ventricles**: CSF opened by a disc of radius 1 (thin sulci, one or two pixels wide, fall
   away) and cut to the pixels at least MARGIN of the brain's equivalent radius R = sqrt(area /
   pi) from its outline (which parts the ventricles from sulci that reach them); of its
   connected pieces, those whose centre lies within CENTRE * R of the brain's centre and that
   have at least MIN_PIXELS pixels and MIN_SHARE of the largest such piece are kept: the sulci
   open onto the surface and the Sylvian fissures lie to the sides, the ventricles sit in the
   middle, larger than the specks of deep sulci around them.
   ``ventricle_fraction`` = the kept pixels / the slice's pixels.

At the lowest levels of the development data (the bottom fifth of a brain's kept slices) the
dark midline CSF in front of the third ventricle (interhemispheric fissure, cisterns) is counted
with the ventricles, and a frontal horn whose dark core is thinner than three pixels can be
missed: the measure is of the lateral ventricles' bodies first, which is where atrophy shows.

How it was validated: tests/data/test_anatomy.py draws slices with known areas (an ellipse brain with
inner dark ellipses, sulcus-like dark lines at its edge, noise) and checks both fractions within
stated tolerances; docs/anatomy_check.png overlays the masks on real development slices at
several levels, which were looked at by eye (docs/conditions.md says what was seen).

    from brainvq.data.anatomy import anatomy
    a = anatomy(uint8_slices)        # {"brain_fraction": (N,), "ventricle_fraction": (N,)}
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu

ANATOMY = ("brain_fraction", "ventricle_fraction")  # the per-slice covariates it measures
BACKGROUND = 0.1  # share of the slice's bright level (99th percentile) below which is background
MARGIN = 0.25  # CSF nearer the brain's edge than this share of its equivalent radius is cut off
CENTRE = 0.55  # a ventricle piece's centre lies within this share of R of the brain's centre
MIN_PIXELS = 4  # smallest ventricle piece kept (pixels, at any image size)
MIN_SHARE = 0.08  # ventricle pieces smaller than this share of the largest one are dropped
MIN_BRAIN = 64  # fewest brain pixels for a CSF threshold (else no ventricles)
DISC = ndi.generate_binary_structure(2, 1)  # the radius-1 disc (a plus)


def _as_float(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def brain_mask(image: np.ndarray) -> np.ndarray:
    """The brain of one slice (H, W) float in [0, 1]: step 1 of the rule."""
    bright = float(np.percentile(image, 99))
    if bright <= 0:
        return np.zeros(image.shape, dtype=bool)
    fg = ndi.binary_closing(image > BACKGROUND * bright, DISC)
    return ndi.binary_fill_holes(_largest(ndi.binary_fill_holes(fg)))


def csf_threshold(image: np.ndarray, brain: np.ndarray) -> float:
    """The intensity below which brain pixels are CSF (step 2), or -inf where it cannot tell."""
    values = image[brain]
    if values.size < MIN_BRAIN or np.ptp(values) <= 0:
        return -math.inf
    try:
        return float(threshold_multiotsu(values, classes=3)[0])
    except ValueError:  # too few distinct values for three classes
        return -math.inf


def ventricle_mask(image: np.ndarray, brain: np.ndarray | None = None) -> np.ndarray:
    """The ventricles of one slice (H, W) float in [0, 1]: step 3 of the rule."""
    brain = brain_mask(image) if brain is None else brain
    depth = ndi.distance_transform_edt(brain)  # distance to the nearest non-brain pixel
    radius = math.sqrt(brain.sum() / math.pi)
    csf = brain & (image < csf_threshold(image, brain))
    csf = ndi.binary_opening(csf, DISC) & (depth >= MARGIN * radius)
    if not csf.any():
        return csf
    labels, n = ndi.label(csf)
    idx = np.arange(1, n + 1)
    centre = np.array(ndi.center_of_mass(brain))
    where = np.array(ndi.center_of_mass(csf, labels, idx)).reshape(n, 2)
    central = np.hypot(*(where - centre).T) <= CENTRE * radius
    sizes = np.where(central, np.asarray(ndi.sum(csf, labels, idx)), 0)
    keep = idx[central & (sizes >= MIN_PIXELS) & (sizes >= MIN_SHARE * sizes.max())]
    return np.isin(labels, keep)


def masks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(brain, ventricles) boolean masks of one slice (H, W), uint8 or float in [0, 1]."""
    x = _as_float(image)[0]
    brain = brain_mask(x)
    return brain, ventricle_mask(x, brain)


def anatomy(images: np.ndarray) -> dict[str, np.ndarray]:
    """brain_fraction and ventricle_fraction (N,) float32 of slices (N, H, W) or one (H, W),
    uint8 or float in [0, 1]: the rule of the module docstring."""
    x = _as_float(images)
    out = {name: np.zeros(len(x), dtype=np.float32) for name in ANATOMY}
    for i, image in enumerate(x):
        brain = brain_mask(image)
        out["brain_fraction"][i] = brain.mean()
        out["ventricle_fraction"][i] = ventricle_mask(image, brain).mean()
    return out
