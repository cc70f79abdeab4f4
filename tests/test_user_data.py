"""A user's own data: ``--data module:function`` / ``data = "module:function"`` and the fit checks."""

import json
import sys
import textwrap
from pathlib import Path

import pytest

from neurolearn.cli import main
from neurolearn.data import check_fits, load_dataset
from neurolearn.errors import ConfigError, ShapeError

MODULE = '''
import torch
from torch.utils.data import TensorDataset, IterableDataset

def make(n_train=64, n_test=32, classes=4, features=12):
    g = torch.Generator().manual_seed(0)
    def split(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = torch.rand(n, features, generator=g) * 0.2
        x[torch.arange(n), y] += 1.0   # class k lights up feature k: learnable
        return TensorDataset(x, y)
    return split(n_train), split(n_test)

class Stream(IterableDataset):
    def __iter__(self):
        for i in range(10):
            yield torch.full((3,), float(i)), i % 2

def iterable():
    return Stream(), Stream()

def not_a_pair():
    return 5
'''

MODEL = '''
description = "two-layer LIF on a user's data"
data = "{data}"
dt = 1e-3
decode = "mean"
input = [12]

[encoder]
kind = "rate"
steps = 8

[[layers]]
type = "dense"
size = 16
neuron = "lif"

[[layers]]
type = "dense"
size = {out}
neuron = "li"

[train]
epochs = 2
batch_size = 16
lr = 5e-3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mydata.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("mypkg.mydata", "mypkg"):
        sys.modules.pop(name, None)


def model_file(tmp_path: Path, out: int = 4, data: str = "mypkg.mydata:make") -> str:
    path = tmp_path / "my.toml"
    path.write_text(MODEL.format(out=out, data=data))
    return str(path)


def test_module_function_dataset_loads_map_and_iterable(user_module):
    ds = load_dataset("mypkg.mydata:make", n_train=20)
    assert ds.x_train.shape == (20, 12) and ds.x_test.shape == (32, 12)
    assert ds.n_outputs == 4 and ds.input_shape == (12,) and ds.task == "classification"
    it = load_dataset("mypkg.mydata:iterable")
    assert it.x_train.shape == (10, 3) and it.y_train.tolist() == [i % 2 for i in range(10)]


def test_module_function_errors_are_one_line(user_module):
    with pytest.raises(ConfigError, match="cannot import module 'nopkg.x'"):
        load_dataset("nopkg.x:make")
    with pytest.raises(ConfigError, match="has no function 'nothing'"):
        load_dataset("mypkg.mydata:nothing")
    with pytest.raises(ConfigError, match=r"must return \(train, test\)"):
        load_dataset("mypkg.mydata:not_a_pair")
    with pytest.raises(ConfigError, match="calling it with"):
        load_dataset("mypkg.mydata:make", wrong=1)


def test_readout_must_match_class_count(user_module):
    ds = load_dataset("mypkg.mydata:make")
    check_fits(ds, 4)
    with pytest.raises(ShapeError, match="readout has 10 units but mypkg.mydata:make has 4 classes"):
        check_fits(ds, 10)
    with pytest.raises(ShapeError, match="has 12 classes"):
        check_fits(load_dataset("mypkg.mydata:make", classes=12), 10)


def test_cli_trains_and_evaluates_on_module_function(user_module, tmp_path, capsys):
    out = tmp_path / "run"
    model = model_file(tmp_path, data="digits")  # the flag overrides the file's data
    assert main(["train", "--no-progress", "--threads", "1", "--model", model, "--rule", "anp",
                 "--data", "mypkg.mydata:make", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["data"]["name"] == "mypkg.mydata:make" and len(m["epochs"]) == 2
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out)


def test_model_file_data_entry_and_wrong_readout(user_module, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--no-progress", "--threads", "1", "--model", model_file(tmp_path), "--rule", "bp",
                 "--epochs", "1", "--out", str(out)]) == 0
    assert main(["train", "--no-progress", "--model", model_file(tmp_path, out=10), "--out",
                 str(tmp_path / "bad")]) == 2
    assert "readout has 10 units but mypkg.mydata:make has 4 classes" in capsys.readouterr().err
