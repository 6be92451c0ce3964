"""Load a model folder as Hub users do and run it once: the last of `check_folder`'s checks, run in a fresh process.

    python -I remote_check.py FOLDER AUTO_CLASS RESULT_JSON

This package and its compiled kernels (`modeling_inhibidistilbert`, `inhibidistilbert_kernels`) are made
unimportable first, so the model comes from the folder's own code files through `trust_remote_code=True`, with the
configuration it was saved with (`inhibitor_implementation`, usually `auto`): the code and the implementation that a
machine without the package runs. A padded batch of two texts goes through the tokenizer and the model; every output
tensor must be finite. The result (JSON) names the module of the loaded class, the implementation setting, and the
error if any. Standard library, torch and transformers only: nothing from this package is imported here.
"""

import importlib.abc
import json
import sys

BLOCKED = ("modeling_inhibidistilbert", "inhibidistilbert_kernels")
TEXTS = ["Inhibitor attention replaces the softmax with distances.", "A short one."]


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked: the check runs the folder's code only", name=name)
        return None


def _run(folder: str, auto_class: str) -> dict:
    import torch
    import transformers

    report: dict = {}
    try:
        import modeling_inhibidistilbert  # noqa: F401

        report["package_importable"] = True
    except ModuleNotFoundError:
        report["package_importable"] = False
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    except Exception as err:  # reported to the parent, which names the folder and the fix
        return {**report, "error": f"it does not load: {type(err).__name__}: {err}"}
    report.update(module=type(model).__module__, implementation=getattr(model.config, "inhibitor_implementation", None))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    largest = int(batch["input_ids"].max())
    if largest >= model.config.vocab_size:
        return {
            **report,
            "error": f"the tokenizer produces id {largest} but config.vocab_size={model.config.vocab_size}",
        }
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if auto_class == "AutoModelForMultipleChoice":  # [batch, choices, length]
        inputs = {k: v[:, None].expand(-1, 2, -1) for k, v in inputs.items()}
    try:
        with torch.no_grad():
            outputs = model(**inputs)
    except Exception as err:
        return {**report, "error": f"the forward pass fails: {type(err).__name__}: {err}"}
    bad = [k for k, v in outputs.items() if isinstance(v, torch.Tensor) and not bool(torch.isfinite(v).all())]
    if bad:
        return {**report, "error": f"the output holds NaN or infinite values ({', '.join(bad)})"}
    return report


def main(argv: list[str]) -> int:
    folder, auto_class, result_file = argv
    sys.meta_path.insert(0, _Blocker())
    result = _run(folder, auto_class)
    with open(result_file, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
