"""Publishing to the Hub (issue 4): folder checks, the model card, one-commit upload and a round trip.

Also issue 17 (items 5, 11, 12, 18): the upload check runs the folder's own code as Hub users do, no machine path
reaches the card, exactly the validated files are uploaded, and the card states evaluation subsets and the student's
initialisation.

Nothing leaves the machine: `FakeHub` (tests/fake_hub.py) serves the Hub routes on 127.0.0.1. Uploads take the
plain LFS path (`HF_HUB_DISABLE_XET`), since the client picks Xet whenever `hf_xet` is installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from huggingface_hub import constants as hf_constants
from safetensors.torch import load_file, save_file
from transformers import BertTokenizer

from modeling_inhibidistilbert import AUTO_MAP, InhibiDistilBertConfig, InhibiDistilBertForSequenceClassification
from modeling_inhibidistilbert.hub import (
    CODE_FILES,
    FolderCheckError,
    build_model_card,
    check_folder,
    publish,
)
from modeling_inhibidistilbert.tasks import TASKS

from .fake_hub import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "inhibi-tests/tiny-sst2"
TOKEN = "hf_FakeSecretToken0123456789abcdefXYZ"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the a movie film was is great good bad awful not very this i it and of to , ! plot acting loved hated".split()
)
TEXTS = ["this movie was great !", "a bad , awful film", "i loved the acting but hated the plot"]
ALL_RESULTS = {
    "task_name": "sst2",
    "eval_accuracy": 0.8612385321100917,
    "eval_samples": 872,
    "train_samples": 67349,
    "train_runtime": 1234.5,
    "epoch": 3.0,
    "best_step": 6000,
}
TRAINING_ARGS = {
    "task_name": "sst2",
    "mode": "distill",
    "student_attention": "inhibitor",
    "model_name_or_path": "distilbert/distilbert-base-uncased",
    "teacher_name_or_path": "textattack/bert-base-uncased-SST-2",
    "learning_rate": 5e-05,
    "num_train_epochs": 3.0,
    "per_device_train_batch_size": 32,
    "max_seq_length": 128,
    "temperature": 2.0,
    "alpha_kd": 0.5,
    "alpha_ce": 0.5,
    "alpha_hidden": 0.1,
    "hidden_loss": "cosine",
    "seed": 42,
    "output_dir": "/home/someone/runs/sst2-inhibitor",
    "hub_token": TOKEN,
}
UPLOADED = {
    "README.md",
    "config.json",
    "configuration_inhibidistilbert.py",
    "modeling_inhibidistilbert.py",
    "kernels_inhibidistilbert.py",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "all_results.json",
    "eval_results.json",
}


def _load_cli():
    spec = importlib.util.spec_from_file_location("hub_upload", REPO_ROOT / "hub_upload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hub_upload = _load_cli()


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    """A tiny trained output folder as the distillation script leaves it (plus Trainer leftovers to skip)."""
    folder = tmp_path_factory.mktemp("trained") / "sst2-inhibitor"
    torch.manual_seed(0)
    config = InhibiDistilBertConfig(
        vocab_size=len(WORDS),
        dim=32,
        hidden_dim=64,
        n_layers=2,
        n_heads=4,
        max_position_embeddings=64,
        initializer_range=0.2,
        output_scale_init=0.5,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    InhibiDistilBertForSequenceClassification(config).save_pretrained(folder)
    assert all((folder / name).is_file() for name in CODE_FILES)  # save_pretrained writes every Hub file
    BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(folder)
    _write_json(folder / "all_results.json", ALL_RESULTS)
    _write_json(folder / "eval_results.json", {"eval_accuracy": ALL_RESULTS["eval_accuracy"]})
    _write_json(folder / "training_args.json", TRAINING_ARGS)
    (folder / "training_args.bin").write_bytes(b"not weights: Trainer's pickled arguments")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out").write_bytes(b"tensorboard")
    return folder


@pytest.fixture
def folder(trained_folder: Path, tmp_path: Path) -> Path:
    """A private copy that a test may break."""
    return Path(shutil.copytree(trained_folder, tmp_path / "run"))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)  # plain LFS: the fake Hub speaks no Xet
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # all traffic stays on 127.0.0.1
    with FakeHub() as server:
        yield server


def _front_matter(card_text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card_text, re.DOTALL)
    assert match, "the card must open with a YAML block"
    return yaml.safe_load(match.group(1))


def _snapshot(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _reference_outputs(folder: Path) -> dict:
    """Logits computed here with the installed package, as the fresh process will compute them from the Hub."""
    tokenizer = BertTokenizer.from_pretrained(folder)
    model = InhibiDistilBertForSequenceClassification.from_pretrained(folder).eval()
    model.config.inhibitor_implementation = "cdist"  # remote code never has the optional fused kernel
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the child runs with one thread too: same reduction order, same bits
    try:
        with torch.no_grad():
            batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
            singles = [tokenizer(text, return_tensors="pt") for text in TEXTS]
            return {
                "batch_logits": model(**batch).logits.tolist(),
                "single_logits": [model(**s).logits[0].tolist() for s in singles],
                "hidden": model.distilbert(**singles[0]).last_hidden_state.tolist(),
            }
    finally:
        torch.set_num_threads(threads)


CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):  # the package is installed (editable) in CI: hide it
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_inhibidistilbert", "inhibidistilbert_kernels"):
                raise ModuleNotFoundError(f"{name} is blocked in this process", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import modeling_inhibidistilbert  # noqa: F401
        package_importable = True
    except ModuleNotFoundError:
        package_importable = False

    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    torch.set_num_threads(1)
    repo_id, revision, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
    encoder = AutoModel.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
    classifier = pipeline("text-classification", model=repo_id, revision=revision, trust_remote_code=True)
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        singles = [tokenizer(text, return_tensors="pt") for text in texts]
        result = {
            "package_importable": package_importable,
            "modules": [type(m).__module__ for m in (model, encoder, classifier.model)],
            "id2label": {str(k): v for k, v in model.config.id2label.items()},
            "batch_logits": model(**batch).logits.tolist(),
            "single_logits": [model(**s).logits[0].tolist() for s in singles],
            "hidden": encoder(**singles[0]).last_hidden_state.tolist(),
            "pipeline": classifier(texts, top_k=None, function_to_apply="none"),
        }
    print("RESULT " + json.dumps(result))
    """
)


