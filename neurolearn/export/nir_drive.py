"""Run a NIR file in another library (snnTorch, Norse, SpikingJelly, Sinabs, Rockpool): a standalone script.

This file imports nothing from neurolearn, so it runs in a second environment where a reader's
pins (e.g. ``nir <= 1.0.4`` for Sinabs and Rockpool) conflict with neurolearn's::

    python nir_drive.py READER graph.nir input.npy result.npz [--readout NODE] [--dt DT]

``input.npy``: ``(steps, batch, n_in)`` float32 spikes. Writes ``result.npz`` with ``output``
(``(steps, batch, n_out)``: what the reader's model returns each step) and, with ``--readout
NODE``, ``readout``: the membrane of that neuron node (an LI readout written as a never-firing
LIF), and ``version`` (the reader's version). Failures are written as ``error`` (one line) and
exit status 3, so the caller can report "refused by the reader: ...".
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

# run as a script, this file's folder comes first on sys.path, and neurolearn/export/nir.py would
# shadow the `nir` package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _find_mem(model, state, node: str):
    """The membrane of node ``node``: in a nirtorch 2.x executor's state dict, else on the module (snnTorch)."""
    cache = getattr(state, "state", state)
    s = cache.get(node) if isinstance(cache, dict) else getattr(cache, node, None)
    if s is None:
        s = dict(model.named_modules())[node]
    for field in ("mem", "v"):  # snnTorch: (spk?, mem) tuples; Norse: LIFBoxFeedForwardState(v)
        if hasattr(s, field):
            return getattr(s, field)
    if isinstance(s, (tuple, list)):
        for item in reversed(s):  # snnTorch Leaky: (mem,) ; Norse CubaLIF: (syn, lif)
            if hasattr(item, "v"):
                return item.v
            if hasattr(item, "shape"):
                return item
    return s


FLOAT64_READERS = ("norse", "spikingjelly")
"""Readers whose imported network runs in float64 when cast (snnTorch's neurons keep float32 state)."""


def run_stepwise(model, x, readout: str | None):
    """Run ``model`` one step at a time on ``x`` in ``x``'s dtype (the model is cast to it)."""
    import torch

    model = model.to(x.dtype)
    outs, mems, state = [], [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = model(x[t]) if state is None else model(x[t], state)
            outs.append(out.detach().float().numpy().copy())
            if readout:
                mems.append(np.asarray(_find_mem(model, state, readout).detach().float()).copy())
    return np.stack(outs), (np.stack(mems) if readout else None)


def drive(reader: str, path: str, x: np.ndarray, readout: str | None, dt: float | None):
    import nir
    import torch

    if x.dtype == np.float64 and reader not in FLOAT64_READERS:
        raise ValueError(f"--float64 is supported for {', '.join(FLOAT64_READERS)}, not {reader}")
    graph = nir.read(path)
    xt = torch.from_numpy(x)
    if reader == "snntorch":
        from snntorch.import_nir import import_from_nir

        return run_stepwise(import_from_nir(graph), xt, readout), _version("snntorch")
    if reader == "norse":
        import norse.torch

        kw = {"dt": dt} if dt else {}
        return run_stepwise(norse.torch.from_nir(graph, **kw), xt, readout), _version("norse")
    if reader == "spikingjelly":
        from spikingjelly.activation_based.nir_exchange import import_from_nir

        gm = import_from_nir(graph, dt=dt or 1e-4, step_mode="s")
        return run_stepwise(gm, xt, readout), _version("spikingjelly")
    if reader == "sinabs":
        import sinabs

        model = sinabs.from_nir(graph, batch_size=x.shape[1])
        with torch.no_grad():
            out = model(xt.permute(1, 0, 2).contiguous())  # (batch, time, n)
        return (out.permute(1, 0, 2).float().numpy(), None), _version("sinabs")
    if reader == "rockpool":
        from rockpool.nn.modules import from_nir

        model = from_nir(graph)
        with torch.no_grad():
            out, _, _ = model(xt.permute(1, 0, 2).contiguous())
        return (out.permute(1, 0, 2).float().detach().numpy(), None), _version("rockpool")
    raise SystemExit(f"unknown reader {reader!r}")


def write(writer: str, path: str, x: np.ndarray, variant: str):
    """Build a small network in ``writer``'s library (seeded), export it with the library's own NIR
    export to ``path`` and run it on ``x``: returns (output spikes, version)."""
    import torch

    torch.manual_seed(0)
    n_in = x.shape[-1]
    xt = torch.from_numpy(x)
    if variant == "conv":  # x: (steps, batch, 1, 8, 8); conv 4@3x3 -> LIF -> avg pool 2 -> flatten -> 36 x 5 -> LIF
        return write_conv(writer, path, xt)
    fc1, fc2 = torch.nn.Linear(n_in, 16), torch.nn.Linear(16, 5)
    with torch.no_grad():
        fc1.weight.mul_(3.0), fc2.weight.mul_(3.0)
    if writer == "snntorch":
        import snntorch as snn
        from snntorch.export_nir import export_to_nir

        import nir

        mech = "subtract" if variant == "subtract" else "zero"
        lif1 = snn.Leaky(beta=torch.full((16,), 0.9), threshold=torch.ones(16), reset_mechanism=mech,
                         reset_delay=False, init_hidden=True)
        if variant == "cuba":
            lif2 = snn.Synaptic(alpha=torch.full((5,), 0.6), beta=torch.full((5,), 0.8), threshold=torch.ones(5),
                                reset_mechanism=mech, reset_delay=False, init_hidden=True, output=True)
        else:
            lif2 = snn.Leaky(beta=torch.full((5,), 0.8), threshold=torch.ones(5), reset_mechanism=mech,
                             reset_delay=False, init_hidden=True, output=True)
        model = torch.nn.Sequential(fc1, lif1, fc2, lif2)
        nir.write(path, export_to_nir(model, torch.zeros(1, n_in), ignore_dims=[0]))
        with torch.no_grad():
            lif1.reset_mem(), lif2.reset_mem()
            if variant == "cuba":
                lif2.syn = torch.zeros(0)
            out = torch.stack([model(xt[t])[0] for t in range(x.shape[0])])
        return out.float().numpy(), _version("snntorch")
    if writer == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron
        from spikingjelly.activation_based.nir_exchange import export_to_nir

        if variant == "cuba":
            n2 = neuron.CUBALIFNode(c_decay=0.6, v_decay=0.8, v_threshold=1.0, v_reset=0.0)
        else:
            n2 = neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=0.5, v_reset=0.0)
        model = torch.nn.Sequential(fc1, neuron.LIFNode(tau=20.0, decay_input=False, v_reset=0.0), fc2, n2)
        export_to_nir(model, torch.zeros(1, n_in), save_path=path)
        functional.reset_net(model)
        with torch.no_grad():
            out = torch.stack([model(xt[t]) for t in range(x.shape[0])])
        return out.float().numpy(), _version("spikingjelly")
    raise SystemExit(f"no writer for {writer!r} here")


