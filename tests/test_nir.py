"""NIR export/import: spike-exact round trips (neurolearn, snnTorch) and clear errors on bad input."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch

from neurolearn.errors import NeurolearnError, ShapeError
from neurolearn.export.nir import NIR_DT, NIRError, from_nir, read, to_nir, write
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams

LIF = LIFParams(tau_mem=20e-3, dt=1e-3, reset="value")
CUBA = LIFParams(tau_mem=20e-3, tau_syn=5e-3, dt=1e-3, reset="value", threshold=0.8, v_reset=-0.1)


def _net(recurrent: bool = True, readout: bool = True, cuba: LIFParams = CUBA) -> Network:
    torch.manual_seed(0)
    layers = [Dense(12, 16, LIF, init_gain=3.0),
              Dense(16, 10, cuba, recurrent=recurrent, init_gain=3.0, recurrent_gain=0.5)]
    layers.append(Dense(10, 4, LIParams(tau=10e-3, dt=1e-3)) if readout else Dense(10, 4, LIF, init_gain=3.0))
    return Network(layers, decode="mean", dt=1e-3)


def _x(steps: int = 30, batch: int = 16, n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, n, generator=g) < 0.3).float()


def _assert_same_run(a: Network, b: Network, x: torch.Tensor) -> None:
    with torch.no_grad():
        ra, rb = a.run(x), b.run(x)
    active = 0.0
    for k, (la, lb) in enumerate(zip(ra.layers, rb.layers)):
        if a.layers[k].spiking:
            assert torch.equal(la.act, lb.act), f"layer {k}: spikes differ"
            active += float(la.act.mean())
        else:
            torch.testing.assert_close(la.act, lb.act, rtol=1e-5, atol=1e-5)
    assert active > 0.05, "test network too quiet to compare spikes"


def test_roundtrip_file_is_spike_exact(tmp_path):
    net = _net()
    path = tmp_path / "m.nir"
    write(path, net)
    back = read(path)
    _assert_same_run(net, back, _x())
    assert back.decode == "mean" and back.dt == pytest.approx(1e-3)
    assert back.layers[1].recurrent and back.layers[1].neuron.tau_syn == pytest.approx(5e-3)
    assert back.layers[1].neuron.v_reset == pytest.approx(-0.1)


def test_graph_layout_and_metadata():
    g = to_nir(_net())
    assert isinstance(g.nodes["input"], nir.Input) and isinstance(g.nodes["output"], nir.Output)
    assert ("cubalif1", "rec1") in g.edges and ("rec1", "cubalif1") in g.edges
    lif = g.nodes["lif0"]
    for arr in (lif.tau, lif.r, lif.v_leak, lif.v_threshold, lif.v_reset):
        assert arr.shape == (16,)
    # written for snnTorch's step: beta = 1 - dt/tau and r = tau/dt are preserved
    assert np.allclose(1 - NIR_DT / lif.tau, 0.95) and np.allclose(lif.r, lif.tau / NIR_DT)
    assert np.allclose(g.nodes["cubalif1"].w_in, g.nodes["cubalif1"].tau_syn / NIR_DT)
    assert g.metadata["dt"] == NIR_DT and "forward Euler" in g.metadata["discretisation"]
    g.infer_types()  # NIR's own type check accepts the graph


def test_physical_time_constants_option():
    net = _net()
    g = to_nir(net, dt=1e-3)
    assert np.allclose(g.nodes["lif0"].tau, 20e-3)
    _assert_same_run(net, from_nir(g), _x())


def test_snntorch_import_is_spike_exact(tmp_path):
    from snntorch.import_nir import import_from_nir

    # snnTorch resets to zero whatever v_reset says: export a reset-to-zero network
    net = _net(recurrent=False, readout=False, cuba=LIFParams(tau_mem=20e-3, tau_syn=5e-3, threshold=0.8, reset="value"))
    write(tmp_path / "m.nir", net)
    sn = import_from_nir(nir.read(tmp_path / "m.nir"))
    x = _x()
    outs, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = sn(x[t]) if state is None else sn(x[t], state)
            outs.append(out)
        ours = net.run(x).output
    assert ours.mean() > 0.02
    assert torch.equal(torch.stack(outs), ours)


def test_graph_exported_by_snntorch_runs_the_same():
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(3)
    fc1, fc2 = torch.nn.Linear(12, 20), torch.nn.Linear(20, 6)
    with torch.no_grad():
        fc1.weight.mul_(3.0), fc2.weight.mul_(3.0)
    lif1 = snn.Leaky(beta=torch.full((20,), 0.9), threshold=torch.ones(20), reset_mechanism="zero", init_hidden=True)
    lif2 = snn.Synaptic(alpha=torch.full((6,), 0.6), beta=torch.full((6,), 0.8), threshold=torch.ones(6),
                        reset_mechanism="zero", reset_delay=False, init_hidden=True, output=True)
    model = torch.nn.Sequential(fc1, lif1, fc2, lif2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(model, torch.zeros(1, 12), ignore_dims=[0])
    net = from_nir(graph)
    x = _x(n=12)
    with torch.no_grad():
        lif1.reset_mem(), lif2.reset_mem()
        lif2.syn = torch.zeros(0)
        ref = torch.stack([model(x[t])[0] for t in range(x.shape[0])])
        ours = net.run(x).output
    assert ref.mean() > 0.02
    assert torch.equal(ours, ref)


def test_decorrelation_is_merged():
    from neurolearn.decorrelation import add_decorrelation

    net = _net(recurrent=False)
    add_decorrelation(net, layers=[0])
    dec = net.layers[0].decorrelation
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        dec.R.add_(0.1 * torch.randn(dec.R.shape, generator=g))
        if getattr(dec, "mean", None) is not None:
            dec.mean.add_(0.1 * torch.randn(dec.mean.shape, generator=g))
    back = from_nir(to_nir(net))
    assert back.layers[0].decorrelation is None
    x = _x()
    with torch.no_grad():
        pa, pb = net.run(x).layers[0].pre, back.run(x).layers[0].pre
    torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ what NIR cannot express


def test_rate_model_is_refused():
    net = Network([Dense(4, 3, RateParams("tanh")), Dense(3, 2)])
    with pytest.raises(NIRError, match="rate units"):
        to_nir(net)


def test_reset_by_subtraction_refused_unless_asked():
    net = Network([Dense(4, 3, LIFParams(reset="subtract")), Dense(3, 2, LIParams())])
    with pytest.raises(NIRError, match="subtraction"):
        to_nir(net)
    with pytest.warns(UserWarning, match="differ"):
        g = to_nir(net, subtract="as_value")
    assert np.all(g.nodes["lif0"].v_reset == 0.0)


def test_spiking_conv_exports_and_max_pooling_is_refused():
    """Spiking convs export (tests/test_nir_conv.py); max pooling of spikes has no NIR node."""
    from neurolearn.layers import Conv2d

    net = Network([Conv2d((1, 6, 6), 2, 3, LIF), Dense(2 * 4 * 4, 2, LIParams())])
    assert "conv0" in to_nir(net).nodes
    net = Network([Conv2d((1, 6, 6), 2, 3, LIF, pool=2), Dense(2 * 2 * 2, 2, LIParams())])
    with pytest.raises(NIRError, match="no max pooling"):
        to_nir(net)


# ------------------------------------------------------------------ bad input


def test_truncated_and_corrupt_files(tmp_path):
    path = tmp_path / "m.nir"
    write(path, _net())
    data = path.read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.nir").write_bytes(b"this is not hdf5" * 100)
    for name in ("cut.nir", "junk.nir"):
        with pytest.raises(NIRError, match="corrupt, truncated or not NIR"):
            read(tmp_path / name)
    with pytest.raises(NIRError, match="no NIR file"):
        read(tmp_path / "missing.nir")


def _chain(*nodes_edges):
    nodes, edges = nodes_edges
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n):
    return nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 20.0), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n))


def test_unknown_node_type():
    nodes = {"input": nir.Input(np.array([3])), "d": nir.Delay(np.ones(3)), "output": nir.Output(np.array([3]))}
    with pytest.raises(NIRError, match="Delay"):
        from_nir(_chain(nodes, [("input", "d"), ("d", "output")]))


def test_shapes_that_do_not_chain():
    nodes = {"input": nir.Input(np.array([3])), "fc": nir.Linear(np.ones((4, 5), np.float32)),
             "lif": _lif(4), "output": nir.Output(np.array([4]))}
    with pytest.raises(ShapeError, match="do not chain"):
        from_nir(_chain(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")]))
    nodes["fc"] = nir.Linear(np.ones((4, 3), np.float32))
    nodes["lif"] = _lif(5)
    with pytest.raises(ShapeError, match="5 values"):
        from_nir(_chain(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")]))


def test_recurrent_cycle_without_input_nodes():
    nodes = {"fc": nir.Linear(np.ones((4, 4), np.float32)), "lif": _lif(4)}
    with pytest.raises(NIRError, match="Input"):
        from_nir(_chain(nodes, [("lif", "fc"), ("fc", "lif")]))


def test_non_uniform_parameters_and_bad_dt():
    lif = _lif(4)
    lif.v_threshold[1] = 2.0
    nodes = {"input": nir.Input(np.array([3])), "fc": nir.Linear(np.ones((4, 3), np.float32)), "lif": lif,
             "output": nir.Output(np.array([4]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    with pytest.raises(NIRError, match="differs between neurons"):
        from_nir(_chain(nodes, edges))
    nodes["lif"] = _lif(4)
    with pytest.raises(NIRError, match="dt"):  # tau = 2 ms cannot be simulated with a 10 ms step
        from_nir(_chain(nodes, edges), dt=1e-2)


def test_errors_are_user_errors():
    assert issubclass(NIRError, NeurolearnError)


# ------------------------------------------------------------------ command line

SNN_DIGITS = """
data = "digits"
decode = "mean"
dt = 1e-3
input = [64]
[encoder]
kind = "rate"
steps = 8
[[layers]]
type = "dense"
size = 24
neuron = { model = "lif", tau_mem = 20e-3, reset = "value" }
[[layers]]
type = "dense"
size = 10
neuron = { model = "li", tau = 20e-3 }
[train]
epochs = 1
batch_size = 256
optimizer = "adam"
lr = 1e-3
"""


def test_cli_export_and_refusal(tmp_path, capsys):
    import json

    from neurolearn.cli import main

    model = tmp_path / "snn-digits.toml"
    model.write_text(SNN_DIGITS)
    run = tmp_path / "run"
    assert main(["train", "--model", str(model), "--rule", "bp", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--nir", str(run / "model.nir"), "--check-samples", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reimport_spikes_equal"] and (run / "model.nir").is_file()
    assert isinstance(nir.read(run / "model.nir").nodes["lif0"], nir.LIF)
    # a subtracting model is refused with a one-line error (exit status 2), nothing written
    model.write_text(SNN_DIGITS.replace('reset = "value"', 'reset = "subtract"'))
    run2 = tmp_path / "run2"
    assert main(["train", "--model", str(model), "--rule", "bp", "--out", str(run2), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", str(run2), "--nir", str(run2 / "model.nir")]) == 2
    assert "subtraction" in capsys.readouterr().err and not (run2 / "model.nir").exists()