def _load_in_fresh_process(hub: FakeHub, revision: str, tmp_path: Path) -> dict:
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    (workdir / "child.py").write_text(CHILD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "fresh_hf_home"),
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    proc = subprocess.run(
        [sys.executable, "child.py", REPO_ID, revision, json.dumps(TEXTS)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_upload_then_load_from_hub_in_fresh_process_gives_the_same_logits(folder, hub, tmp_path, capfd):
    before = _snapshot(folder)
    assert hub_upload.main([str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]) == 0
    out = capfd.readouterr()
    assert TOKEN not in out.out + out.err
    assert hub.authorizations and set(hub.authorizations) == {f"Bearer {TOKEN}"}
    assert hub.requests[0] == ("POST", "/api/validate-yaml")  # the Hub checked the card before the repo was made

    # One commit holding the allow-listed files; weights through plain LFS; the folder untouched.
    repo = hub.repos[REPO_ID]
    assert len(repo.commits) == 2  # the repo's first commit (.gitattributes) and ours
    files = hub.files(REPO_ID)
    assert set(files) == UPLOADED | {".gitattributes"}
    assert repo.resolve("main").files["model.safetensors"].lfs_sha256 is not None
    assert sum(method == "PUT" for method, _ in hub.requests) == 1
    for name in UPLOADED - {"README.md"}:
        assert files[name] == (folder / name).read_bytes(), name
    config = json.loads(files["config.json"])
    assert config["auto_map"] == AUTO_MAP and config["id2label"] == {"0": "negative", "1": "positive"}
    assert _snapshot(folder) == before
    commit_oid = repo.refs["main"]
    assert f"revision={commit_oid!r}" in out.out

    expected = _reference_outputs(folder)
    loaded = _load_in_fresh_process(hub, commit_oid, tmp_path)
    assert loaded["package_importable"] is False
    assert all(module.startswith("transformers_modules.") for module in loaded["modules"]), loaded["modules"]
    assert loaded["id2label"] == {"0": "negative", "1": "positive"}
    # The fresh process runs the folder's code with `inhibitor_implementation="auto"` (on CPU without the package:
    # the compiled form where a compiler works, else cdist); the reference here runs the cdist form. Same function,
    # so equal up to float32 rounding; the pipeline there gives exactly that process's own logits.
    for name in ("batch_logits", "single_logits", "hidden"):
        torch.testing.assert_close(torch.tensor(loaded[name]), torch.tensor(expected[name]), rtol=1e-5, atol=1e-6)
    for scores, logits in zip(loaded["pipeline"], loaded["single_logits"]):
        assert {s["label"]: s["score"] for s in scores} == {"negative": logits[0], "positive": logits[1]}


@pytest.mark.parametrize(
    ("task", "metrics"),
    [
        ("sst2", {"eval_accuracy": 0.8612385321100917}),
        ("mrpc", {"eval_accuracy": 0.8186274509803921, "eval_f1": 0.8712121212121212}),
        ("stsb", {"eval_pearson": 0.8534, "eval_spearmanr": 0.851099}),
        ("cola", {"eval_matthews_correlation": 0.4011}),
        ("mnli", {"eval_accuracy": 0.8012, "eval_accuracy_mm": 0.8101}),
        ("imdb", {"eval_accuracy": 0.9204}),
    ],
)
def test_card_yaml_parses_and_model_index_equals_folder_metrics(folder, tmp_path, task, metrics):
    run = {k: v for k, v in ALL_RESULTS.items() if not k.startswith("eval_")}
    run["eval_samples"] = TASKS[task].eval_size  # the full split: no subset to state
    results = {**run, "task_name": task, "eval_loss": 0.31, "eval_runtime": 4.2, **metrics}
    _write_json(folder / "all_results.json", results)
    teacher = {**results, **{k: v + 0.05 for k, v in metrics.items()}}
    baseline = {**results, **{k: v + 0.01 for k, v in metrics.items()}}
    _write_json(tmp_path / "teacher.json", teacher)

    card = build_model_card(folder, REPO_ID, teacher_results=tmp_path / "teacher.json", baseline_results=baseline)
    text = str(card)
    metadata = _front_matter(text)
    assert metadata["license"] == "apache-2.0" and metadata["language"] == "en"
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-classification"
    assert "inhibitor-attention" in metadata["tags"]
    assert metadata["base_model"] == TRAINING_ARGS["model_name_or_path"]
    assert metadata["datasets"] == ["stanfordnlp/imdb" if task == "imdb" else "nyu-mll/glue"]

    [entry] = metadata["model-index"]
    assert entry["name"] == REPO_ID.split("/")[1]
    found = {}
    for result in entry["results"]:
        assert result["dataset"].get("config") == TASKS[task].hub_config  # IMDB has none
        for metric in result["metrics"]:
            found[(result["dataset"]["split"], metric["type"])] = metric["value"]
    split = {"mnli": "validation_matched", "imdb": "test"}.get(task, "validation")
    names = {
        "eval_accuracy": (split, "accuracy"),
        "eval_accuracy_mm": ("validation_mismatched", "accuracy"),
        "eval_f1": (split, "f1"),
        "eval_pearson": (split, "pearsonr"),
        "eval_spearmanr": (split, "spearmanr"),
        "eval_matthews_correlation": (split, "matthews_correlation"),
    }
    assert found == {names[key]: value for key, value in metrics.items()}
    reparsed = ModelCard(text).data.eval_results  # huggingface_hub reads the model-index back
    assert sorted(r.metric_value for r in reparsed) == sorted(metrics.values())

    body = card.text
    for needle in (
        "trust_remote_code=True",
        "AutoModelForSequenceClassification.from_pretrained",
        'pipeline("text-classification"',
        "Pin the revision",
        "## Fine-tuning",
        "## Attention implementations",
        '"sdpa"',
        "## Limitations",
        "arXiv:2310.02041",
        "arXiv:2503.15983",
        "| `temperature` | `2.0` |",
        "| `alpha_hidden` | `0.1` |",
        TRAINING_ARGS["teacher_name_or_path"],
    ):
        assert needle in body, needle
    first = next(iter(metrics))
    assert f"| {metrics[first]:.4f} | {teacher[first]:.4f} | {baseline[first]:.4f} | -0.0100 |" in body
    assert TOKEN not in text and "/home/someone" not in text


def test_card_without_results_has_no_model_index(folder):
    (folder / "all_results.json").unlink()
    card = build_model_card(folder, REPO_ID)
    assert "model-index" not in _front_matter(str(card))
    assert "no `all_results.json`" in card.text


def test_card_refuses_comparison_with_another_task(folder):
    with pytest.raises(ValueError, match="teacher_results are for task 'mrpc'"):
        build_model_card(folder, REPO_ID, teacher_results={"task_name": "mrpc", "eval_accuracy": 0.8})


def test_dry_run_lists_every_file_with_its_size_and_uploads_nothing(folder, hub, capfd):
    before = _snapshot(folder)
    args = [str(folder), "--repo_id", REPO_ID, "--dry_run", "--token", TOKEN, "--endpoint", hub.url]
    assert hub_upload.main(args) == 0
    out = capfd.readouterr().out
    assert hub.requests == []
    result = publish(folder, REPO_ID, dry_run=True, endpoint=hub.url, token=TOKEN)
    assert hub.requests == []
    assert {name for name, _ in result.files} == UPLOADED
    for name, size in result.files:
        expected = len(str(result.card).encode()) if name == "README.md" else (folder / name).stat().st_size
        assert size == expected
        assert name in out and f"({size} bytes)" in out
    assert "model-index:" in out and TOKEN not in out
    assert {"training_args.json", "training_args.bin", "runs/"} <= set(result.report.skipped_files)
    assert _snapshot(folder) == before
    # the last check loaded the folder's own code files, as trust_remote_code does, with the folder's settings
    assert result.report.remote_module.startswith("transformers_modules.")
    assert result.report.remote_implementation == "auto"


def _remove(*names):
    def breaker(folder: Path) -> None:
        for name in names:
            (folder / name).unlink()

    return breaker


def _edit_config(**changes):
    def breaker(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            if value is None:
                config.pop(key)
            else:
                config[key] = value
        _write_json(folder / "config.json", config)

    return breaker


def _edit_weights(edit):
    def breaker(folder: Path) -> None:
        state = load_file(folder / "model.safetensors")
        edit(state)
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})

    return breaker


def _add_pickle(folder: Path) -> None:
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")


def _stale_code(folder: Path) -> None:
    with open(folder / "modeling_inhibidistilbert.py", "a", encoding="utf-8") as file:
        file.write("\n# edited by hand\n")


def _resize_classifier(state):
    state["classifier.weight"], state["classifier.bias"] = torch.zeros(3, 32), torch.zeros(3)


def _rename_key(state):
    state["pre_classifier.weights"] = state.pop("pre_classifier.weight")


Q_LIN = "distilbert.transformer.layer.0.attention.q_lin.weight"


def _nan_q_lin(state):
    state[Q_LIN] = torch.full_like(state[Q_LIN], float("nan"))


def _nan_weights(state):
    state["pre_classifier.weight"] = torch.full_like(state["pre_classifier.weight"], float("nan"))


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [
        pytest.param(
            _remove("modeling_inhibidistilbert.py"), "modeling_inhibidistilbert.py are missing", id="missing-code"
        ),
        pytest.param(_stale_code, "differ from the installed package", id="stale-code"),
        pytest.param(_add_pickle, r"pickle weights found \(pytorch_model.bin\)", id="pickle-weights"),
        pytest.param(lambda f: (f / "config.json").write_text("{broken"), "not valid JSON", id="config-not-json"),
        pytest.param(_edit_config(n_heads=5), "config.json does not load", id="config-invalid-value"),
        pytest.param(_edit_config(auto_map=None), "auto_map lacks", id="config-no-auto-map"),
        pytest.param(_edit_config(model_type="distilbert"), "model_type 'distilbert'", id="config-other-model"),
        pytest.param(_edit_config(inhibitor_implementation="fused"), "fused", id="config-needs-kernel"),
        pytest.param(_remove("model.safetensors"), "no safetensors weights", id="no-weights"),
        pytest.param(_edit_weights(_resize_classifier), "mismatched keys: classifier", id="weights-mismatched"),
        pytest.param(
            _edit_weights(_rename_key), "missing keys: pre_classifier.weight; unexpected keys", id="weights-other-keys"
        ),
        pytest.param(_remove("tokenizer.json", "tokenizer_config.json"), "no tokenizer", id="no-tokenizer"),
        pytest.param(
            _edit_weights(_nan_weights), r"not finite: pre_classifier\.weight \(1024 of 1024", id="weights-nan"
        ),
        pytest.param(_edit_weights(_nan_q_lin), rf"not finite: {Q_LIN}", id="weights-nan-q-lin"),
        pytest.param(
            _remove("kernels_inhibidistilbert.py"), "kernels_inhibidistilbert.py are missing", id="no-kernels"
        ),
        pytest.param(_edit_config(inhibitor_implementation="triton"), "triton", id="config-needs-cuda"),
    ],
)
def test_broken_folder_is_refused_with_the_reason(folder, breaker, reason):
    breaker(folder)
    with pytest.raises(FolderCheckError, match=reason) as info:
        check_folder(folder)
    assert info.value.fix and "Fix:" in str(info.value)


