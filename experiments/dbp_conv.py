"""DBP vs BP with plain SGD on a small conv net on MNIST (models/cnn-mnist.toml), same seed.

The same protocol as ``dbp_speedup.py`` (imported from it): BP trains ``--epochs``, DBP the
same; epochs and wall time DBP needs to reach BP's final training loss. Every layer is
decorrelated; in the conv layers ``R`` acts on flattened 5x5 patches and is folded into the
kernel. Each update uses 3 % of the batch: 4 of 128 images, every patch position of them
(2304 rows in conv1, 256 in conv2), and 4 rows of the dense readout (10 % of the images:
0.970 instead of 0.968, but 1.44x instead of 1.19x the BP step time). Defaults are reduced for a 2-core CPU
(10 000 training images, 5 epochs); ``--train-limit 0`` uses all 60 000.
Writes ``experiments/results/dbp_conv.json`` and ``.png``; last line
``{"epochs_ratio", "wall_ratio", "dbp_acc", "bp_acc"}``.

    python experiments/dbp_conv.py
    python experiments/dbp_conv.py --quick      # 10 000 images, 4 epochs
"""

from __future__ import annotations




from dbp_speedup import main

if __name__ == "__main__":
    main("dbp_conv", __doc__, model="cnn-mnist", hidden=[], epochs=5, train_limit=10000, subsample=0.03)
