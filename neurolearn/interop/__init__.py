"""Interoperability with other SNN libraries (snnTorch). Imported lazily; needs the library."""

from neurolearn.interop.snntorch import SNNTorchNet, to_snntorch, wrap_snntorch

__all__ = ["SNNTorchNet", "to_snntorch", "wrap_snntorch"]