def test_refused_folder_uploads_nothing(folder, hub, capfd):
    _add_pickle(folder)
    assert hub_upload.main([str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]) == 2
    err = capfd.readouterr().err
    assert "Refusing to publish" in err and "pickle weights" in err and TOKEN not in err
    with pytest.raises(FolderCheckError):
        publish(folder, REPO_ID, endpoint=hub.url, token=TOKEN)
    assert hub.requests == []


@pytest.mark.parametrize(
    ("route", "status"),
    [("lfs_upload", 403), ("commit", 500)],
    ids=["weights-upload-refused", "commit-server-error"],
)
def test_server_error_mid_upload_leaves_clear_message_and_no_partial_state(folder, hub, capfd, route, status):
    before = _snapshot(folder)
    hub.fail(route, status)
    args = [str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]
    assert hub_upload.main(args) == 1
    err = capfd.readouterr().err
    assert f"Upload of {folder} to {REPO_ID} failed" in err and str(status) in err
    assert "Nothing was committed" in err and TOKEN not in err
    assert set(hub.files(REPO_ID)) == {".gitattributes"}  # the repository kept its previous state
    assert _snapshot(folder) == before  # and so did the folder

    assert hub_upload.main(args) == 0  # the same command succeeds once the cause is gone
    assert set(hub.files(REPO_ID)) == UPLOADED | {".gitattributes"}
    puts = sum(method == "PUT" for method, _ in hub.requests)
    assert puts == (2 if route == "lfs_upload" else 1)  # weights uploaded before the failure are not sent twice


