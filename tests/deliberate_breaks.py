"""The deliberate breaks of issue 15 (and the six defects put back): apply each one to the source,
run the tests that guard it, report CAUGHT (a test failed) or SURVIVED, restore the file.

    PYTHONPATH=. NEUROLEARN_DATA=... python tests/deliberate_breaks.py            # all
    PYTHONPATH=. NEUROLEARN_DATA=... python tests/deliberate_breaks.py anp_c_1    # one

Not collected by pytest (the name does not start with test_); docs/results/mutation.md has the table.
Every break must be CAUGHT; the file is restored even when interrupted.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = [
 ("anp_c_1", "neurolearn/rules/perturbation.py", '        if self.scale == "n":\n            return float(dims)', '        if self.scale == "n":\n            return 1.0',
  "tests/test_rule_breaks.py tests/test_perturbation.py"),
 ("wp_1_over_sigma", "neurolearn/rules/perturbation.py", "        scale = dl / self.noise_diff_var(self.sigma)", "        scale = dl / self.sigma",
  "tests/test_rule_breaks.py tests/test_perturbation.py"),
 ("time_rec_h_t", "neurolearn/rules/perturbation_time.py", "            rec = taps[k].rec if rows is None else taps[k].rec[rows]", "            rec = taps[k].act if rows is None else taps[k].act[rows]",
  "tests/test_rule_breaks.py tests/test_perturbation.py"),
 ("np_anp_hidden_zero", "neurolearn/rules/perturbation.py", "            p, c = posts[k], coefs[k]", "            p, c = posts[k], coefs[k] * (k == len(model.layers) - 1)",
  "tests/test_rule_breaks.py tests/test_perturbation.py"),
 ("time_hidden_zero", "neurolearn/rules/perturbation_time.py", "        gk = g[k]\n", "        gk = g[k] * (k == len(model.layers) - 1)\n",
  "tests/test_rule_breaks.py tests/test_perturbation.py"),
 ("tp_hidden_zero", "neurolearn/rules/target_projection.py", "                    delta = self.layer_error(sig.post, target) * sig.deriv", "                    delta = self.layer_error(sig.post, target) * sig.deriv * 0",
  "tests/test_target_projection.py"),
 ("dfa_hidden_zero", "neurolearn/rules/feedback_alignment.py", "                    add_update(layer, err * sig.deriv, sig, grads, 1.0)", "                    add_update(layer, err * sig.deriv * 0, sig, grads, 1.0)",
  "tests/test_target_projection.py"),
 ("zorb_hidden_unsolved", "neurolearn/rules/zorb.py", "            if i in frozen:  # frozen means frozen", "            if i in frozen or i < n - 1:  # frozen means frozen",
  "tests/test_rule_breaks.py tests/test_solvers.py"),
 ("sibp_prox_noop", "neurolearn/rules/sibp.py", "                w = prox_relu(w0, a, target, self.lam, self.inner_iters)", "                w = w0.clone()",
  "tests/test_rule_breaks.py tests/test_solvers.py"),
 ("sibp_old_weights", "neurolearn/rules/sibp.py", "                g = g @ layer.weight if layer.neuron is None else (g * (acts[k + 1] > 0)) @ layer.weight", "                g = g @ w0[:, :-1] if layer.neuron is None else (g * (acts[k + 1] > 0)) @ w0[:, :-1]",
  "tests/test_rule_breaks.py tests/test_solvers.py"),
 ("defect1_time_scale_T", "neurolearn/rules/perturbation_time.py", "            g = rule.node_signal(dl / (dl.shape[0] * seq.counted),", "            g = rule.node_signal(dl / dl.shape[0],",
  "tests/test_rule_breaks.py"),
 ("defect2_sqrt_own_width", "neurolearn/rules/perturbation.py", '        if self.scale == "sqrt":  # the reference', '        if False:  # the reference',
  "tests/test_rule_breaks.py"),
 ("defect3_drtp_minus_yB", "neurolearn/rules/target_projection.py", "        if self.margin is None:\n            return target\n", "        if self.margin is None:\n            return -target\n",
  "tests/test_target_projection.py"),
 ("defect4_sqrt_j_columns", "neurolearn/decorrelation.py", "                cov = torch.tril(cov, -1)\n", "                cov = torch.tril(cov, -1) * torch.arange(d, dtype=cov.dtype).sqrt()\n",
  "tests/test_decorrelation.py"),
 ("defect5_fit_last_step", "neurolearn/rules/zorb.py", "    if not torch.equal(x, x[:1].expand_as(x)):", "    if False:",
  "tests/test_rule_breaks.py"),
 ("defect6_bias_untraced", "neurolearn/rules/perturbation_time.py", "            add_grad(layer.bias, bias_grad(gk) * bias_in)", "            add_grad(layer.bias, bias_grad(gk))",
  "tests/test_rule_breaks.py"),
 ("defect6_rec_untraced", "neurolearn/rules/perturbation_time.py", "            add_grad(layer.recurrent_weight, gk.t() @ seq.rec_input(k, rec))", "            add_grad(layer.recurrent_weight, gk.t() @ rec)",
  "tests/test_rule_breaks.py"),
]
only = sys.argv[1:]
env = dict(os.environ, PYTHONPATH=ROOT)
survived = []
for name, path, old, new, tests in B:
    if only and name not in only:
        continue
    p = os.path.join(ROOT, path)
    src = open(p).read()
    assert src.count(old) == 1, (name, src.count(old))
    open(p, "w").write(src.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        failed = [l for l in r.stdout.splitlines() if l.startswith("FAILED")]
        print(f"{name}: {'CAUGHT' if r.returncode else 'SURVIVED'} {failed[:1]}", flush=True)
        if not r.returncode:
            survived.append(name)
    finally:
        open(p, "w").write(src)
sys.exit(1 if survived else 0)
