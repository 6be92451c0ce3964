"""The compiled CPU form of the third Hub file: equal to the float64 reference, a quiet fallback, never at import.

The compiled functions compile once per process and shape bucket (a few seconds each), so the cases share one
bucket (N <= 64), one head count and one head dimension. The remote-code test proves that a folder loaded with only
torch and transformers runs the compiled form by default.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from modeling_inhibidistilbert import kernels_inhibidistilbert as kernels
from modeling_inhibidistilbert.modeling_inhibidistilbert import inhibitor_attention_cdist
from modeling_inhibidistilbert.reference import naive_inhibitor, random_case

from .test_remote_code import BLOCKER

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPILER = kernels.compiled_unsupported(torch.zeros(1, 1, 4, 4), needs_grad=True)
needs_compiler = pytest.mark.skipif(COMPILER is not None, reason=f"the compiled form cannot run here: {COMPILER}")


def run_child(script: str, tmp_path: Path, blocked: bool = False, **env_vars) -> dict:
    """Runs `script` in a fresh interpreter (own Inductor cache); it writes its findings to result.json."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    env.update(TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), **env_vars)
    if not blocked:
        env["PYTHONPATH"] = str(REPO_ROOT)
    work = tmp_path / "child"
    work.mkdir(exist_ok=True)
    code = (BLOCKER if blocked else "") + textwrap.dedent(script)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((work / "result.json").read_text())


def reference_with_grads(case, signed, center, weights):
    inputs = [t.detach().double().requires_grad_() for t in case[:6]]
    out = naive_inhibitor(*inputs, case[6], signed, center)[0]
    return out, torch.autograd.grad((out * weights).sum(), inputs)


@needs_compiler
@pytest.mark.parametrize(("signed", "center", "pad"), [(True, True, True), (False, False, False)])
def test_compiled_forward_and_backward_match_float64_reference(signed, center, pad):
    case = random_case(batch=3, heads=2, n=37, d=16, seed=3, pad=pad, dtype=torch.float32)
    inputs = [t.clone().requires_grad_() for t in case[:6]]
    out = kernels.compiled_inhibitor_attention(*inputs, case[6], signed, center)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * weights).sum(), inputs)
    ref, ref_grads = reference_with_grads(case, signed, center, weights)
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    for name, grad, ref_grad in zip(("Q", "K", "V", "gamma", "delta", "eta"), grads, ref_grads):
        scale = ref_grad.abs().max().item()
        torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-5 * scale, msg=f"d {name}")
    if pad:  # padded keys get no gradient, as in the reference
        assert grads[2][0, :, -2:].abs().max() == 0 and grads[1][0, :, -2:].abs().max() == 0


@needs_compiler
def test_compiled_float64_inference_and_separate_key_length():
    """float64 in, float64 out; the keys have their own length (their own bucket) and no grad is kept."""
    q = random_case(batch=2, heads=2, n=9, d=16, seed=5, pad=False)[0]
    _, k, v, gamma, delta, eta, key_mask = random_case(batch=2, heads=2, n=70, d=16, seed=6)
    with torch.no_grad():
        out = kernels.compiled_inhibitor_attention(q, k, v, gamma, delta, eta, key_mask, True, True)
    ref = naive_inhibitor(q, k, v, gamma, delta, eta, key_mask)[0]
    assert out.dtype == torch.float64 and out.shape == (2, 2, 9, 16)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@needs_compiler
def test_compiled_propagates_nan_and_inf_as_the_cdist_form():
    case = random_case(batch=3, heads=2, n=37, d=16, seed=7, dtype=torch.float32)
    q, k, v = (t.clone() for t in case[:3])
    q[1, 0, 4, 2] = float("nan")  # one query row of one head
    k[2, 1, 5, 0] = float("inf")  # one key: every row of that head
    v[0, 1, 36, 3] = float("nan")  # a padded key (batch 0 pads its last two keys): the mask multiplies, NaN stays
    inputs = (q, k, v, *case[3:6])
    out = kernels.compiled_inhibitor_attention(*inputs, case[6], True, True)
    allowed = case[6][:, None, None, :]
    cdist_out, _ = inhibitor_attention_cdist(*inputs, allowed, True, True)
    ref = naive_inhibitor(*(t.double() for t in inputs), case[6])[0]
    assert torch.isnan(ref).any() and not torch.isnan(ref).all()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    assert torch.equal(torch.isnan(cdist_out), torch.isnan(ref))
    finite = torch.isfinite(ref)
    torch.testing.assert_close(out.double()[finite], ref[finite], rtol=1e-5, atol=1e-4)


def test_compiled_probe_names_what_it_cannot_run():
    assert "CPU" in kernels.compiled_unsupported(torch.zeros(1, 1, 4, 4, device="meta"), needs_grad=False)
    assert "bfloat16" in kernels.compiled_unsupported(torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16), False)
    long = torch.zeros(1, 1, kernels.COMPILED_MAX_KEYS + 1, 1)
    assert str(kernels.COMPILED_MAX_KEYS) in kernels.compiled_unsupported(long, needs_grad=False)


def test_nothing_compiles_at_import(tmp_path):
    result = run_child(
        """
        import json, torch
        calls = []
        original = torch.compile
        torch.compile = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
        from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertModel
        from modeling_inhibidistilbert import kernels_inhibidistilbert as kernels
        InhibiDistilBertModel(InhibiDistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=50))
        json.dump({"compile_calls": len(calls), "compiled": len(kernels._compiled_functions)}, open("result.json", "w"))
        """,
        tmp_path,
    )
    assert result == {"compile_calls": 0, "compiled": 0}