def test_create_pr_and_revision_commit_elsewhere_than_main(folder, hub):
    result = publish(folder, REPO_ID, endpoint=hub.url, token=TOKEN, create_pr=True, commit_message="Add model")
    assert result.pr_url.endswith("/discussions/1")
    assert set(hub.files(REPO_ID, "refs/pr/1")) == UPLOADED | {".gitattributes"}
    assert set(hub.files(REPO_ID)) == {".gitattributes"}
    assert hub.repos[REPO_ID].commits[result.commit_oid].message == "Add model"

    result = publish(folder, REPO_ID, endpoint=hub.url, token=TOKEN, revision="v1")
    assert set(hub.files(REPO_ID, "v1")) == UPLOADED | {".gitattributes"}
    assert set(hub.files(REPO_ID)) == {".gitattributes"}


def test_card_the_hub_rejects_is_refused_before_anything_is_created(folder, hub, capfd):
    hub.fail("validate_yaml", 400, "model-index: metric value must be a number")
    args = [str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]
    assert hub_upload.main(args) == 2
    err = capfd.readouterr().err
    assert "the Hub rejects the generated model card" in err and "metric value must be a number" in err
    assert hub.write_requests() == [("POST", "/api/validate-yaml")] and REPO_ID not in hub.repos


def test_cli_private_revision_and_commit_message(folder, hub):
    args = [str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]
    assert hub_upload.main([*args, "--private", "--revision", "v1", "--commit_message", "Add the SST-2 student"]) == 0
    repo = hub.repos[REPO_ID]
    assert repo.private is True
    assert set(hub.files(REPO_ID, "v1")) == UPLOADED | {".gitattributes"} and set(hub.files(REPO_ID)) == {
        ".gitattributes"
    }
    assert repo.commits[repo.refs["v1"]].message == "Add the SST-2 student"
    public = "inhibi-tests/public"
    assert hub_upload.main([str(folder), "--repo_id", public, "--token", TOKEN, "--endpoint", hub.url]) == 0
    assert hub.repos[public].private is False


