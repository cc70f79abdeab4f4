"""Seeded NIR fuzz test: 200+ mutations of a real export, each a clear one-line NeurolearnError or a network that runs.

Byte-level mutations (truncation, flipped bytes, garbage) go through :func:`neurolearn.export.nir.read`;
structural ones edit the HDF5 file with h5py (NaN, inf, negative, huge, wrong dtype and shape,
deleted datasets, bad metadata) or the ``nir.NIRGraph`` objects (missing nodes and edges, cycles,
unknown node types) and go through :func:`from_nir`. No other exception, no case over a few
seconds (SIGALRM), no network with a gigantic number of parameters.
"""

from __future__ import annotations

import copy
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from neurolearn.encoders import Encoder
from neurolearn.errors import NeurolearnError
from neurolearn.export.nir import from_nir, read, write
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams

SEED = 1234
CASE_SECONDS = 5
MAX_PARAMS = 10**7


def _net() -> Network:
    torch.manual_seed(0)
    lif = LIFParams(tau_mem=5e-3, dt=1e-3, reset="value")
    layers = [Dense(6, 5, lif), Dense(5, 4, lif, recurrent=True), Dense(4, 3, LIParams(tau=5e-3, dt=1e-3))]
    return Network(layers, encoder=Encoder("rate", steps=4), decode="mean", dt=1e-3)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _outcome(load) -> str:
    """Run ``load`` (returns a Network) and the network it returns; 'ok' or 'refused', or fail the test."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = load()
            assert sum(p.numel() for p in net.parameters()) < MAX_PARAMS
            x = torch.rand(2, *net.input_shape)
            with torch.no_grad():
                out = net.decode_output(net(net.encode(x, torch.Generator().manual_seed(0))))
            assert out.shape[0] == 2
        return "ok"
    except NeurolearnError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
        return "refused"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _datasets(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


VALUES = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e30, -1e30, 1e-30]


def _edit_dataset(path: Path, name: str, rng: random.Random) -> None:
    """Replace one dataset with a nonsense value of the same or another dtype/shape."""
    with h5py.File(path, "r+") as f:
        old = f[name][()]
        del f[name]
        kind = rng.randrange(7)
        if kind == 0 and isinstance(old, np.ndarray) and old.dtype.kind == "f":  # one bad entry
            new = old.copy()
            new.reshape(-1)[rng.randrange(max(new.size, 1))] = rng.choice(VALUES) if new.size else 0
        elif kind == 1:  # a bad scalar
            new = np.float64(rng.choice(VALUES))
        elif kind == 2:  # wrong dtype: complex
            new = np.asarray(old, dtype=np.complex128) + 1j if np.asarray(old).dtype.kind in "biuf" else old
        elif kind == 3:  # wrong dtype: text
            new = np.bytes_(b"garbage")
        elif kind == 4:  # wrong shape
            new = np.ones((rng.randrange(1, 4), rng.randrange(1, 9)), np.float32)
        elif kind == 5:  # huge values
            new = np.full(np.shape(old), 1e38 if rng.random() < 0.5 else 10**12, dtype=np.float64)
        else:  # bad JSON / wrong types in metadata-like strings
            new = np.bytes_(rng.choice([b"{not json", b"[1, 2]", b'{"steps": 1e12}', b'{"kind": 3}', b'{"bogus": 1}',
                                        b'{"steps": 100000000, "kind": "rate"}', b"nan", b"avg"]))
        f.create_dataset(name, data=new)


def _graph_mutations(graph, rng: random.Random):
    """Structural edits of the graph object: missing nodes and edges, cycles, unknown types, odd metadata."""
    g = copy.deepcopy(graph)
    nodes, edges, meta = dict(g.nodes), list(g.edges), dict(g.metadata)
    kind = rng.randrange(9)
    if kind == 0 and edges:
        edges.pop(rng.randrange(len(edges)))
    elif kind == 1:
        nodes.pop(rng.choice(sorted(nodes)))
    elif kind == 2:
        a, b = rng.choice(sorted(nodes)), rng.choice(sorted(nodes))
        edges.append((a, b))
    elif kind == 3:
        nodes[rng.choice(sorted(nodes))] = nir.Delay(np.ones(3))
    elif kind == 4:
        edges.append(("output", "input"))
    elif kind == 5:
        meta[rng.choice(["dt", "neurolearn.time_scale", "neurolearn.model_dt"])] = rng.choice(
            [0.0, -1.0, float("nan"), float("inf"), 1e9, "x", True, [1, 2]])
    elif kind == 6:
        meta[rng.choice(["neurolearn.encoder", "neurolearn.readout", "neurolearn.decode"])] = rng.choice(
            ["{", "[]", '{"kind": "rate", "steps": 10000000000}', '{"stepz": 3}', "avg", 7, None])
    elif kind == 7:
        meta["neurolearn.bogus"] = "1"
    else:  # a neuron with a nonsense parameter
        name = rng.choice([k for k, n in nodes.items() if isinstance(n, (nir.LIF, nir.LI, nir.CubaLIF))])
        node = copy.deepcopy(nodes[name])
        field = rng.choice([f for f in ("tau", "r", "v_threshold", "v_leak", "v_reset") if hasattr(node, f)])
        setattr(node, field, np.full(np.shape(getattr(node, field)), rng.choice(VALUES)))
        nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def test_nir_fuzz(tmp_path):
    rng = random.Random(SEED)
    base = tmp_path / "base.nir"
    write(base, _net())
    assert _outcome(lambda: read(base)) == "ok"
    data = base.read_bytes()
    names = _datasets(base)
    graph = nir.read(base)
    counts = {"ok": 0, "refused": 0}
    t0 = time.perf_counter()
    cases = 0
    for i in range(70):  # byte level
        b = bytearray(data)
        kind = i % 4
        if kind == 0:
            b = b[: rng.randrange(len(b))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 20)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == 2:
            start = rng.randrange(len(b))
            b[start:start + rng.randrange(1, 200)] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        else:
            b = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4096)))
        p = tmp_path / f"bytes{i}.nir"
        p.write_bytes(bytes(b))
        counts[_outcome(lambda: read(p))] += 1
        cases += 1
    for i in range(90):  # HDF5 datasets edited with h5py
        p = tmp_path / f"h5{i}.nir"
        shutil.copy(base, p)
        for _ in range(rng.randrange(1, 3)):
            _edit_dataset(p, rng.choice(names), rng)
        counts[_outcome(lambda: read(p))] += 1
        cases += 1
    for i in range(80):  # graph objects edited
        g = _graph_mutations(graph, rng)
        counts[_outcome(lambda: from_nir(g))] += 1
        cases += 1
    assert cases >= 200
    assert counts["refused"] >= 150, counts  # most mutations are nonsense and must be refused
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("field,value", [("tau", np.nan), ("r", 0.0), ("r", -2.0), ("v_threshold", np.inf),
                                         ("tau", -1e-3)])
def test_nonsense_neuron_parameters_are_refused(tmp_path, field, value):
    p = tmp_path / "m.nir"
    write(p, _net())
    with h5py.File(p, "r+") as f:
        name = "node/nodes/lif0/" + field
        old = f[name][()]
        del f[name]
        f.create_dataset(name, data=np.full(np.shape(old), value))
    with pytest.raises(NeurolearnError, match=field):
        read(p)
