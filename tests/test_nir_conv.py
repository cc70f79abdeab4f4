"""Spiking conv nets to NIR and back (issue 16): Conv2d, AvgPool2d/SumPool2d and Flatten nodes; the forms for
snnTorch and Norse (dense layers after a conv as whole-map Conv2d, pooling in the reader's node) keep the
dynamics; the real readers run them spike for spike (skipped when not installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurolearn.build import build_network
from neurolearn.config import load_model_file
from neurolearn.errors import NIRError
from neurolearn.export.nir import from_nir, read, to_nir, write, write_graph
from neurolearn.export.readers import reader_installed, run_reader
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams

DT = 1e-3
SHAPE = (1, 8, 8)


def lif(**kw) -> LIFParams:
    return LIFParams(**{"tau_mem": 20e-3, "dt": DT, "reset": "value", **kw})


def conv_net(pool_mode: str = "avg", readout: str = "lif") -> Network:
    torch.manual_seed(0)
    out = lif(threshold=0.2) if readout == "lif" else LIParams(tau=10e-3, dt=DT)
    return Network([Conv2d(SHAPE, 4, 3, lif(), pool=2, pool_mode=pool_mode, init_gain=5.0),
                    Dense(36, 5, out, init_gain=10.0)], decode="mean", dt=DT)


def x_in(steps: int = 20, batch: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, *SHAPE, generator=g) < 0.3).float()


def run(n: Network, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return n.run(x).output.reshape(x.shape[0], x.shape[1], -1)


@pytest.mark.parametrize("pool_mode,readout", [("avg", "lif"), ("sum", "li")])
def test_conv_round_trip_is_exact(pool_mode, readout, tmp_path):
    n = conv_net(pool_mode, readout)
    g = to_nir(n)
    kinds = [type(node).__name__ for node in g.nodes.values()]
    pool = "AvgPool2d" if pool_mode == "avg" else "SumPool2d"
    assert {"Conv2d", pool, "Flatten"} <= set(kinds)
    write(tmp_path / "c.nir", n)
    back = read(tmp_path / "c.nir")
    assert isinstance(back.layers[0], Conv2d) and back.layers[0].pool_mode == pool_mode and back.layers[0].pool == 2
    x = x_in()
    ours, theirs = run(n, x), run(back, x)
    if readout == "lif":
        assert ours.mean() > 0.01 and torch.equal(ours, theirs)
    else:
        torch.testing.assert_close(theirs, ours, rtol=0, atol=0)


def test_max_pooling_and_rate_convs_are_refused():
    torch.manual_seed(0)
    with pytest.raises(NIRError, match="no max pooling"):
        to_nir(Network([Conv2d(SHAPE, 4, 3, lif(), pool=2), Dense(36, 5, lif())], dt=DT))
    with pytest.raises(NIRError, match="without spiking neurons"):
        to_nir(Network([Conv2d(SHAPE, 4, 3, None), Dense(144, 5, lif())], dt=DT))


@pytest.mark.parametrize("reader", ["snntorch", "norse", "spikingjelly"])
@pytest.mark.parametrize("pool_mode,readout", [("avg", "lif"), ("sum", "li")])
def test_conv_reader_form_keeps_the_dynamics(reader, pool_mode, readout):
    n = conv_net(pool_mode, readout)
    g = to_nir(n, reader=reader)
    kinds = {type(node).__name__ for node in g.nodes.values()}
    assert ("SumPool2d" if reader == "norse" else "AvgPool2d") in kinds
    assert ("Flatten" in kinds) == (reader == "spikingjelly")  # snnTorch/Norse: the dense layer as a whole-map conv
    x = x_in()
    ours, back = run(n, x), run(from_nir(g), x)
    if readout == "lif":
        assert ours.mean() > 0.01 and torch.equal(back, ours)
    else:
        torch.testing.assert_close(back, ours, rtol=1e-5, atol=1e-5)


def test_scnn_mnist_builds_exports_and_reimports():
    cfg = load_model_file("scnn-mnist")
    torch.manual_seed(0)
    n = build_network(cfg, (1, 28, 28))
    assert all(layer.spiking for layer in n.layers[:2]) and [type(layer).__name__ for layer in n.layers] == [
        "Conv2d", "Conv2d", "Dense"]
    x = (torch.rand(4, 2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    torch.testing.assert_close(run(from_nir(to_nir(n)), x), run(n, x), rtol=0, atol=0)
    # BPTT reaches the conv weights through the spikes (surrogate gradients)
    n.zero_grad()
    torch.nn.functional.cross_entropy(n.decode_output(n.run(x).output), torch.tensor([3, 7])).backward()
    assert all(layer.weight.grad is not None for layer in n.layers)
    assert n.layers[0].weight.grad.abs().sum() > 0 and n.layers[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("reader", ["snntorch", "norse", "spikingjelly"])
@pytest.mark.parametrize("pool_mode,readout", [("avg", "lif"), ("sum", "li")])
def test_readers_run_the_conv_export_spike_for_spike(reader, pool_mode, readout, tmp_path):
    if not reader_installed(reader):
        pytest.skip(f"{reader} is not installed (docs/results/nir.md: the readers' environment)")
    n = conv_net(pool_mode, readout)
    g = to_nir(n, reader=reader)
    write_graph(tmp_path / "g.nir", g)
    node = "li1" if readout == "li" else None
    x = x_in()
    res = run_reader(reader, tmp_path / "g.nir", x.numpy(), node, tmp_path)
    assert "error" not in res, res.get("error")
    ours = run(n, x).numpy()
    if node:
        np.testing.assert_allclose(res["readout"].reshape(ours.shape), ours, rtol=1e-5, atol=1e-5)
    else:
        assert ours.mean() > 0.01 and np.array_equal(res["output"].reshape(ours.shape), ours)


@pytest.mark.parametrize("writer", ["snntorch", "spikingjelly"])
def test_import_of_conv_files_written_by_snntorch_and_spikingjelly(writer, tmp_path):
    """The writer's library builds conv 4@3x3 LIF + AvgPool2d + Flatten + dense LIF, exports it with its own NIR
    export and runs it; neurolearn's import reproduces the spikes."""
    import subprocess
    import warnings

    from neurolearn.export import nir_drive
    from neurolearn.export.readers import READER_ENVS

    if not reader_installed(writer):
        pytest.skip(f"{writer} is not installed (docs/results/nir.md: the readers' environment)")
    x = x_in().numpy()
    np.save(tmp_path / "x.npy", x)
    subprocess.run([READER_ENVS[writer], nir_drive.__file__, "write", writer, str(tmp_path / "w.nir"),
                    str(tmp_path / "x.npy"), str(tmp_path / "r.npz"), "conv"], check=True, capture_output=True)
    ref = np.load(tmp_path / "r.npz")["output"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = from_nir(tmp_path / "w.nir", writer=writer)
    assert isinstance(n.layers[0], Conv2d) and n.layers[0].pool_mode == "avg"
    ours = run(n, torch.from_numpy(x)).numpy()
    assert ref.mean() > 0.01 and np.array_equal(ref.reshape(ours.shape), ours)
