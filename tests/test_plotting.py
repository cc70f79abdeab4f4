"""Figures you can trust: markers on short curves, no time panels for static nets, one encoding
for `plot` and `simulate`, titles with backend/sample/label, units, thresholds, colour bars."""

import torch

from neurolearn import Dense, Encoder, LIFParams, LIParams, Network
from neurolearn.neurons import neuron_from_config
from neurolearn.plotting import activity_figure, curves_figure, encode_samples, layer_info, pyplot


def snn() -> Network:
    torch.manual_seed(0)
    return Network([Dense(6, 8, LIFParams(tau_mem=10e-3, dt=1e-3, threshold=0.8)),
                    Dense(8, 3, LIParams(tau=10e-3, dt=1e-3))], encoder=Encoder("rate", steps=12), decode="mean")


def test_one_epoch_curve_shows_a_marker():
    metrics = {"epochs": [{"epoch": 1, "train_loss": 0.5, "test_loss": 0.6, "test_accuracy": 0.8}],
               "config": {"model": {"name": "m"}, "rule": {"name": "bp"}}}
    fig = curves_figure(metrics)
    for ax in fig.axes:
        for line in ax.lines:
            assert line.get_marker() not in (None, "None", "", " ")
    pyplot().close(fig)


def test_encoding_of_a_sample_does_not_depend_on_batch_or_dtype():
    net = snn()
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    alone = encode_samples(net, x[:1])
    batch = encode_samples(net, x)
    double = encode_samples(net.double(), x)
    assert torch.equal(alone[:, 0], batch[:, 0]) and torch.equal(batch.double(), double)
    assert double.dtype == torch.float64 and batch.shape == (12, 4, 6)


def test_spiking_activity_has_title_units_threshold_and_no_static_panel():
    net = snn()
    record = net.run(encode_samples(net, torch.ones(2, 6)))
    thresholds, units = layer_info(net)
    assert thresholds == [0.8, None] and units[0] == "dimensionless"
    fig = activity_figure(record, dt=net.dt, backend="brian2", label=7, thresholds=thresholds, units=units)
    assert fig._suptitle.get_text() == "brian2 · sample 0 · label 7"
    mem_ax = fig.axes[1]
    assert mem_ax.get_xlabel() == "time (ms)" and "dimensionless" in mem_ax.get_ylabel()
    assert any(abs(line.get_ydata()[0] - 0.8) < 1e-12 and line.get_linestyle() == "--" for line in mem_ax.lines)
    pyplot().close(fig)


def test_static_network_has_no_time_panels_and_images_get_colour_bars():
    static = Network([Dense(5, 4, neuron_from_config("tanh", 1e-3)), Dense(4, 3, None)],
                     encoder=Encoder("direct", steps=1), decode="last")
    fig = activity_figure(static.run(static.encode(torch.rand(2, 5))), label=1)
    assert len(fig.axes) == 2 and all("time" not in ax.get_xlabel() for ax in fig.axes)
    pyplot().close(fig)
    rnn = Network([Dense(5, 4, neuron_from_config("tanh", 1e-3), recurrent=True)],
                  encoder=Encoder("sequence", steps=6), decode="last")
    fig = activity_figure(rnn.run(torch.rand(6, 2, 5)))
    assert len(fig.axes) == 3  # raster image, its colour bar, the pre-activation traces
    pyplot().close(fig)
