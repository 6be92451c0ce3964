"""Hub-native loading: save_pretrained writes code + auto_map; a process without our package loads it all."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

import modeling_inhibidistilbert
from modeling_inhibidistilbert import (
    AUTO_MAP,
    InhibiDistilBertForMaskedLM,
    InhibiDistilBertForSequenceClassification,
)

from .conftest import perturb_scalars

PACKAGE_DIR = Path(modeling_inhibidistilbert.__file__).parent
SHIPPED = ("configuration_inhibidistilbert.py", "modeling_inhibidistilbert.py", "kernels_inhibidistilbert.py")
SENTENCES = ["the movie was very good .", "boring plot , awful acting"]

# Run in the child before anything else: our packages cannot be imported there, as on a user's machine.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_inhibidistilbert", "inhibidistilbert_kernels"):
                raise ModuleNotFoundError(f"blocked: {name}")
            return None
    sys.meta_path.insert(0, _Block())
    try:
        import modeling_inhibidistilbert
        raise SystemExit("the package should not be importable here")
    except ModuleNotFoundError:
        pass
    """
)


def run_isolated(script: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    work = tmp_path / "child"
    work.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((work / "result.json").read_text())


def save_trained_classifier(folder: Path, config, tokenizer) -> InhibiDistilBertForSequenceClassification:
    torch.manual_seed(0)
    model = InhibiDistilBertForSequenceClassification(config).eval()
    perturb_scalars(model)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def test_save_pretrained_writes_code_auto_map_and_safetensors(tmp_path, tiny_config):
    """All three code files: transformers copies the model file's sibling imports (the config and the fast paths)."""
    InhibiDistilBertForSequenceClassification(tiny_config).save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", *SHIPPED} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["model_type"] == "inhibidistilbert"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    for name in SHIPPED:  # the files shipped are exactly the package's
        assert (tmp_path / name).read_text() == (PACKAGE_DIR / name).read_text()


def test_round_trip_gives_identical_logits(tmp_path, tiny_config, tiny_tokenizer):
    model = save_trained_classifier(tmp_path, tiny_config, tiny_tokenizer)
    batch = tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    for loader in (InhibiDistilBertForSequenceClassification, AutoModelForSequenceClassification):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    state = load_file(tmp_path / "model.safetensors")
    assert torch.equal(
        state["distilbert.transformer.layer.1.attention.shift"], model.distilbert.transformer.layer[1].attention.shift
    )
    assert isinstance(AutoConfig.from_pretrained(tmp_path), type(model.config))


def test_local_auto_classes_need_no_trust_remote_code(tmp_path, tiny_config):
    InhibiDistilBertForMaskedLM(tiny_config).save_pretrained(tmp_path)
    assert isinstance(AutoModelForMaskedLM.from_pretrained(tmp_path), InhibiDistilBertForMaskedLM)
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "InhibiDistilBertModel"


def test_fresh_process_without_package_loads_models_and_pipelines(tmp_path, tiny_config, tiny_tokenizer):
    classifier_dir, mlm_dir = tmp_path / "classifier", tmp_path / "mlm"
    model = save_trained_classifier(classifier_dir, tiny_config, tiny_tokenizer)
    torch.manual_seed(1)
    mlm = InhibiDistilBertForMaskedLM(tiny_config).eval()
    mlm.save_pretrained(mlm_dir)
    tiny_tokenizer.save_pretrained(mlm_dir)
    batch = tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    expected = model(**batch).logits
    expected_features = model.distilbert(**batch).last_hidden_state

    result = run_isolated(
        f"""
        import json, torch
        from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForMultipleChoice,
            AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoModelForTokenClassification,
            AutoTokenizer, pipeline)
        cls_dir, mlm_dir = {str(classifier_dir)!r}, {str(mlm_dir)!r}
        tok = AutoTokenizer.from_pretrained(cls_dir)
        model = AutoModelForSequenceClassification.from_pretrained(cls_dir, trust_remote_code=True).eval()
        batch = tok({SENTENCES!r}, padding=True, return_tensors="pt")
        out = {{"logits": model(**batch).logits.tolist(), "module": type(model).__module__}}
        out["features"] = AutoModel.from_pretrained(cls_dir, trust_remote_code=True)(**batch).last_hidden_state.tolist()
        for auto in (AutoModelForMaskedLM, AutoModelForTokenClassification, AutoModelForQuestionAnswering,
                     AutoModelForMultipleChoice, AutoConfig):
            out.setdefault("classes", []).append(type(auto.from_pretrained(mlm_dir, trust_remote_code=True)).__name__)
        clf = pipeline("text-classification", model=cls_dir, trust_remote_code=True)
        out["text_classification"] = clf({SENTENCES!r})
        fill = pipeline("fill-mask", model=mlm_dir, trust_remote_code=True)
        out["fill_mask"] = fill("the movie was [MASK] .", top_k=3)
        feats = pipeline("feature-extraction", model=cls_dir, trust_remote_code=True)
        out["feature_shape"] = torch.tensor(feats({SENTENCES[0]!r})).shape[-1]
        json.dump(out, open("result.json", "w"))
        """,
        tmp_path,
    )
    assert result["module"].startswith("transformers_modules.")  # the copied remote code, not our package
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(result["features"]), expected_features, rtol=0, atol=1e-5)
    assert result["classes"] == [
        "InhibiDistilBertForMaskedLM",
        "InhibiDistilBertForTokenClassification",
        "InhibiDistilBertForQuestionAnswering",
        "InhibiDistilBertForMultipleChoice",
        "InhibiDistilBertConfig",
    ]
    labels = [item["label"] for item in result["text_classification"]]
    assert set(labels) <= {"negative", "positive"}
    assert labels == [tiny_config.id2label[i] for i in expected.argmax(-1).tolist()]
    assert len(result["fill_mask"]) == 3 and all("token_str" in item for item in result["fill_mask"])
    assert result["feature_shape"] == tiny_config.dim


