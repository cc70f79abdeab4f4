"""NIR for a named reader / from a named writer (issue 16): rewrites keep the spikes, refusals say why,
and the real readers run the files spike for spike (skipped when a reader is not installed)."""

from __future__ import annotations

import dataclasses
import types
import warnings

import numpy as np
import pytest
import torch

from neurolearn.errors import ConfigError
from neurolearn.export import nir_drive
from neurolearn.export.nir import NIRError, check_nir_version, from_nir, to_nir, write_graph
from neurolearn.export.readers import NEVER_FIRES, reader_installed, run_reader
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams

DT = 1e-3


def lif(**kw) -> LIFParams:
    return LIFParams(**{"tau_mem": 20e-3, "dt": DT, "reset": "value", **kw})


def net(second, first=None, recurrent=False) -> Network:
    torch.manual_seed(0)
    first = first or lif()
    return Network([Dense(8, 12, first, init_gain=3.0, recurrent=recurrent, recurrent_gain=0.5),
                    Dense(12, 4, second, init_gain=3.0)], decode="mean", dt=DT)


VARIANTS = {
    "ff": lambda: net(lif()),
    "v_reset": lambda: net(lif(v_reset=-0.2), lif(v_reset=-0.2)),
    "leak_eq_reset": lambda: net(lif(v_reset=-0.2, v_leak=-0.2), lif(v_reset=-0.2, v_leak=-0.2)),
    "cuba": lambda: net(lif(tau_syn=5e-3, threshold=0.8)),
    "recurrent": lambda: net(lif(), recurrent=True),
    "li": lambda: net(LIParams(tau=10e-3, dt=DT)),
}
# what each reader refuses (the rest must be exact)
REFUSED = {"snntorch": {"v_reset", "recurrent"}, "spikingjelly": {"v_reset"}, "norse": set()}


def x_in(steps=20, batch=4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, 8, generator=g) < 0.3).float()


