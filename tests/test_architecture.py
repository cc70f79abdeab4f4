"""The package's seams, checked on its source: neuron types are asked, never switched on."""

from __future__ import annotations

import ast
from pathlib import Path

import neurolearn

PACKAGE = Path(neurolearn.__file__).resolve().parent
NEURON_CLASSES = {"RateParams", "LIFParams", "LIParams", "ALIFParams", "IzhikevichParams", "AdExParams"}


def test_no_isinstance_on_neuron_models_outside_their_own_files():
    """Only a model's own file knows its type: elsewhere ``isinstance(p, LIFParams)`` (with an else that
    assumes LIF) is what made adding a model touch seven files. Building a model by name is fine."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "neurons":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                types = node.args[1]
                names = {n.id for n in ast.walk(types) if isinstance(n, ast.Name)}
                if names & NEURON_CLASSES:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "neuron types switched on outside neurolearn/neurons:\n" + "\n".join(offenders)