def test_token_and_endpoint_come_from_the_environment(folder, hub, tmp_path):
    """No --token, no --endpoint: huggingface_hub's usual sources (HF_TOKEN, HF_ENDPOINT), in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN=TOKEN,
        HF_HOME=str(tmp_path / "cli_hf_home"),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hub_upload.py"), str(folder), "--repo_id", REPO_ID],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert TOKEN not in proc.stdout + proc.stderr
    assert set(hub.authorizations) == {f"Bearer {TOKEN}"}
    assert set(hub.files(REPO_ID)) == UPLOADED | {".gitattributes"}


@pytest.mark.parametrize("has_mlm_head", [True, False])
def test_card_of_a_task_agnostic_run_describes_its_recipe(folder, has_mlm_head):
    args = {
        "task_name": "general",
        "teacher_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
        "model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
        "student_attention": "inhibitor",
        "text_sources": "sst2,imdb",
        "alpha_kd": 5.0,
        "alpha_mlm": 2.0,
        "alpha_hidden": 1.0,
        "hidden_loss": "cosine",
        "has_mlm_head": has_mlm_head,
    }
    _write_json(folder / "training_args.json", args)
    _write_json(folder / "all_results.json", {"task_name": "general", "eval_loss": 0.42, "eval_loss_hidden": 0.42})
    card = build_model_card(folder, REPO_ID)
    metadata = _front_matter(str(card))
    assert "model-index" not in metadata and "knowledge-distillation" in metadata["tags"]
    body = card.text
    assert "This task-agnostic run has no task metrics" in body and "(`eval_loss` = 0.4200)" in body
    assert "task-agnostic knowledge distillation from `sentence-transformers/all-MiniLM-L6-v2`" in body
    assert "| `text_sources` | `sst2,imdb` |" in body and "| `alpha_mlm` | `2.0` |" in body
    if has_mlm_head:
        assert "masked-LM loss" in body and "on the masked positions" in body
    else:
        assert "hidden-state alignment alone" in body and "masked-LM loss" not in body


def test_card_of_an_attention_transfer_run_describes_it(folder):
    args = {
        "task_name": "general",
        "objective": "attention_transfer",
        "teacher_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
        "model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
        "student_attention": "inhibitor",
        "text_sources": "sst2:10000,stsb",
        "hidden_loss": "cosine",
        "has_mlm_head": False,
    }
    _write_json(folder / "training_args.json", args)
    _write_json(folder / "all_results.json", {"task_name": "general", "eval_loss": 0.31, "eval_loss_layer_0": 0.3})
    body = build_model_card(folder, REPO_ID).text
    assert "fitted to the softmax attention of `sentence-transformers/all-MiniLM-L6-v2`" in body
    assert "Attention transfer on unlabeled text" in body and "| `objective` | `attention_transfer` |" in body
    assert "hidden-state alignment" not in body and "knowledge distillation from" not in body


# Issue 17 item 5: the upload check runs the path Hub users run.


def _overflowing_scale(state):
    """Finite weights whose forward overflows: eta = 3e38 in the first layer makes the attention output infinite."""
    key = "distilbert.transformer.layer.0.attention.output_scale"
    state[key] = torch.full_like(state[key], 3e38)


def test_upload_check_runs_the_folder_code_not_the_installed_package(folder, monkeypatch):
    """A forward that is finite only with the installed package (here: its outputs sanitised, as the fused kernel once
    dropped NaN) must not pass: the check loads the folder's own code in a process where the package is unimportable."""
    _edit_weights(_overflowing_scale)(folder)
    forward = InhibiDistilBertForSequenceClassification.forward

    def sanitised(self, *args, **kwargs):
        output = forward(self, *args, **kwargs)
        output.logits = torch.nan_to_num(output.logits, nan=0.0, posinf=0.0, neginf=0.0)
        return output

    monkeypatch.setattr(InhibiDistilBertForSequenceClassification, "forward", sanitised)
    with pytest.raises(FolderCheckError, match=r"as Hub users load it.*NaN or infinite values \(logits\)"):
        check_folder(folder)


