"""Generated sequence tasks, deterministic given their options.

- ``copy``: memorise ``n_symbols`` symbols, wait ``delay`` steps, recall them.
- ``mackey-glass``: predict the chaotic Mackey-Glass series ``horizon`` samples ahead.

Both are batch-first sequence regression tasks: x float32 ``[N, T, features]``,
y float32 ``[N, T, n_outputs]``, trained with a (masked) mean squared error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from neurolearn.data.dataset import Dataset, check_int
from neurolearn.errors import ConfigError

# --------------------------------------------------------------------------- copy


def copy_sequences(
    n_symbols: int, alphabet: int, delay: int, n_sequences: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The copy task as arrays: symbols int ``[S, n_symbols]`` in ``1..alphabet``,
    inputs and targets float32 ``[S, T, alphabet + 2]`` with ``T = 2 * n_symbols + delay``.

    Input channel 0 = blank, ``1..alphabet`` = symbols, ``alphabet + 1`` = recall marker:
    the symbols, then ``delay`` blanks, then ``n_symbols`` markers. The target is all zeros
    until the markers, then the one-hot of the symbols, in order.
    """
    rng = np.random.default_rng(seed)
    symbols = rng.integers(1, alphabet + 1, size=(n_sequences, n_symbols))
    steps = 2 * n_symbols + delay
    recall = n_symbols + delay
    rows = np.arange(n_sequences)[:, None]
    cols = np.arange(n_symbols)[None, :]
    x = np.zeros((n_sequences, steps, alphabet + 2), dtype=np.float32)
    x[rows, cols, symbols] = 1.0
    x[:, n_symbols:recall, 0] = 1.0
    x[:, recall:, alphabet + 1] = 1.0
    y = np.zeros_like(x)
    y[rows, recall + cols, symbols] = 1.0
    return symbols, x, y


def load_copy(
    root: str | Path | None = None,
    *,
    n_symbols: int = 10,
    alphabet: int = 4,
    delay: int = 5,
    n_sequences: int = 1,
    seed: int = 0,
) -> Dataset:
    """Memorise-and-recall (copy) task, as in García Fernández et al. 2024.

    x, y: float32 ``[n_sequences, T, alphabet + 2]``, ``T = 2 * n_symbols + delay``, all
    values 0/1 (see :func:`copy_sequences`). The defaults give 25 steps x 6 outputs = 150
    target bits. Train and test are the same sequences: this measures memorisation
    capacity, not generalisation. ``root`` is ignored.
    """
    name = "copy"
    n_symbols = check_int("n_symbols", n_symbols, 1, name)
    alphabet = check_int("alphabet", alphabet, 1, name)
    delay = check_int("delay", delay, 0, name)
    n_sequences = check_int("n_sequences", n_sequences, 1, name)
    seed = check_int("seed", seed, 0, name)
    symbols, x, y = copy_sequences(n_symbols, alphabet, delay, n_sequences, seed)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    return Dataset(
        name=name,
        x_train=x_t,
        y_train=y_t,
        x_test=x_t.clone(),
        y_test=y_t.clone(),
        input_shape=(alphabet + 2,),
        n_outputs=alphabet + 2,
        task="sequence_regression",
        sequence=True,
        loss_mask=None,
        info={
            "source": "generated (numpy default_rng(seed))",
            "note": (
                "memorisation task: train and test are the SAME fixed sequences "
                "(capacity test as in García Fernández et al. 2024, not generalisation); "
                f"T={x.shape[1]} steps x {alphabet + 2} outputs = {y[0].size} target bits "
                "per sequence, the loss counts on every step"
            ),
            "symbols": torch.from_numpy(symbols.astype(np.int64)),
            "recall_start": n_symbols + delay,
        },
    )


# --------------------------------------------------------------------------- Mackey-Glass


def mackey_glass_series(
    n_samples: int,
    tau: float = 17.0,
    sample_every: int = 1,
    substeps: int = 10,
    history: float = 1.2,
    transient: int = 500,
) -> np.ndarray:
    """The raw Mackey-Glass series, float64 ``[n_samples]`` (values around 0.2..1.4).

    Integrates ``dx/dt = 0.2 x(t - tau) / (1 + x(t - tau)^10) - 0.1 x(t)`` with Euler steps
    of ``1 / substeps`` time units from the constant history ``x(t <= 0) = history``, keeps
    one sample every ``sample_every`` time units and drops the first ``transient`` samples.
    """
    dt = 1.0 / substeps
    lag = max(1, round(tau * substeps))
    stride = sample_every * substeps
    total = (n_samples + transient) * stride
    xs = [history] * (lag + 1) + [0.0] * total
    for k in range(lag, lag + total):
        delayed = xs[k - lag]
        xs[k + 1] = xs[k] + dt * (0.2 * delayed / (1.0 + delayed**10) - 0.1 * xs[k])
    series = np.asarray(xs[lag + stride :: stride], dtype=np.float64)
    return series[transient : transient + n_samples]


