"""Build src/brainvq/data/default_data/mni152_axial.npz from the MNI152 2009a template in nilearn's wheel.

Usage: pip install nilearn && python scripts/make_default_data.py
The template is already skull-stripped. Axial slices whose brain area is at least 15% of the largest
are kept, turned so anterior is up, scaled so the 99.5th percentile of the volume is 255, padded to
a square and resized to 128x128 (area averaging).
"""

from pathlib import Path

import nibabel as nib
import numpy as np

from brainvq.data import to_square

OUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "brainvq"
    / "data"
    / "default_data"
    / "mni152_axial.npz"
)


def main() -> None:
    import nilearn

    path = (
        Path(nilearn.__file__).parent
        / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )
    vol = np.asarray(nib.as_closest_canonical(nib.load(path)).get_fdata(), dtype=np.float64)
    top = np.percentile(vol[vol > 0], 99.5)
    vol = np.clip(vol / top * 255.0, 0, 255)
    area = (vol > 10).sum(axis=(0, 1))
    keep = np.nonzero(area >= 0.15 * area.max())[0]
    slices = [to_square(np.rot90(vol[:, :, z]).round().astype(np.uint8), 128) for z in keep]
    arr = np.stack(slices)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, slices=arr, z=keep.astype(np.int16))
    print(f"wrote {OUT}: {arr.shape} from axial slices z={keep[0]}..{keep[-1]}")


if __name__ == "__main__":
    main()