def test_folder_with_nan_attention_weights_fails_hub_upload(folder, hub, capfd):
    _edit_weights(_nan_q_lin)(folder)
    assert hub_upload.main([str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]) == 2
    err = capfd.readouterr().err
    assert f"the weights are not finite: {Q_LIN} (1024 of 1024 values NaN or infinite)" in err
    assert hub.requests == []


# Issue 17 item 12: validate exactly the files that are uploaded.


def _save_sharded(folder: Path) -> list[str]:
    """The same model saved in shards (as an earlier save into the folder would leave them); returns their names."""
    model = InhibiDistilBertForSequenceClassification.from_pretrained(folder)
    sharded = folder.parent / "sharded"
    model.save_pretrained(sharded, max_shard_size="20KB")
    names = sorted(p.name for p in sharded.glob("model*.safetensors*"))
    assert "model.safetensors.index.json" in names and len(names) > 2
    for name in names:
        shutil.copy2(sharded / name, folder / name)
    return names


def test_stale_sharded_weights_next_to_model_safetensors_are_refused(folder, hub, capfd):
    _save_sharded(folder)
    with pytest.raises(FolderCheckError, match="two sets of weights: model.safetensors and model.safetensors.index"):
        check_folder(folder)
    assert hub_upload.main([str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]) == 2
    assert "delete the other" in capfd.readouterr().err and hub.requests == []


def test_sharded_folder_uploads_exactly_the_validated_shards(folder):
    shards = _save_sharded(folder)
    (folder / "model.safetensors").unlink()
    (folder / "model-stray.safetensors").write_bytes((folder / shards[0]).read_bytes())  # not in the index
    result = publish(folder, REPO_ID, dry_run=True)
    uploaded = {name for name, _ in result.files}
    assert uploaded == (UPLOADED - {"model.safetensors"}) | set(shards)
    assert result.report.weight_files == [
        "model.safetensors.index.json",
        *sorted(set(shards) - {"model.safetensors.index.json"}),
    ]
    assert "model-stray.safetensors" in result.report.skipped_files
    assert any("model-stray.safetensors" in w for w in result.report.warnings)