def _chunks(
    series: np.ndarray, start: int, count: int, length: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` consecutive non-overlapping input chunks from ``start`` and their targets."""
    idx = start + np.arange(count)[:, None] * length + np.arange(length)[None, :]
    return series[idx, None].astype(np.float32), series[idx + horizon, None].astype(np.float32)


def load_mackey_glass(
    root: str | Path | None = None,
    *,
    horizon: int = 15,
    length: int = 200,
    n_train: int = 64,
    n_test: int = 16,
    washout: int = 20,
    sample_every: int = 1,
    tau: float = 17.0,
    seed: int | None = None,
) -> Dataset:
    """Mackey-Glass prediction: from ``s(k)`` predict ``s(k + horizon)``.

    ``s = tanh(x - 1) - mean`` (dimensionless, within about ``[-0.6, 0.4]``; the mean of
    the training inputs is subtracted) of the series ``x`` of :func:`mackey_glass_series`.
    One long series is cut into non-overlapping chunks of ``length`` samples:
    x, y float32 ``[N, length, 1]``, ``n_train`` training chunks first, then, after a gap of
    ``horizon`` samples so no training target is a test target, ``n_test`` test chunks.
    ``loss_mask`` is False for the first ``washout`` steps. ``seed=None`` starts from the
    canonical constant history 1.2; an integer seed draws the constant history uniformly
    in ``[1.1, 1.3]``, giving another trajectory of the same attractor. ``info["target_var"]``
    is the variance of the test targets on the masked steps (divide the MSE by it for
    NMSE); ``info["target_var_train"]`` the same for training. ``root`` is ignored.
    """
    name = "mackey-glass"
    horizon = check_int("horizon", horizon, 0, name)
    length = check_int("length", length, 1, name)
    n_train = check_int("n_train", n_train, 1, name)
    n_test = check_int("n_test", n_test, 1, name)
    washout = check_int("washout", washout, 0, name)
    sample_every = check_int("sample_every", sample_every, 1, name)
    if washout >= length:
        raise ConfigError(
            f"dataset {name!r}: washout={washout} leaves no step of length={length}"
        )
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1000:
        raise ConfigError(f"dataset {name!r}: tau must be a number in (0, 1000], got {tau!r}")
    history = 1.2
    if seed is not None:
        seed = check_int("seed", seed, 0, name)
        history = float(np.random.default_rng(seed).uniform(1.1, 1.3))

    test_start = n_train * length + horizon
    n_samples = test_start + n_test * length + horizon
    raw = mackey_glass_series(
        n_samples, tau=float(tau), sample_every=sample_every, history=history
    )
    squashed = np.tanh(raw - 1.0)
    mean = float(squashed[: n_train * length].mean())
    series = squashed - mean
    x_tr, y_tr = _chunks(series, 0, n_train, length, horizon)
    x_te, y_te = _chunks(series, test_start, n_test, length, horizon)
    mask = torch.ones(length, dtype=torch.bool)
    mask[:washout] = False
    if not (math.isfinite(float(np.abs(series).max()))):
        raise ConfigError(f"dataset {name!r}: the series diverged (tau={tau})")
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        input_shape=(1,),
        n_outputs=1,
        task="sequence_regression",
        sequence=True,
        loss_mask=mask,
        info={
            "source": (
                f"generated Mackey-Glass, tau={tau}, Euler dt=0.1, sample_every={sample_every}, "
                f"500 transient samples dropped, history x(t<=0)={history:.6g}"
            ),
            "note": (
                f"predict {horizon} samples ahead; series tanh(x - 1) minus the training mean "
                f"({mean:.6g}); test chunks follow the training chunks later in the series"
            ),
            "target_var": float(y_te[:, washout:].var()),
            "target_var_train": float(y_tr[:, washout:].var()),
            "mean_removed": mean,
            "history": history,
        },
    )


# --------------------------------------------------------------------------- e-prop tasks (PLASTICITY.md §3)


def evidence_trials(n_trials: int, seed: int, *, n_cues: int = 7, delay: int = 1050, recall: int = 150,
                    per_group: int = 10, cue_rate: float = 40.0, noise_rate: float = 10.0, p_minority: float = 0.3,
                    dt: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evidence (cue) accumulation trials (Bellec et al. 2020, Fig. 3): ``(x, label, cues)``.

    ``x`` float32 ``[n_trials, T, 4·per_group]``, Bernoulli spikes of four input groups: left cues,
    right cues, recall, background noise; ``T = 150·n_cues + delay + recall`` steps of ``dt``.
    Per trial the favoured side is drawn uniformly; each of the ``n_cues`` cues is on the
    favoured side with probability ``1 − p_minority``. Cue ``k`` drives its side's group at
    ``cue_rate`` Hz during steps ``[50 + 150k, 150 + 150k)``; the recall group fires at
    ``cue_rate`` during the last ``recall`` steps, the noise group at ``noise_rate`` throughout.
    ``label`` int64 ``[n_trials]``: 1 (right) iff more than half of the cues are right;
    ``cues`` int ``[n_trials, n_cues]``: 1 = right.
    """
    rng = np.random.default_rng(seed)
    steps = 150 * n_cues + delay + recall
    right_favoured = rng.random(n_trials) < 0.5
    minority = rng.random((n_trials, n_cues)) < p_minority
    cues = (right_favoured[:, None] ^ minority).astype(np.int64)
    label = (cues.sum(1) > n_cues // 2).astype(np.int64)
    rate = np.zeros((n_trials, steps, 4), dtype=np.float32)  # spike probability per step and group
    for k in range(n_cues):
        side = cues[:, k]  # 0 = left group, 1 = right group
        rate[np.arange(n_trials)[:, None], np.arange(50 + 150 * k, 150 + 150 * k)[None, :], side[:, None]] = cue_rate * dt
    rate[:, steps - recall:, 2] = cue_rate * dt
    rate[:, :, 3] = noise_rate * dt
    rate = np.repeat(rate, per_group, axis=2)
    x = (rng.random(rate.shape, dtype=np.float32) < rate).astype(np.float32)
    return x, label, cues


def load_evidence(
    root: str | Path | None = None,
    *,
    n_cues: int = 7,
    delay: int = 1050,
    recall: int = 150,
    per_group: int = 10,
    n_train: int = 1024,
    n_test: int = 256,
    seed: int = 0,
) -> Dataset:
    """Evidence accumulation (PLASTICITY.md §3.1): which side had more of ``n_cues`` cues, answered
    during a recall cue after a ``delay`` (steps of 1 ms). Classification of sequences:
    x float32 ``[N, T, 4·per_group]`` spikes (:func:`evidence_trials`), y int64 ``[N]`` (0 left,
    1 right). The answer is read in the last ``recall`` steps (``info["recall_steps"]``; a model
    decodes with ``decode = "mean"``, ``decode_window = recall``). Full size (defaults): 7 cues,
    T = 2250; ``evidence-ci`` is the CI-scale variant (3 cues, delay 300, T = 900). Train and
    test trials are drawn independently. ``root`` is ignored.
    """
    return _evidence("evidence", n_cues, delay, recall, per_group, n_train, n_test, seed)


def load_evidence_ci(
    root: str | Path | None = None,
    *,
    n_cues: int = 3,
    delay: int = 300,
    recall: int = 150,
    per_group: int = 10,
    n_train: int = 1024,
    n_test: int = 256,
    seed: int = 0,
) -> Dataset:
    """The CI-scale evidence accumulation task (PLASTICITY.md §3.4): :func:`load_evidence` with
    3 cues and a 300 ms delay (T = 900 steps)."""
    return _evidence("evidence-ci", n_cues, delay, recall, per_group, n_train, n_test, seed)


def _evidence(name: str, n_cues: int, delay: int, recall: int, per_group: int, n_train: int, n_test: int,
              seed: int) -> Dataset:
    n_cues = check_int("n_cues", n_cues, 1, name)
    if n_cues % 2 == 0:
        raise ConfigError(f"dataset {name!r}: n_cues must be odd (no ties), got {n_cues}")
    delay = check_int("delay", delay, 0, name)
    recall = check_int("recall", recall, 1, name)
    per_group = check_int("per_group", per_group, 1, name)
    n_train = check_int("n_train", n_train, 1, name)
    n_test = check_int("n_test", n_test, 1, name)
    seed = check_int("seed", seed, 0, name)
    kw = dict(n_cues=n_cues, delay=delay, recall=recall, per_group=per_group)
    x_tr, y_tr, _ = evidence_trials(n_train, 2 * seed, **kw)
    x_te, y_te, _ = evidence_trials(n_test, 2 * seed + 1, **kw)
    steps = x_tr.shape[1]
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        input_shape=(4 * per_group,),
        n_outputs=2,
        task="classification",
        sequence=True,
        info={
            "source": "generated (numpy default_rng), Bellec et al. 2020 Fig. 3 / IGITUGraz eligibility_propagation",
            "note": (f"{n_cues} cues of 100 ms every 150 ms at 40 Hz, delay {delay} ms, recall {recall} ms, "
                     f"noise 10 Hz; T = {steps} steps of 1 ms; answer read in the last {recall} steps"),
            "recall_steps": recall,
            "steps": steps,
        },
    )


def sine_pattern(steps: int, n_sines: int, seed: int) -> np.ndarray:
    """The pattern-generation target (PLASTICITY.md §3.2), float64 ``[steps]`` in ``[−1, 1]`` starting at 0:
    ``Σ_i A_i sin(linspace(φ_i, φ_i + 2π n_i, steps))``, ``n = (1, 2, 3, 5)`` cycles for the first
    ``n_sines`` (the reference's periods 1000, 500, 333, 200 ms at T = 1000 ms, scaled with ``steps``),
    ``A_i ~ U(0.5, 2)``, ``φ_i ~ U(0, 2π)``, minus its value at 0, over its max ``|·|``."""
    rng = np.random.default_rng(seed)
    y = np.zeros(steps)
    for cycles in (1, 2, 3, 5)[:n_sines]:
        amp, phase = rng.uniform(0.5, 2.0), rng.uniform(0.0, 2 * np.pi)
        y += amp * np.sin(np.linspace(phase, phase + 2 * np.pi * cycles, steps))
    y -= y[0]
    return y / np.abs(y).max()


def load_pattern(
    root: str | Path | None = None,
    *,
    steps: int = 1000,
    n_inputs: int = 100,
    rate: float = 50.0,
    n_sines: int = 4,
    seed: int = 0,
) -> Dataset:
    """Pattern generation (PLASTICITY.md §3.2): reproduce a sum of ``n_sines`` sines
    (:func:`sine_pattern`) from one frozen realisation of ``n_inputs`` Poisson trains at ``rate`` Hz
    (Bernoulli per 1 ms step). Sequence regression, one sequence: x float32 ``[1, steps, n_inputs]``,
    y float32 ``[1, steps, 1]``; train and test are the same sequence (a memorisation task, as the
    reference). CI scale: ``steps = 500, n_sines = 2``. ``root`` is ignored.
    """
    name = "pattern"
    steps = check_int("steps", steps, 2, name)
    n_inputs = check_int("n_inputs", n_inputs, 1, name)
    n_sines = check_int("n_sines", n_sines, 1, name)
    if not 1 <= n_sines <= 4:
        raise ConfigError(f"dataset {name!r}: n_sines must be 1..4, got {n_sines}")
    seed = check_int("seed", seed, 0, name)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1000:
        raise ConfigError(f"dataset {name!r}: rate must be a number of Hz in (0, 1000], got {rate!r}")
    rng = np.random.default_rng(seed + 1000)
    x = (rng.random((1, steps, n_inputs)) < rate * 1e-3).astype(np.float32)
    y = sine_pattern(steps, n_sines, seed).astype(np.float32)[None, :, None]
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    return Dataset(
        name=name, x_train=x_t, y_train=y_t, x_test=x_t.clone(), y_test=y_t.clone(), input_shape=(n_inputs,),
        n_outputs=1, task="sequence_regression", sequence=True, loss_mask=None,
        info={"source": "generated (numpy default_rng), Bellec et al. 2020 Fig. S7 (tutorial_pattern_generation)",
              "note": (f"one frozen {rate:g} Hz Poisson input of {n_inputs} channels, {n_sines} sines, T = {steps} "
                       "steps of 1 ms; train = test (memorisation)"),
              "target_var": float(y.var())},
    )