def outputs(n: Network, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return n.run(x).output


@pytest.mark.parametrize("reader", ["snntorch", "norse", "spikingjelly"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reader_form_keeps_the_dynamics(reader, variant):
    """The rewritten graph (folded gains, shifted voltages, LI as never-firing LIF) read back gives the same run."""
    n = VARIANTS[variant]()
    if variant in REFUSED[reader]:
        with pytest.raises(NIRError, match=f"for {reader}"):
            to_nir(n, reader=reader)
        return
    g = to_nir(n, reader=reader)
    assert g.metadata["neurolearn.reader"] == reader
    x = x_in()
    ours, back = outputs(n, x), outputs(from_nir(g), x)
    if variant == "li":
        torch.testing.assert_close(back, ours, rtol=1e-5, atol=1e-5)
    else:
        assert ours.mean() > 0.01 and torch.equal(back, ours)


def test_norse_form_folds_r_and_shifts_v_reset():
    n = VARIANTS["v_reset"]()
    g = to_nir(n, reader="norse")
    lif0 = g.nodes["lif0"]
    assert np.allclose(lif0.r, 1.0) and np.allclose(lif0.v_reset, 0.0)  # Norse ignores r and v_reset
    assert np.allclose(lif0.v_threshold, 1.2) and np.allclose(lif0.v_leak, 0.2)  # shifted by -v_reset
    assert np.allclose(lif0.tau, 20e-3) and g.metadata["dt"] == 1e-3  # Norse's default step
    w = n.layers[0].weight.detach().numpy()
    assert np.allclose(g.nodes["fc0"].weight, w * 20.0, rtol=1e-6)  # r = tau/dt = 20 folded in


def test_li_readout_becomes_a_never_firing_lif_for_readers_without_li():
    g = to_nir(VARIANTS["li"](), reader="spikingjelly")
    assert type(g.nodes["li1"]).__name__ == "LIF" and np.all(g.nodes["li1"].v_threshold == NEVER_FIRES)
    assert "li1" in g.metadata["neurolearn.readout"]
    assert type(to_nir(VARIANTS["li"]()).nodes["li1"]).__name__ == "LI"  # neurolearn's own form keeps LI


def test_refusals_say_what_to_change():
    with pytest.raises(NIRError, match="nir 1.0.4"):
        to_nir(VARIANTS["ff"](), reader="sinabs")
    with pytest.raises(NIRError, match="tau_mem"):
        to_nir(VARIANTS["ff"](), reader="rockpool")
    with pytest.raises(NIRError, match="v_leak .* must equal v_reset"):
        to_nir(VARIANTS["v_reset"](), reader="spikingjelly")
    with pytest.raises(ConfigError, match="did you mean 'norse'"):
        to_nir(VARIANTS["ff"](), reader="norse2")
    # CubaLIF in Norse: the synaptic current leaks to v_leak
    with pytest.raises(NIRError, match="CubaLIF layer 1 for norse"):
        to_nir(net(lif(tau_syn=5e-3, v_reset=-0.2)), reader="norse")


def test_writer_conventions_and_refusals():
    g = to_nir(VARIANTS["ff"]())
    with pytest.raises(NIRError, match="cannot import a file written by norse"):
        from_nir(g, writer="norse")
    with pytest.raises(ConfigError, match="did you mean 'snntorch'"):
        from_nir(g, writer="snntorch2")
    with pytest.warns(UserWarning, match="v_reset = 0, whatever its reset_mechanism"):
        from_nir(g, writer="snntorch")
    g.metadata.clear()
    with pytest.warns(UserWarning, match="does not say which library wrote it"):
        from_nir(g)
    with pytest.raises(NIRError, match="no neurolearn metadata"):
        from_nir(g, writer="neurolearn")


def test_old_nir_is_refused_in_one_line():
    @dataclasses.dataclass
    class LIF:  # nir 1.0.4's LIF: no v_reset
        tau: np.ndarray
        r: np.ndarray
        v_leak: np.ndarray
        v_threshold: np.ndarray

    with pytest.raises(NIRError, match="no v_reset in its LIF node .* nir >= 1.0.5"):
        check_nir_version(types.SimpleNamespace(LIF=LIF))


# ------------------------------------------------------------------ the real readers


def _run_and_compare(reader, variant, tmp_path):
    if not reader_installed(reader):
        pytest.skip(f"{reader} is not installed (docs/results/nir.md: the readers' environment)")
    n = VARIANTS[variant]()
    g = to_nir(n, reader=reader)
    write_graph(tmp_path / "g.nir", g)
    readout = "li1" if variant == "li" else None
    x = x_in()
    res = run_reader(reader, tmp_path / "g.nir", x.numpy(), readout, tmp_path)
    assert "error" not in res, res.get("error")
    ours = outputs(n, x).numpy()
    if readout:
        np.testing.assert_allclose(res["readout"].reshape(ours.shape), ours, rtol=1e-5, atol=1e-5)
    else:
        assert ours.mean() > 0.01 and np.array_equal(res["output"].reshape(ours.shape), ours)


@pytest.mark.parametrize("variant", ["ff", "leak_eq_reset", "cuba", "li"])
def test_snntorch_runs_its_export_spike_for_spike(variant, tmp_path):
    pytest.importorskip("snntorch")
    _run_and_compare("snntorch", variant, tmp_path)


@pytest.mark.parametrize("variant", ["v_reset", "cuba", "recurrent", "li"])
def test_norse_runs_its_export_spike_for_spike(variant, tmp_path):
    _run_and_compare("norse", variant, tmp_path)


@pytest.mark.parametrize("variant", ["leak_eq_reset", "recurrent", "li"])
def test_spikingjelly_runs_its_export_spike_for_spike(variant, tmp_path):
    _run_and_compare("spikingjelly", variant, tmp_path)


@pytest.mark.parametrize("variant", ["ff", "cuba"])
def test_import_of_snntorch_files_reproduces_its_spikes(variant, tmp_path):
    pytest.importorskip("snntorch")
    x = x_in().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = nir_drive.write("snntorch", str(tmp_path / "sn.nir"), x, variant)
        n = from_nir(tmp_path / "sn.nir", writer="snntorch")
    ours = outputs(n, torch.from_numpy(x)).numpy()
    assert ref.mean() > 0.01 and np.array_equal(ref.reshape(ours.shape), ours)


@pytest.mark.parametrize("variant", ["ff", "cuba"])
def test_import_of_spikingjelly_files_reproduces_its_spikes(variant, tmp_path):
    import subprocess

    from neurolearn.export.readers import READER_ENVS

    if not reader_installed("spikingjelly"):
        pytest.skip("spikingjelly is not installed (docs/results/nir.md: the readers' environment)")
    x = x_in().numpy()
    np.save(tmp_path / "x.npy", x)
    subprocess.run([READER_ENVS["spikingjelly"], nir_drive.__file__, "write", "spikingjelly", str(tmp_path / "sj.nir"),
                    str(tmp_path / "x.npy"), str(tmp_path / "r.npz"), variant], check=True, capture_output=True)
    ref = np.load(tmp_path / "r.npz")["output"]
    ours = outputs(from_nir(tmp_path / "sj.nir", writer="spikingjelly"), torch.from_numpy(x)).numpy()
    assert ref.mean() > 0.01 and np.array_equal(ref.reshape(ours.shape), ours)


def test_reader_drive_runs_the_network_in_the_input_dtype():
    """``--float64`` (nir_ecosystem.py --run-float64): the reader's network is cast to the input's dtype, so a
    float32 threshold tie can be told from a difference in the dynamics; unsupported readers say so."""

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x, state=None):
            return self.lin(x), state

    torch.manual_seed(0)
    model = Step()
    x = torch.rand(4, 2, 3, dtype=torch.float64)
    out, _ = nir_drive.run_stepwise(model, x, None)
    assert next(model.parameters()).dtype == torch.float64
    np.testing.assert_allclose(out, (x @ model.lin.weight.T + model.lin.bias).detach().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="float64 is supported for norse, spikingjelly, not sinabs"):
        nir_drive.drive("sinabs", "never-read.nir", np.zeros((1, 1, 3)), None, None)