# Issue 17 item 11: no machine path reaches the card or the Hub's validation call.


def test_card_and_validation_call_hold_no_local_paths(folder, hub, tmp_path):
    import tempfile

    home, tmp, parent = str(Path.home()), tempfile.gettempdir(), str(REPO_ROOT.parent)
    args = {
        **TRAINING_ARGS,
        "model_name_or_path": f"{REPO_ROOT}/outputs/general/transfer-inhibitor-seed42",
        "teacher_name_or_path": f"{home}/models/teacher",
        "train_files": [f"{home}/corpus/a.txt", f"{tmp}/b.txt", "relative/c.txt"],
        "text_sources": f"sst2:1000,{parent}/shared/data/extra.txt",
        "recipe": f"{tmp}/recipes/sst2.yaml",
        "recipe_values": {
            "data_dir": f"{parent}/shared/data",
            "nested": {"files": ["C:\\Users\\me\\d.txt", f"{home}/e"]},
        },
        "layer_map": [[1, 2], [3, 4]],
        "notes": {"api_token": TOKEN, "url": "https://huggingface.co/nyu-mll/glue"},
    }
    _write_json(folder / "training_args.json", args)
    assert hub_upload.main([str(folder), "--repo_id", REPO_ID, "--token", TOKEN, "--endpoint", hub.url]) == 0
    readme = hub.files(REPO_ID)["README.md"].decode("utf-8")
    assert hub.validated and set(hub.validated) == {readme}  # every validation call got the card as uploaded
    sent = hub.validated[0]
    for text in (sent, str(build_model_card(folder, REPO_ID))):
        for needle in (home, tmp, parent, str(REPO_ROOT), str(folder), "Users", TOKEN):
            assert needle not in text, needle
        assert '`["(local) a.txt", "(local) b.txt", "relative/c.txt"]`' in text
        assert "`sst2:1000,(local) extra.txt`" in text and "(local) transfer-inhibitor-seed42" in text
        assert '"nested": {"files": ["(local) d.txt", "(local) e"]}' in text
        assert "https://huggingface.co/nyu-mll/glue" in text and "api_token" not in text
        assert "| `layer_map` | `[[1, 2], [3, 4]]` |" in text


# Issue 17 item 18: the card says what was evaluated, what saved the folder and how the student started.


@pytest.mark.parametrize(
    ("rows", "seed", "split", "name"),
    [
        (872, None, "validation", "GLUE SST-2"),
        (64, None, "validation[:64]", "GLUE SST-2 (64 of 872 validation rows)"),
        (64, 3, "validation (64 random rows, seed 3)", "GLUE SST-2 (64 of 872 validation rows)"),
    ],
    ids=["full", "first-rows", "random-rows"],
)
def test_model_index_states_an_evaluation_subset(folder, rows, seed, split, name):
    _write_json(folder / "all_results.json", {**ALL_RESULTS, "eval_samples": rows})
    _write_json(folder / "training_args.json", {**TRAINING_ARGS, "subset_seed": seed})
    card = build_model_card(folder, REPO_ID)
    [result] = _front_matter(str(card))["model-index"][0]["results"]
    assert result["dataset"]["split"] == split and result["dataset"]["name"] == name
    if rows < 872:
        assert f"{rows} of the 872 rows of validation" in card.text and "| Evaluation rows | 64 |" in card.text
    else:
        assert "all 872 rows of validation" in card.text


def test_subset_row_counts_come_from_the_cap_when_results_lack_them(folder):
    results = {"task_name": "mnli", "eval_accuracy": 0.61, "eval_accuracy_mm": 0.62}  # an older run: no eval_samples
    _write_json(folder / "all_results.json", results)
    _write_json(folder / "training_args.json", {**TRAINING_ARGS, "task_name": "mnli", "max_eval_samples": 100})
    splits = {
        r["dataset"]["split"]
        for r in _front_matter(str(build_model_card(folder, REPO_ID)))["model-index"][0]["results"]
    }
    assert splits == {"validation_matched[:100]", "validation_mismatched[:100]"}


