"""NIR across the ecosystem: every installed reader on every network variant, both directions.

Export: neurolearn writes each variant with ``to_nir(net, reader=R)``; the reader loads the file
with its own ``from_nir`` / ``import_from_nir`` (in its own environment, through a subprocess
running ``neurolearn/export/nir_drive.py``) and runs it on the same Bernoulli input spikes.
Import: the reader's library builds and exports a network (``export_to_nir`` / ``to_nir``), runs
it, and neurolearn imports the file with ``from_nir(graph, writer=R)``.

A cell is ``exact`` (100 % identical output spikes; an LI readout's membrane equal to 1e-5),
``refused`` (a message saying why) or ``wrong`` (anything else: the fraction of identical
spikes is printed). Readers' environments (docs/results/nir.md: how to install them):
``NEUROLEARN_READERS_PY`` (Norse, SpikingJelly; default /work/venv-readers/bin/python) and
``NEUROLEARN_READERS_OLD_PY`` (Sinabs, Rockpool, nir 1.0.4; default
/work/venv-readers-old/bin/python). snnTorch runs in this environment.

    python experiments/nir_ecosystem.py [--quick]

Prints the matrix, then the JSON ``{"cells", "exact", "refused", "wrong", ...}`` as the last line,
and writes ``experiments/results/nir_ecosystem.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import neurolearn.export.nir_drive as drive_module
from neurolearn import harness
from neurolearn.errors import NeurolearnError
from neurolearn.export.nir import from_nir, to_nir, write_graph
from neurolearn.export.nir_drive import FLOAT64_READERS
from neurolearn.export.readers import READER_ENVS, reader_installed, run_reader
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import Network
from neurolearn.neurons import ALIFParams, IzhikevichParams, LIFParams, LIParams

DT = 1e-3
N_IN, N_HID, N_OUT = 12, 16, 5
CONV_IN = (1, 8, 8)  # conv variants: 8x8 images, conv 4@3x3 -> [4, 6, 6], pool 2 -> [4, 3, 3] = 36


def lif(**kw) -> LIFParams:
    return LIFParams(**{"tau_mem": 20e-3, "dt": DT, "reset": "value", **kw})


def variants() -> dict[str, Network | str]:
    """Tiny networks (12 - 16 - 5), one per NIR feature; weights scaled so that every layer spikes."""
    def net(*layers, decode="mean"):
        return Network(list(layers), decode=decode, dt=DT)

    torch.manual_seed(0)
    out = {
        "ff LIF": lambda: net(Dense(N_IN, N_HID, lif(), init_gain=3.0), Dense(N_HID, N_OUT, lif(), init_gain=3.0)),
        "v_reset != 0": lambda: net(Dense(N_IN, N_HID, lif(v_reset=-0.2), init_gain=3.0),
                                    Dense(N_HID, N_OUT, lif(v_reset=-0.2), init_gain=3.0)),
        "v_leak = v_reset != 0": lambda: net(Dense(N_IN, N_HID, lif(v_reset=-0.2, v_leak=-0.2), init_gain=3.0),
                                             Dense(N_HID, N_OUT, lif(v_reset=-0.2, v_leak=-0.2), init_gain=3.0)),
        "CubaLIF": lambda: net(Dense(N_IN, N_HID, lif(), init_gain=3.0),
                               Dense(N_HID, N_OUT, lif(tau_syn=5e-3, threshold=0.8), init_gain=3.0)),
        "recurrent": lambda: net(Dense(N_IN, N_HID, lif(), init_gain=3.0, recurrent=True, recurrent_gain=0.5),
                                 Dense(N_HID, N_OUT, lif(), init_gain=3.0)),
        "LI readout": lambda: net(Dense(N_IN, N_HID, lif(), init_gain=3.0),
                                  Dense(N_HID, N_OUT, LIParams(tau=10e-3, dt=DT), init_gain=3.0)),
        "conv": lambda: net(Conv2d(CONV_IN, 4, 3, lif(), pool=2, pool_mode="avg", init_gain=5.0),
                            Dense(36, N_OUT, lif(threshold=0.2), init_gain=10.0)),
        "conv sum-pool + LI": lambda: net(Conv2d(CONV_IN, 4, 3, lif(), pool=2, pool_mode="sum", init_gain=3.0),
                                          Dense(36, N_OUT, LIParams(tau=10e-3, dt=DT), init_gain=1.0)),
        "ALIF": lambda: net(Dense(N_IN, N_HID, ALIFParams(dt=DT), init_gain=3.0), Dense(N_HID, N_OUT, lif())),
        "Izhikevich": lambda: net(Dense(N_IN, N_HID, IzhikevichParams(dt=DT), init_gain=3.0),
                                  Dense(N_HID, N_OUT, lif())),
    }
    built = {}
    for k, f in out.items():
        torch.manual_seed(0)
        built[k] = f()
    return built


def inputs(steps: int, batch: int, shape: tuple[int, ...] = (N_IN,)) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, *shape, generator=g) < 0.3).float()


def compare(net: Network, x: torch.Tensor, result: dict) -> dict:
    with torch.no_grad():
        ours = net.run(x).output.numpy()
    if "error" in result:
        return {"status": "wrong", "detail": f"reader failed: {result['error']}"}
    if not net.layers[-1].spiking:
        theirs = result.get("readout")
        if theirs is None:
            return {"status": "wrong", "detail": "no readout membrane"}
        theirs = theirs.reshape(ours.shape)
        ok = np.allclose(theirs, ours, rtol=1e-5, atol=1e-5)
        return {"status": "exact" if ok else "wrong", "match": 1.0 if ok else float(np.isclose(theirs, ours, 1e-5, 1e-5).mean()),
                "max_abs_diff": float(np.abs(theirs - ours).max())}
    theirs = result["output"].reshape(ours.shape)
    match = float((theirs == ours).mean())
    if not ours.any():
        return {"status": "wrong", "match": match, "detail": "no output spikes: the cell tests nothing"}
    return {"status": "exact" if match == 1.0 else "wrong", "match": match, "spikes": int(ours.sum())}


def export_cell(name: str, net: Network, reader: str, x: torch.Tensor, workdir: Path) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = to_nir(net, reader=reader)
    except NeurolearnError as exc:
        return {"status": "refused", "detail": str(exc)}
    path = workdir / f"{reader}-{name.replace(' ', '_').replace('!', 'n').replace('=', 'eq')}.nir"
    write_graph(path, graph)
    readout = json.loads(graph.metadata["neurolearn.readout"])["node"] if "neurolearn.readout" in graph.metadata else None
    if reader == "neurolearn":
        with torch.no_grad():
            back = from_nir(path)
            ours, theirs = net.run(x).output, back.run(x).output
        ok = torch.equal(ours, theirs) if net.layers[-1].spiking else torch.allclose(ours, theirs, 1e-5, 1e-5)
        return {"status": "exact" if ok else "wrong", "match": 1.0 if ok else 0.0}
    return compare(net, x, run_reader(reader, path, x, readout, workdir))


WRITERS = {"snntorch": ("ff", "cuba", "conv"), "spikingjelly": ("ff", "cuba", "conv")}
WRITER_NAMES = {"ff": "ff LIF", "cuba": "CubaLIF", "conv": "conv"}
WRITER_REFUSED = ("norse", "sinabs", "rockpool")


def import_cell(writer: str, variant: str, x: torch.Tensor, workdir: Path) -> dict:
    """The writer's library builds, exports and runs a network; neurolearn imports the file and runs it."""
    path, xin, res = workdir / f"w-{writer}-{variant}.nir", workdir / "xw.npy", workdir / f"w-{writer}-{variant}.npz"
    np.save(xin, x.numpy().astype(np.float32))
    p = subprocess.run([READER_ENVS[writer], drive_module.__file__, "write", writer, str(path), str(xin), str(res),
                        variant], capture_output=True, text=True, timeout=600, env={**os.environ, "PIP_NO_INDEX": "1"})
    if not res.exists():
        return {"status": "wrong", "detail": f"the writer crashed: {(p.stderr.strip().splitlines() or ['?'])[-1][:200]}"}
    data = np.load(res)
    if "error" in data.files:
        return {"status": "wrong", "detail": f"the writer failed: {data['error']}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = from_nir(path, writer=writer)
    with torch.no_grad():
        ours = net.run(x).output.numpy()
    theirs = data["output"].reshape(ours.shape)
    match = float((theirs == ours).mean())
    return {"status": "exact" if match == 1.0 else "wrong", "match": match, "spikes": int(theirs.sum())}


def run_cell(run_dir: str, reader: str, samples: int, workdir: Path, float64: bool = False) -> dict:
    """The Done-when check on a trained run: ``neurolearn export RUN --nir F --for READER``, the reader's own
    ``from_nir`` run on the same input spikes (``samples`` encoded test images), readouts compared.
    ``float64``: both networks run in float64 (the weights as exported), which separates a difference in
    the dynamics from float32 rounding that flips a spike whose membrane lands on the threshold."""
    from neurolearn.cli import main as cli
    from neurolearn.runs import load_trained

    if not reader_installed(reader):
        return {"status": "refused", "detail": f"{reader} is not installed"}
    if float64 and reader not in FLOAT64_READERS:
        return {"status": "refused", "detail": f"{reader}'s imported network does not run in float64 (its neurons keep float32 state)"}
    path = workdir / f"run-{reader}.nir"
    rc = cli(["export", run_dir, "--nir", str(path), "--for", reader, "--check-samples", "8"])
    if rc != 0:
        return {"status": "refused", "detail": f"neurolearn export --for {reader} exited {rc}"}
    import nir

    meta = nir.read(path).metadata
    readout = json.loads(meta["neurolearn.readout"])["node"] if "neurolearn.readout" in meta else None
    run = load_trained(run_dir)
    net = run.model.double() if float64 else run.model
    with torch.no_grad():
        x = net.encode(run.dataset.x_test[:samples], torch.Generator().manual_seed(0))
        x = x.double() if float64 else x
        ours = net.run(x).output
    xr = x if len(net.input_shape) > 1 else x.reshape(x.shape[0], x.shape[1], -1)  # dense nets: flat input
    res = run_reader(reader, path, xr.numpy(), readout, workdir, float64=float64)
    cell = compare(net, x, res)
    if "error" not in res:
        theirs = torch.from_numpy(res["readout"] if readout else res["output"]).to(ours.dtype).reshape(ours.shape)
        pred_ours, pred_theirs = net.decode_output(ours).argmax(-1), net.decode_output(theirs).argmax(-1)
        y = run.dataset.y_test[:samples]
        cell.update(samples=samples, steps=int(x.shape[0]), same_predictions=float((pred_ours == pred_theirs).float().mean()),
                    accuracy_neurolearn=float((pred_ours == y).float().mean()),
                    accuracy_reader=float((pred_theirs == y).float().mean()), reader_version=str(res.get("version")))
    return cell


def main() -> int:
    ap = harness.parser(__doc__, quick="fewer steps and samples")
    ap.add_argument("--readers", default="neurolearn,snntorch,norse,spikingjelly,sinabs,rockpool")
    ap.add_argument("--run", action="append", default=[], help="a trained spiking run (repeatable; e.g. snn-mnist): export it "
                                                                   "--for norse and compare Norse's readout on the same input spikes (the Done-when check)")
    ap.add_argument("--run-readers", default="norse", help="readers for --run (comma-separated)")
    ap.add_argument("--samples", type=int, default=100, help="test images for --run")
    ap.add_argument("--run-float64", action="store_true", help="run --run cells in float64 on both sides (a spike that "
                                                                 "float32 rounding flips at the threshold then agrees)")
    args = harness.start(ap)
    steps, batch = (20, 4) if args.quick else (50, 16)
    x = inputs(steps, batch)
    readers = [r for r in args.readers.split(",") if r]
    versions, cells = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for reader in readers:
            if reader != "neurolearn" and not reader_installed(reader):
                versions[reader] = "not installed"
                continue
            for name, net in variants().items():
                xv = inputs(steps, batch, tuple(net.input_shape)) if len(net.input_shape) > 1 else x
                cells[f"export {reader} | {name}"] = export_cell(name, net, reader, xv, work)
            for variant in WRITERS.get(reader, ()):
                xw = inputs(steps, batch, CONV_IN) if variant == "conv" else x
                cells[f"import {reader} | {WRITER_NAMES[variant]}"] = import_cell(reader, variant, xw, work)
            if reader in WRITER_REFUSED:
                try:
                    from_nir(to_nir(variants()["ff LIF"]), writer=reader)
                    cells[f"import {reader} | any"] = {"status": "wrong", "detail": "accepted without a check"}
                except NeurolearnError as exc:
                    cells[f"import {reader} | any"] = {"status": "refused", "detail": str(exc)}
        for run_dir in args.run:
            for reader in [r for r in args.run_readers.split(",") if r]:
                cells[f"run {Path(run_dir).name} | {reader}" + (" (float64)" if args.run_float64 else "")] = run_cell(run_dir, reader, args.samples, work, args.run_float64)
    counts = {s: sum(1 for c in cells.values() if c["status"] == s) for s in ("exact", "refused", "wrong")}
    print(f"{'cell':55s} {'result':8s} detail")
    for k, c in cells.items():
        detail = c.get("detail", f"{c.get('match', 1.0) * 100:.4g} % identical"
                       + (f", max abs diff {c['max_abs_diff']:.2g}" if "max_abs_diff" in c else ""))
        print(f"{k:55s} {c['status']:8s} {detail[:150]}")
    summary = {"cells": len(cells), **counts, "versions": versions, "matrix": cells}
    harness.write_results(args, "nir_ecosystem", summary)
    print(json.dumps({"cells": len(cells), **counts, "versions": versions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
