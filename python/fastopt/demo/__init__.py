"""``python -m fastopt.demo``: the optimizers at work, in pictures, on real data.

Four parts: paths of every optimizer, L-BFGS and conjugate gradients too, on an anisotropic bowl
(paths.png), a small NumPy network trained on scikit-learn's handwritten digits with each optimizer
(training.png, and a table of test accuracies), the optimizer step's speed against the book's plain
NumPy (speed.png), and L-BFGS against Adam on logistic regression of the digits, full batch
(logistic.png).
Needs the demo extra: ``pip install "fastopt[demo]"`` (matplotlib, scikit-learn, tqdm).
"""

from __future__ import annotations

from .optimizers import OPTIMIZERS

__all__ = ["OPTIMIZERS"]