def test_without_a_compiler_the_probe_fails_once_quietly_and_the_model_runs_cdist(tmp_path):
    """No C++ compiler (CXX points nowhere): the probe says why, tries once, and `auto` runs the cdist form."""
    result = run_child(
        """
        import json, time, torch
        from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertModel
        from modeling_inhibidistilbert import kernels_inhibidistilbert as kernels
        from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling
        query = torch.zeros(1, 2, 8, 16)
        first = kernels.compiled_unsupported(query, True)
        start = time.perf_counter()
        second = kernels.compiled_unsupported(query, False)
        again = time.perf_counter() - start
        torch.manual_seed(0)
        config = InhibiDistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=50)
        model = InhibiDistilBertModel(config).eval()
        ids = torch.randint(0, 50, (2, 9))
        hidden = model(input_ids=ids).last_hidden_state
        config.inhibitor_implementation = "cdist"
        expected = model(input_ids=ids).last_hidden_state
        ran = sorted(name for name, device in modeling._LOGGED)
        json.dump({"first": first, "second": second, "again": again, "same": bool(torch.equal(hidden, expected)),
                   "ran": ran}, open("result.json", "w"))
        """,
        tmp_path,
        CXX="/nonexistent/c++",
        INHIBIDISTILBERT_KERNELS="0",
    )
    assert result["first"] is not None and "cannot build" in result["first"]
    assert result["second"] == result["first"] and result["again"] < 0.05  # cached, not retried
    assert result["same"] and result["ran"] == ["cdist"]


@needs_compiler
def test_hub_folder_runs_the_compiled_form_by_default(tmp_path):
    """A folder loaded with trust_remote_code where our packages cannot be imported runs `compiled` on CPU."""
    from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertModel

    torch.manual_seed(0)
    config = InhibiDistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=60)
    model = InhibiDistilBertModel(config).eval()
    folder = tmp_path / "folder"
    model.save_pretrained(folder)
    ids = torch.randint(0, 60, (3, 21))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    torch.save({"ids": ids, "mask": mask}, tmp_path / "inputs.pt")
    with torch.no_grad():
        config.inhibitor_implementation = "cdist"
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    result = run_child(
        f"""
        import json, logging, sys, torch
        from transformers import AutoModel
        lines = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(record.getMessage())
        logging.getLogger("transformers_modules").addHandler(handler)
        logging.getLogger("transformers_modules").setLevel(logging.DEBUG)
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            hidden = model(input_ids=inputs["ids"], attention_mask=inputs["mask"]).last_hidden_state
        kernels = next(m for n, m in sys.modules.items() if n.endswith(".kernels_inhibidistilbert"))
        torch.save(hidden, "hidden.pt")
        json.dump({{"logged": [l for l in lines if "implementation" in l],
                   "compiled": len(kernels._compiled_functions),
                   "kernels_file": kernels.__file__}}, open("result.json", "w"))
        """,
        tmp_path,
        blocked=True,
    )
    assert any("'compiled'" in line for line in result["logged"]), result["logged"]
    assert not any("'cdist'" in line for line in result["logged"]), result["logged"]
    assert result["compiled"] >= 2 and str(REPO_ROOT) not in result["kernels_file"]
    hidden = torch.load(tmp_path / "child" / "hidden.pt")
    real = mask.bool()
    torch.testing.assert_close(hidden[real], expected[real], rtol=1e-4, atol=1e-4)


def load_benchmark(name: str):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))


def test_benchmark_results_of_other_machines_survive_a_regeneration(tmp_path):
    common = load_benchmark("common")
    results, doc = tmp_path / "results.json", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written text\n")
    common.merge_results(results, "CPU A, 2 threads", {"value": 1})
    common.replace_section(doc, "demo", "table of A")
    merged = common.merge_results(results, "CPU B, 8 threads", {"value": 2})
    common.replace_section(doc, "demo", "table of A\n\ntable of B")
    assert merged == {"CPU A, 2 threads": {"value": 1}, "CPU B, 8 threads": {"value": 2}}
    text = doc.read_text()
    assert text.count("<!-- demo:begin -->") == 1 and "table of A\n\ntable of B" in text and "hand-written" in text
    info = common.machine()
    assert info["threads"] == torch.get_num_threads() and info["cpu"] and isinstance(info["vector_extensions"], list)


@needs_compiler
def test_hub_path_benchmark_runs_the_compiled_form_without_our_packages():
    """benchmarks/hub_path.py --quick: the child loads the folder's own code and runs the compiled form."""
    hub_path = load_benchmark("hub_path")
    entry = hub_path.main(["--quick", "--no_doc", "--threads", "1"])
    row = entry["rows"][0]
    assert row["ran"] == ["compiled"]
    assert str(REPO_ROOT) not in entry["kernels_file"]
    assert row["inhibi"]["median_s"] > 0 and row["distilbert"]["median_s"] > 0
    assert row["attention_fwd_compiled"]["median_s"] > 0 and row["compiled_vs_cdist_rel_err"] < 1e-5
    assert re.search(r"\d+ threads? of \d+ cores", hub_path.machine_table(entry | {"command": "x"}))