def write_conv(writer: str, path: str, xt):
    """A small spiking conv net in ``writer``'s library, exported with its own NIR export and run on ``xt``."""
    import torch

    conv, fc = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(36, 5)
    with torch.no_grad():
        conv.weight.mul_(5.0), fc.weight.mul_(10.0)
    if writer == "snntorch":
        import snntorch as snn
        from snntorch.export_nir import export_to_nir

        import nir

        l1 = snn.Leaky(beta=torch.full((4, 6, 6), 0.95), threshold=torch.ones(4, 6, 6), reset_mechanism="zero",
                       reset_delay=False, init_hidden=True)
        l2 = snn.Leaky(beta=torch.full((5,), 0.95), threshold=torch.full((5,), 0.2), reset_mechanism="zero",
                       reset_delay=False, init_hidden=True, output=True)
        model = torch.nn.Sequential(conv, l1, torch.nn.AvgPool2d(2), torch.nn.Flatten(), fc, l2)
        nir.write(path, export_to_nir(model, torch.zeros(1, *xt.shape[2:]), ignore_dims=[0]))
        with torch.no_grad():
            l1.reset_mem(), l2.reset_mem()
            out = torch.stack([model(xt[t])[0] for t in range(xt.shape[0])])
        return out.float().numpy(), _version("snntorch")
    if writer == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron
        from spikingjelly.activation_based.nir_exchange import export_to_nir

        model = torch.nn.Sequential(conv, neuron.LIFNode(tau=20.0, decay_input=False, v_reset=0.0),
                                    layer.AvgPool2d(2), layer.Flatten(), fc,
                                    neuron.LIFNode(tau=20.0, decay_input=False, v_threshold=0.2, v_reset=0.0))
        export_to_nir(model, torch.zeros(1, *xt.shape[2:]), save_path=path)
        functional.reset_net(model)
        with torch.no_grad():
            out = torch.stack([model(xt[t]) for t in range(xt.shape[0])])
        return out.float().numpy(), _version("spikingjelly")
    raise SystemExit(f"no conv writer for {writer!r} here")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "write":  # write WRITER out.nir input.npy result.npz VARIANT
        _, _, writer, path, xin, result, variant = sys.argv
        try:
            out, version = write(writer, path, np.load(xin).astype(np.float32), variant)
        except Exception as exc:
            np.savez(result, error=np.array(f"{type(exc).__name__}: {str(exc).strip()[:300]}"))
            return 3
        np.savez(result, output=out, version=np.array(version))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("reader")
    ap.add_argument("graph")
    ap.add_argument("input")
    ap.add_argument("result")
    ap.add_argument("--readout", default=None)
    ap.add_argument("--dt", type=float, default=None)
    ap.add_argument("--float64", action="store_true", help="run the reader's network in float64")
    args = ap.parse_args()
    x = np.load(args.input).astype(np.float64 if args.float64 else np.float32)
    try:
        (out, mem), version = drive(args.reader, args.graph, x, args.readout, args.dt)
    except Exception as exc:  # a reader that cannot load or run the file: report it, one line
        last = traceback.extract_tb(exc.__traceback__)[-1]
        msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} " \
              f"(at {last.filename.split('site-packages/')[-1]}:{last.lineno})"
        np.savez(args.result, error=np.array(msg))
        return 3
    res = {"output": out, "version": np.array(version)}
    if mem is not None:
        res["readout"] = mem
    np.savez(args.result, **res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
