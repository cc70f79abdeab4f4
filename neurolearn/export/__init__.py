"""Export of trained networks to other worlds (neuromorphic hardware via NIR).

Optional dependencies are imported lazily: ``import neurolearn.export.nir`` needs ``nir``.
"""

from neurolearn.export.nir import NIR_DT, NIRError, from_nir, read, to_nir, write

__all__ = ["NIR_DT", "NIRError", "from_nir", "read", "to_nir", "write"]
