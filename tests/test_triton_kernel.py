"""The Triton kernel of the third Hub file equals the float64 reference: on CPU in Triton's interpreter, on a GPU.

`TRITON_INTERPRET=1` must be set before triton is imported, so the interpreter checks run in a child process. They
need only triton (in the dev extra); the GPU tests skip without a CUDA device, and say so.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from modeling_inhibidistilbert import kernels_inhibidistilbert as kernels
from modeling_inhibidistilbert.reference import naive_inhibitor, random_case

REPO_ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install -e '.[dev]' has it)")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")

# Forward and backward of fp32 inputs against float64 (signed and unsigned, centred or not, padding or no mask).
INTERPRETER_CHECK = """
    import json, torch
    from modeling_inhibidistilbert.kernels_inhibidistilbert import triton_inhibitor_attention, triton_unsupported
    from modeling_inhibidistilbert.reference import naive_inhibitor, random_case

    results = []
    for signed, center, pad, n, d in [(True, True, True, 20, 16), (False, True, True, 19, 12),
                                      (True, False, False, 33, 8), (False, False, True, 17, 5)]:
        case = random_case(batch=2, heads=2, n=n, d=d, seed=n, pad=pad)
        inputs = [t.float().requires_grad_() for t in case[:6]]
        assert triton_unsupported(inputs[0], True) is None, triton_unsupported(inputs[0], True)
        out = triton_inhibitor_attention(*inputs, case[6], signed, center)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        grads = torch.autograd.grad((out.double() * weights).sum(), inputs)
        ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
        ref = naive_inhibitor(*ref_inputs, case[6], signed, center)[0]
        ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
        errors = [((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip((out, *grads), (ref, *ref_grads))]
        results.append({"signed": signed, "center": center, "pad": pad, "errors": errors, "dtype": str(out.dtype)})
    print("RESULT" + json.dumps(results))
"""


def run_interpreted(script: str) -> list:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@needs_triton
def test_triton_kernel_matches_float64_reference_in_the_interpreter():
    results = run_interpreted(INTERPRETER_CHECK)
    assert len(results) == 4
    for case in results:
        assert case["dtype"] == "torch.float32"
        # output, dQ, dK, dV, d gamma, d delta, d eta: float32 accumulation against float64
        assert max(case["errors"]) < 1e-4, case


def test_triton_probe_names_the_reason_on_cpu_without_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = kernels.triton_unsupported(torch.zeros(1, 1, 4, 4), needs_grad=True)
    assert reason is not None
    assert ("CUDA" in reason) if kernels.triton is not None else ("not installed" in reason)
    with pytest.raises(RuntimeError, match="cannot run this call"):
        kernels.triton_inhibitor_attention(*random_case(batch=1, heads=1, n=4, d=4, dtype=torch.float32)[:6])


def test_triton_probe_refuses_float64(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    reason = kernels.triton_unsupported(torch.zeros(1, 1, 4, 4, dtype=torch.float64), needs_grad=False)
    assert reason is not None and ("float64" in reason or "not installed" in reason)


def test_hub_folder_loads_where_triton_is_not_installed():
    """transformers' remote-code import check accepts the third Hub file: triton is imported only inside `try`."""
    from transformers.dynamic_module_utils import check_imports, get_imports

    path = Path(kernels.__file__)
    assert set(get_imports(path)) - set(sys.stdlib_module_names) == {"torch", "transformers"}
    check_imports(path)  # raises ImportError naming any missing package


@pytest.mark.gpu
@needs_gpu
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("pad", [False, True])
def test_triton_forward_and_backward_match_float64_reference_on_gpu(dtype, signed, pad):
    case = random_case(batch=2, heads=3, n=70, d=64, seed=19, pad=pad)
    key_mask = None if case[6] is None else case[6].cuda()
    inputs = [t.to("cuda", dtype if i < 3 else torch.float32).requires_grad_() for i, t in enumerate(case[:6])]
    assert kernels.triton_unsupported(inputs[0], True) is None
    out = kernels.triton_inhibitor_attention(*inputs, key_mask, signed)
    assert out.dtype == dtype
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * weights.cuda()).sum(), inputs)
    ref_inputs = [t.detach().cpu().double().requires_grad_() for t in inputs]
    ref = naive_inhibitor(*ref_inputs, case[6], signed)[0]
    ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
    tol = 1e-4 if dtype == torch.float32 else 3e-2  # float32 accumulation; inputs and outputs rounded to 16 bits
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol * ref.abs().max().item())
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad.double().cpu(), ref_grad, rtol=tol, atol=tol * ref_grad.abs().max().item())


@needs_triton
def test_gpu_check_script_runs_on_cpu_in_the_interpreter(tmp_path):
    """benchmarks/gpu_check.py, ready for a GPU, runs end to end on CPU tensors at tiny sizes (`--interpret`)."""
    out = tmp_path / "gpu_check.json"
    script = REPO_ROOT / "benchmarks" / "gpu_check.py"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--interpret", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["interpret"] and len(data["checks"]) == 4 and all(check["ok"] for check in data["checks"])
    assert {row["form"] for row in data["attention"]} == {"sdpa", "triton"}
    assert {row["model"] for row in data["model"]} == {"inhibi", "distilbert"}
    timings = [row[f] for row in data["attention"] for f in ("fwd", "fwd+bwd")]
    timings += [row[f] for row in data["model"] for f in ("forward", "distill_step")]
    assert all(entry["median_s"] > 0 for entry in timings)
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    assert "Not run on a GPU" in gpu_check.render(data)  # a CPU run never fills the GPU table
