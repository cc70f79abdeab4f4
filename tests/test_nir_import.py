"""``neurolearn import FILE --from WRITER --out RUN`` (issue 16): the run directory reproduces the writer's
spikes and is accepted by ``eval`` / ``export``; bad files are one line. Writer tests skip when the
writer is not installed."""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pytest
import torch

from neurolearn.cli import main
from neurolearn.export import nir_drive
from neurolearn.export.nir import write
from neurolearn.export.readers import READER_ENVS, reader_installed
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams
from neurolearn.build import build_network
from neurolearn.io import load_checkpoint
from neurolearn.runs import CHECKPOINT_NAME, load_model_state, load_trained, read_config

N_IN = 64  # digits-sized, so the imported run evaluates on `digits` without --data


def spikes(steps: int = 20, batch: int = 4) -> np.ndarray:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, N_IN, generator=g) < 0.3).float().numpy()


def imported_output(run_dir, x: np.ndarray) -> np.ndarray:
    """The run directory's network (config + checkpoint, no dataset: the writers' nets have 5 outputs) on ``x``."""
    cfg = read_config(run_dir)
    model = build_network(cfg["model"], tuple(cfg["model"]["input"]))
    load_model_state(model, load_checkpoint(run_dir / CHECKPOINT_NAME)["model"], run_dir)
    with torch.no_grad():
        return model.run(torch.from_numpy(x)).output.numpy()


def test_import_of_a_neurolearn_file_gives_a_run_that_eval_and_export_accept(tmp_path, capsys):
    torch.manual_seed(0)
    net = Network([Dense(N_IN, 20, LIFParams(tau_mem=20e-3, reset="value", v_reset=-0.1), init_gain=3.0,
                         recurrent=True, recurrent_gain=0.5),
                   Dense(20, 10, LIParams(tau=10e-3))], decode="mean", dt=1e-3)
    write(tmp_path / "a.nir", net)
    assert main(["import", str(tmp_path / "a.nir"), "--out", str(tmp_path / "run")]) == 0
    x = spikes()
    with torch.no_grad():
        ours = net.run(torch.from_numpy(x)).output.numpy()
    np.testing.assert_array_equal(imported_output(tmp_path / "run", x), ours)
    assert load_trained(tmp_path / "run").config["data"]["name"] == "digits"
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--nir", str(tmp_path / "b.nir"), "--check-samples", "4"]) == 0
    assert '"reimport_spikes_equal": true' in capsys.readouterr().out


@pytest.mark.parametrize("variant", ["ff", "cuba"])
def test_import_command_reproduces_snntorch_spikes(variant, tmp_path, capsys):
    pytest.importorskip("snntorch")
    x = spikes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = nir_drive.write("snntorch", str(tmp_path / "sn.nir"), x, variant)
    assert main(["import", str(tmp_path / "sn.nir"), "--from", "snntorch", "--out", str(tmp_path / "run")]) == 0
    assert "warning: snnTorch writes every neuron as reset to v_reset = 0" in capsys.readouterr().err
    ours = imported_output(tmp_path / "run", x)
    assert ref.mean() > 0.01 and np.array_equal(ref.reshape(ours.shape), ours)


@pytest.mark.parametrize("variant", ["ff", "cuba"])
def test_import_command_reproduces_spikingjelly_spikes(variant, tmp_path):
    if not reader_installed("spikingjelly"):
        pytest.skip("spikingjelly is not installed (docs/results/nir.md: the readers' environment)")
    x = spikes()
    np.save(tmp_path / "x.npy", x)
    subprocess.run([READER_ENVS["spikingjelly"], nir_drive.__file__, "write", "spikingjelly", str(tmp_path / "sj.nir"),
                    str(tmp_path / "x.npy"), str(tmp_path / "r.npz"), variant], check=True, capture_output=True)
    ref = np.load(tmp_path / "r.npz")["output"]
    assert main(["import", str(tmp_path / "sj.nir"), "--from", "spikingjelly", "--out", str(tmp_path / "run")]) == 0
    ours = imported_output(tmp_path / "run", x)
    assert ref.mean() > 0.01 and np.array_equal(ref.reshape(ours.shape), ours)


def test_bad_files_and_options_are_one_line(tmp_path, capsys):
    (tmp_path / "junk.nir").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    (tmp_path / "text.nir").write_text("not a graph")
    torch.manual_seed(0)
    write(tmp_path / "odd.nir", Network([Dense(7, 3, LIFParams(tau_mem=20e-3, reset="value"))], dt=1e-3))
    cases = [
        (["import", str(tmp_path / "missing.nir"), "--out", str(tmp_path / "r1")], "no NIR file at"),
        (["import", str(tmp_path / "junk.nir"), "--out", str(tmp_path / "r2")], "corrupt"),
        (["import", str(tmp_path / "text.nir"), "--out", str(tmp_path / "r3")], "corrupt"),
        (["import", str(tmp_path / "odd.nir"), "--out", str(tmp_path / "r4")], "pass --data NAME"),
        (["import", str(tmp_path / "odd.nir"), "--from", "norse", "--out", str(tmp_path / "r5")], "norse"),
        (["import", str(tmp_path / "odd.nir"), "--from", "neurolearn", "--data", "digits", "--steps", "0",
          "--out", str(tmp_path / "r6")], "--steps must be at least 1"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, (argv, err)
        assert not (tmp_path / argv[-1]).exists(), "nothing is written for a refused file"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(tmp_path / "odd.nir"), "--from", "lava", "--out", str(tmp_path / "r7")])
    assert exc.value.code == 2
