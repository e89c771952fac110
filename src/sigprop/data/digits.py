"""Handwritten digits: 1,797 images of 8 × 8 pixels in 10 classes (the UCI set that scikit-learn
ships inside its package, ``sklearn.datasets.load_digits``; nothing is downloaded).

Split once, by a fixed permutation (seed 0), into 1,097 training, 200 validation and 500 test
images; every pixel standardized by the training images' mean and standard deviation.
``digits()`` returns float32 tensors: images (N, 1, 8, 8) and labels (N,) int64 per split.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

TEST_IMAGES, VALIDATION_IMAGES = 500, 200
CLASSES = 10


@functools.lru_cache(maxsize=1)
def digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train", "validation", "test"} → (images, labels); raises ImportError with the install
    line when scikit-learn is missing."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits need scikit-learn, which ships them: pip install "
                          "scikit-learn (or the extra: pip install 'sigprop[rescue]')") from None
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    test, validation = order[:TEST_IMAGES], order[TEST_IMAGES:TEST_IMAGES + VALIDATION_IMAGES]
    train = order[TEST_IMAGES + VALIDATION_IMAGES:]
    pixels = data.images.astype(np.float64)
    mean = pixels[train].mean(axis=0)
    std = pixels[train].std(axis=0)
    std[std == 0] = 1.0  # border pixels that are always 0
    standardized = ((pixels - mean) / std).astype(np.float32)[:, None]
    labels = data.target.astype(np.int64)
    return {split: (torch.from_numpy(standardized[rows]), torch.from_numpy(labels[rows]))
            for split, rows in (("train", train), ("validation", validation), ("test", test))}