def test_card_of_a_trainer_folder_says_what_it_is_and_invents_nothing(folder):
    for name in ("all_results.json", "eval_results.json", "training_args.json"):
        (folder / name).unlink()  # what Trainer.save_model leaves: config, weights, tokenizer, training_args.bin
    card = build_model_card(folder, REPO_ID)
    assert "model-index" not in _front_matter(str(card))
    text = card.text
    assert "saved by transformers' `Trainer`" in text and "reports no evaluation results and no training recipe" in text
    assert "no evaluation results are reported here" in text and "| Metric |" not in text
    assert "Initialisation: not recorded in this folder" in text
    assert "knowledge distillation" not in text and "Hyperparameter" not in text
    assert "trained for a purpose this folder does not record" in text


def _source_folder(path: Path, model_type: str, source_args: dict | None = None) -> Path:
    path.mkdir(parents=True)
    _write_json(path / "config.json", {"model_type": model_type})
    if source_args is not None:
        _write_json(path / "training_args.json", source_args)
    return path


@pytest.mark.parametrize(
    ("init", "expected"),
    [
        ("bert", "a softmax-attention model\n  (model type `bert`, mapped onto DistilBERT's layout)"),
        ("distilbert", "copied one to one from the DistilBERT `(local) source`"),
        ("attention_transfer", "fitted, layer by layer, to the softmax attention of a dot-product model"),
        ("task_agnostic", "trained by task-agnostic\n  knowledge distillation"),
        ("random", "started from random weights"),
        ("recorded", "a softmax-attention model\n  (model type `bert`"),
        ("hub-id", "(its model type is not recorded\n  in this folder)"),
    ],
)
def test_limitations_state_the_students_real_initialisation(folder, tmp_path, init, expected):
    args = dict(TRAINING_ARGS)
    source = tmp_path / "source"
    if init in ("bert", "distilbert"):
        args["model_name_or_path"] = str(_source_folder(source, init))
    elif init in ("attention_transfer", "task_agnostic"):
        objective = "attention_transfer" if init == "attention_transfer" else "distill"
        args["model_name_or_path"] = str(
            _source_folder(source, "inhibidistilbert", {"task_name": "general", "objective": objective})
        )
    elif init == "random":
        args["student_init"] = "random"
    elif init == "recorded":  # the training script's own record; the source folder is gone
        args["model_name_or_path"] = str(tmp_path / "gone")
        args["student_init"] = {"source_model_type": "bert", "source_objective": None}
    _write_json(folder / "training_args.json", args)
    limitations = build_model_card(folder, REPO_ID).text.split("## Limitations")[1].split("## Citation")[0]
    assert expected in limitations
    assert str(tmp_path) not in limitations and "3.2% lower" in limitations


# Issue 15 item 4: one template, the task registry, current wording.


def test_card_reads_the_task_registry_and_one_template(folder, monkeypatch):
    import dataclasses

    from modeling_inhibidistilbert import hub
    from modeling_inhibidistilbert.hub import card as card_module

    assert not hasattr(hub, "TASKS") and not hasattr(card_module, "METRICS_KEYS")
    assert card_module.TEMPLATE.is_file() and card_module.TEMPLATE.parent == Path(hub.__file__).parent
    monkeypatch.setitem(TASKS, "sst2", dataclasses.replace(TASKS["sst2"], pretty_name="Stanford Sentiment (test)"))
    card = build_model_card(folder, REPO_ID)
    [result] = _front_matter(str(card))["model-index"][0]["results"]
    assert result["dataset"]["name"] == "Stanford Sentiment (test)"
    assert "fine-tuned for Stanford Sentiment (test)" in card.text


def test_card_describes_every_attention_implementation_and_ships_three_code_files(folder):
    from modeling_inhibidistilbert.configuration_inhibidistilbert import INHIBITOR_IMPLEMENTATIONS
    from modeling_inhibidistilbert.hub.card import IMPLEMENTATIONS

    text = build_model_card(folder, REPO_ID).text
    section = text.split("## Attention implementations")[1].split("## Limitations")[0]
    for name in INHIBITOR_IMPLEMENTATIONS:
        assert IMPLEMENTATIONS.get(name), f"the card has no description of inhibitor_implementation={name!r}"
        assert f'| `"{name}"` | {IMPLEMENTATIONS[name]} |' in section
    assert "`kernels_inhibidistilbert.py`" in text and "two code files" not in text and "two Python files" not in text
    assert all(f"`{name}`" in text for name in CODE_FILES)


def test_card_template_ships_with_the_package():
    """setup.cfg's package_data must include the template, or an installed package cannot build a card."""
    import configparser
    import fnmatch

    from modeling_inhibidistilbert.hub.card import TEMPLATE

    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg")
    patterns = [p.strip() for p in parser["options.package_data"]["*"].split(",")]
    assert any(fnmatch.fnmatch(TEMPLATE.name, p) for p in patterns), (TEMPLATE.name, patterns)