def test_fresh_config_of_the_remote_class_builds_a_random_model_without_the_package(tmp_path, tiny_config):
    """`AutoModel.from_config(ConfigClass(...), trust_remote_code=True)` in a process that has loaded only the config
    class: failed before (a fresh config's auto_map sent transformers to repo '')."""
    folder = tmp_path / "model"
    InhibiDistilBertForMaskedLM(tiny_config).save_pretrained(folder)
    result = run_isolated(
        f"""
        import json
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
        config_class = type(AutoConfig.from_pretrained({str(folder)!r}, trust_remote_code=True))
        fresh = config_class(vocab_size=64, dim=16, n_heads=2, n_layers=1, hidden_dim=32)
        models = [auto.from_config(fresh, trust_remote_code=True) for auto in (AutoModel, AutoModelForSequenceClassification)]
        fresh.save_pretrained("saved")
        json.dump({{"modules": [type(m).__module__ for m in models], "names": [type(m).__name__ for m in models],
                    "saved": open("saved/config.json").read()}}, open("result.json", "w"))
        """,
        tmp_path,
    )
    assert all(module.startswith("transformers_modules.") for module in result["modules"])
    assert result["names"] == ["InhibiDistilBertModel", "InhibiDistilBertForSequenceClassification"]
    assert str(folder) not in result["saved"] and json.loads(result["saved"])["auto_map"] == AUTO_MAP


def _imported_modules(path: Path) -> list[tuple[str, bool]]:
    """(module, guarded) for every import; guarded = inside a try whose handler catches ImportError."""
    tree = ast.parse(path.read_text())
    guarded_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            guarded_nodes |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in guarded_nodes) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), id(node) in guarded_nodes))
    return found


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_import_only_torch_transformers_and_their_siblings(name):
    """Unguarded: the standard library, torch, transformers and the sibling files; guarded (inside try/except
    ImportError): only the optional kernel package and Triton."""
    allowed_roots = {"torch", "transformers"} | set(sys.stdlib_module_names)
    for module, guarded in _imported_modules(PACKAGE_DIR / name):
        root = module.split(".")[0]
        if module.startswith("."):
            assert module in {"." + Path(sibling).stem for sibling in SHIPPED}, module
        elif guarded:  # optional: never required
            assert root in ("inhibidistilbert_kernels", "triton"), module
        else:
            assert root in allowed_roots, f"{name} imports {module}"


def test_shipped_code_loads_weights_only_from_safetensors():
    for name in SHIPPED:
        source = (PACKAGE_DIR / name).read_text()
        assert "torch.load" not in source and "pickle" not in source
