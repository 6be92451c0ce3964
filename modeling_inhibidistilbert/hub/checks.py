"""Folder checks: refuse any folder that would not load and run from the Hub, and name the files that are uploaded.

`check_folder` validates exactly the files of the upload: they are linked into a staging folder, and every load and
run below reads that folder, never the training folder. The last check is the path Hub users run: a fresh Python
process, with this package (and its compiled kernels) made unimportable, loads the staging folder through
`trust_remote_code=True` from the code files it holds and runs a padded batch (`remote_check.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..configuration_inhibidistilbert import AUTO_MAP

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The Hub files: `save_pretrained` copies them next to the weights and remote code imports only these.
CODE_FILES = ("configuration_inhibidistilbert.py", "modeling_inhibidistilbert.py", "kernels_inhibidistilbert.py")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
METRICS_FILES = ("all_results.json", "eval_results.json")
SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
# Pickle files can run arbitrary code when loaded, so weights in these formats are refused. Trainer state files
# (optimizer, scheduler, RNG, pickled arguments) are not weights: they are skipped, not refused.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
TRAINER_STATE_PREFIXES = ("rng_state",)
# Values of `inhibitor_implementation` that run on every machine that loads the folder from the Hub; any other value
# fixes an implementation that is missing there (the installed package's kernels, Triton without CUDA, ...).
PORTABLE_IMPLEMENTATIONS = ("auto", "cdist")
REMOTE_CHECK = Path(__file__).resolve().parent / "remote_check.py"
REMOTE_CHECK_TIMEOUT = 600  # seconds: a cold import of torch and transformers on a busy machine, then one forward

# Head class -> (Auto class, pipeline task); the pipeline task is also the card's `pipeline_tag`.
HEADS = {
    "InhibiDistilBertModel": ("AutoModel", "feature-extraction"),
    "InhibiDistilBertForMaskedLM": ("AutoModelForMaskedLM", "fill-mask"),
    "InhibiDistilBertForSequenceClassification": ("AutoModelForSequenceClassification", "text-classification"),
    "InhibiDistilBertForTokenClassification": ("AutoModelForTokenClassification", "token-classification"),
    "InhibiDistilBertForQuestionAnswering": ("AutoModelForQuestionAnswering", "question-answering"),
    "InhibiDistilBertForMultipleChoice": ("AutoModelForMultipleChoice", None),
}


class FolderCheckError(ValueError):
    """A folder that must not be published: `problem` says what is wrong, `fix` how to repair it."""

    def __init__(self, folder: str | os.PathLike, problem: str, fix: str):
        self.folder, self.problem, self.fix = str(folder), problem, fix
        super().__init__(f"Refusing to publish {folder}: {problem}\nFix: {fix}")


@dataclass
class FolderReport:
    """What `check_folder` found: the model, the files that will be uploaded (path in repo, size) and the rest.

    `remote_module` and `remote_implementation` say what ran in the remote-code check: the module of the loaded class
    (`transformers_modules.…`, the folder's own code) and the config's `inhibitor_implementation` there.
    """

    folder: Path
    architecture: str
    num_labels: int
    id2label: dict[int, str]
    weight_files: list[str]
    upload_files: list[tuple[str, int]]
    skipped_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remote_module: str | None = None
    remote_implementation: str | None = None

    def summary(self) -> str:
        total = sum(size for _, size in self.upload_files)
        lines = [
            f"{self.folder} passed the checks: {self.architecture}, {self.num_labels} labels; "
            f"{len(self.upload_files)} files ({human_size(total)}) to upload with the generated README.md."
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.skipped_files:
            lines.append(f"  not uploaded: {', '.join(self.skipped_files)}")
        return "\n".join(lines)


def check_folder(folder: str | os.PathLike) -> FolderReport:
    """Check that `folder` is a complete, loadable InhibiDistilBERT model; raise `FolderCheckError` if not.

    Checks, in order: no pickle weights; the three code files present and identical to the installed package's; the
    config parses, is an InhibiDistilBERT config with the full `auto_map` and a portable `inhibitor_implementation`;
    one unambiguous set of safetensors weights. Then, on a staging folder that holds exactly the files to upload: the
    weights load into the class of `config.architectures` with no missing, unexpected or mismatched keys and are all
    finite; a tokenizer loads; and a fresh process without this package loads the folder through
    `trust_remote_code=True` and runs a padded batch to finite outputs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderCheckError(folder, "it is not a folder.", "pass the output folder of a training run.")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())

    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES) and not _is_trainer_state(n)]
    if pickles:
        raise FolderCheckError(
            folder,
            f"pickle weights found ({', '.join(pickles)}); only safetensors weights are published, because loading "
            "a pickle file can run arbitrary code.",
            "save the model with `model.save_pretrained(folder)` (transformers writes model.safetensors) and move "
            "the pickle files out of the folder.",
        )
    _check_code_files(folder)
    config = _check_config(folder)
    architecture = config.architectures[0]
    weight_files = _weight_files(folder, names)
    upload = ["config.json", *CODE_FILES, *weight_files]
    upload += [n for n in TOKENIZER_FILES if n in names] + [n for n in METRICS_FILES if n in names]

    with _staged(folder, upload) as staging, _quiet_transformers():
        _check_weights(folder, staging, architecture)
        _check_finite_weights(folder, staging, weight_files)
        _check_tokenizer(folder, staging)
        remote = _check_remote_code(folder, staging, architecture)

    warnings = []
    id2label = {int(k): v for k, v in config.id2label.items()}
    if architecture in ("InhibiDistilBertForSequenceClassification", "InhibiDistilBertForTokenClassification"):
        if all(re.fullmatch(r"LABEL_\d+", label) for label in id2label.values()):
            warnings.append(
                "config.id2label holds the generic names LABEL_0, LABEL_1, ...; pipelines will print those. Set "
                "`config.id2label` / `config.label2id` to the task's label names before saving."
            )
    if "README.md" in names:
        warnings.append("the folder's README.md is replaced in the upload by the generated model card.")
    skipped = [n for n in names if n not in upload and n != "README.md"]
    stray = [n for n in skipped if n.endswith(".safetensors")]
    if stray:
        warnings.append(f"weight files not part of the checked set are not uploaded: {', '.join(stray)}.")
    skipped += sorted(f"{p.name}/" for p in folder.iterdir() if p.is_dir())
    return FolderReport(
        folder=folder,
        architecture=architecture,
        num_labels=config.num_labels,
        id2label=id2label,
        weight_files=weight_files,
        upload_files=[(n, (folder / n).stat().st_size) for n in upload],
        skipped_files=skipped,
        warnings=warnings,
        remote_module=remote.get("module"),
        remote_implementation=remote.get("implementation"),
    )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"


def _is_trainer_state(name: str) -> bool:
    return name in TRAINER_STATE_FILES or name.startswith(TRAINER_STATE_PREFIXES)


def _check_code_files(folder: Path) -> None:
    fix = (
        "re-save the model with the installed package (`import modeling_inhibidistilbert` before "
        "`model.save_pretrained(folder)`), or copy {names} from {package} into the folder."
    )
    missing = [n for n in CODE_FILES if not (folder / n).is_file()]
    if missing:
        raise FolderCheckError(
            folder,
            f"the code file(s) {', '.join(missing)} are missing, so `trust_remote_code=True` could not load the model.",
            fix.format(names=", ".join(missing), package=PACKAGE_DIR),
        )
    stale = [n for n in CODE_FILES if (folder / n).read_bytes() != (PACKAGE_DIR / n).read_bytes()]
    if stale:
        raise FolderCheckError(
            folder,
            f"the code file(s) {', '.join(stale)} differ from the installed package's ({PACKAGE_DIR}); the Hub would "
            "run code that was not tested with these weights.",
            fix.format(names=", ".join(stale), package=PACKAGE_DIR),
        )


def _check_config(folder: Path):
    from ..configuration_inhibidistilbert import InhibiDistilBertConfig

    path = folder / "config.json"
    fix = "re-save the model with `model.save_pretrained(folder)` after `import modeling_inhibidistilbert`."
    if not path.is_file():
        raise FolderCheckError(folder, "config.json is missing.", fix)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FolderCheckError(folder, f"config.json is not valid JSON ({err}).", fix) from err
    if not isinstance(raw, dict) or raw.get("model_type") != InhibiDistilBertConfig.model_type:
        found = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise FolderCheckError(
            folder,
            f"config.json has model_type {found!r}, not {InhibiDistilBertConfig.model_type!r}; this tool publishes "
            "InhibiDistilBERT models (a dot-product student is a plain DistilBERT: use `model.push_to_hub`).",
            fix,
        )
    auto_map = raw.get("auto_map") or {}
    wrong = sorted(k for k, v in AUTO_MAP.items() if auto_map.get(k) != v)
    if wrong:
        raise FolderCheckError(
            folder,
            f"config.json's auto_map lacks or misstates {', '.join(wrong)}; the Auto classes could not find the code.",
            fix,
        )
    architectures = raw.get("architectures") or []
    if len(architectures) != 1 or architectures[0] not in HEADS:
        raise FolderCheckError(
            folder,
            f"config.json's architectures is {architectures!r}; it must name one of {', '.join(HEADS)}.",
            fix,
        )
    implementation = raw.get("inhibitor_implementation", "auto")
    if implementation not in PORTABLE_IMPLEMENTATIONS:
        raise FolderCheckError(
            folder,
            f"config.json sets inhibitor_implementation={implementation!r}, which fails wherever that implementation "
            "cannot run (the fused and int8 kernels come only with `pip install inhibidistilbert`, Triton only on "
            "CUDA), as on most machines that load the model from the Hub.",
            "set `model.config.inhibitor_implementation = 'auto'` (every faster implementation is still used where "
            "it can run) and re-save.",
        )
    try:
        return InhibiDistilBertConfig.from_pretrained(folder)
    except Exception as err:  # the config class validates its fields
        raise FolderCheckError(folder, f"config.json does not load: {err}", fix) from err


def _weight_files(folder: Path, names: list[str]) -> list[str]:
    """The one set of safetensors weights to upload; two sets (a single file and an index) are refused."""
    single, indexed = SAFETENSORS_WEIGHTS in names, SAFETENSORS_INDEX in names
    if single and indexed:
        shards = ", ".join(n for n in names if n.endswith(".safetensors") and n != SAFETENSORS_WEIGHTS)
        raise FolderCheckError(
            folder,
            f"it holds two sets of weights: {SAFETENSORS_WEIGHTS} and {SAFETENSORS_INDEX} (shards: {shards or 'none'}). "
            "One is left over from an earlier save into the same folder; transformers loads "
            f"{SAFETENSORS_WEIGHTS} and ignores the index, so which weights users get depends on the loader.",
            "keep the set of the model you mean to publish and delete the other (the index and its shards, or "
            f"{SAFETENSORS_WEIGHTS}); or re-save into an empty folder.",
        )
    if indexed:
        try:
            index = json.loads((folder / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
            raise FolderCheckError(
                folder, f"{SAFETENSORS_INDEX} is not a valid index ({err}).", "re-save the model."
            ) from err
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise FolderCheckError(
                folder,
                f"the weight shard(s) {', '.join(missing)} listed in {SAFETENSORS_INDEX} are missing.",
                "copy every shard into the folder, or re-save the model with `model.save_pretrained(folder)`.",
            )
        return [SAFETENSORS_INDEX, *shards]
    if single:
        return [SAFETENSORS_WEIGHTS]
    raise FolderCheckError(
        folder,
        f"no safetensors weights ({SAFETENSORS_WEIGHTS} or {SAFETENSORS_INDEX}).",
        "save the model with `model.save_pretrained(folder)`.",
    )


@contextlib.contextmanager
def _staged(folder: Path, names: list[str]) -> Iterator[Path]:
    """A temporary folder that holds exactly `names` (links to the folder's files; copies where links fail)."""
    with tempfile.TemporaryDirectory(prefix="inhibidistilbert-upload-") as tmp:
        staging = Path(tmp) / folder.name  # the same last name: transformers names the remote-code module after it
        staging.mkdir()
        for name in names:
            source = (folder / name).resolve()
            try:
                (staging / name).symlink_to(source)
            except OSError:  # no symlinks (some Windows setups): a copy checks the same bytes
                import shutil

                shutil.copy2(source, staging / name)
        yield staging


def _check_weights(folder: Path, staging: Path, architecture: str) -> None:
    from .. import modeling_inhibidistilbert

    model_class = getattr(modeling_inhibidistilbert, architecture)
    fix = (
        "the weights and config.json come from different models: save both from the same model with "
        "`model.save_pretrained(folder)`."
    )
    try:
        _, info = model_class.from_pretrained(staging, output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as err:
        raise FolderCheckError(folder, f"the weights do not load into {architecture}: {err}", fix) from err
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        keys = sorted(_describe_key(k) for k in info.get(kind) or ())
        if keys:
            problems.append(f"{kind.replace('_', ' ')}: {_shorten(keys)}")
    if problems:
        raise FolderCheckError(
            folder, f"the weights do not match {architecture} built from config.json ({'; '.join(problems)}).", fix
        )


def _check_finite_weights(folder: Path, staging: Path, weight_files: list[str]) -> None:
    import torch
    from safetensors import safe_open

    bad = []
    for name in weight_files:
        if not name.endswith(".safetensors"):
            continue
        with safe_open(staging / name, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    count = int((~torch.isfinite(tensor)).sum())
                    bad.append(f"{key} ({count} of {tensor.numel()} values NaN or infinite)")
    if bad:
        raise FolderCheckError(
            folder,
            f"the weights are not finite: {_shorten(sorted(bad))}. The model would output NaN on the Hub.",
            "publish a checkpoint saved before training diverged (with a lower learning rate, or a checkpoint whose "
            "loss was finite).",
        )


def _describe_key(key) -> str:
    """A loading-info entry: a key name, or a (key, checkpoint shape, model shape) tuple for mismatched sizes."""
    if isinstance(key, tuple) and len(key) == 3:
        name, saved, expected = key
        return f"{name} (weights {list(saved)}, config {list(expected)})"
    return str(key)


def _shorten(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_tokenizer(folder: Path, staging: Path) -> None:
    from transformers import AutoTokenizer

    fix = "save the tokenizer next to the model: `tokenizer.save_pretrained(folder)`."
    if not (staging / "tokenizer_config.json").is_file() or not any(
        (staging / n).is_file() for n in ("tokenizer.json", "vocab.txt")
    ):
        raise FolderCheckError(folder, "no tokenizer (tokenizer_config.json with tokenizer.json or vocab.txt).", fix)
    try:
        AutoTokenizer.from_pretrained(staging)
    except Exception as err:
        raise FolderCheckError(folder, f"the tokenizer does not load: {err}", fix) from err


def _check_remote_code(folder: Path, staging: Path, architecture: str) -> dict:
    """Run `remote_check.py` on the staging folder in a fresh process; return what it reports.

    A passing result is remembered for the process, keyed by the bytes of every file the check reads, so checking
    the same model again (a dry run, then the upload) does not start a second process.
    """
    key = _content_digest(staging, architecture)
    if key not in _REMOTE_PASSED:
        _REMOTE_PASSED[key] = _run_remote_check(folder, staging, architecture)
    return _REMOTE_PASSED[key]


_REMOTE_PASSED: dict[str, dict] = {}


def _content_digest(staging: Path, architecture: str) -> str:
    import hashlib

    digest = hashlib.sha256(f"{sys.executable}\0{architecture}".encode())
    for path in sorted(staging.iterdir()):
        if path.name in METRICS_FILES:  # the check does not read them
            continue
        digest.update(f"\0{path.name}\0".encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _run_remote_check(folder: Path, staging: Path, architecture: str) -> dict:
    auto_class = HEADS[architecture][0]
    fix = "check that the tokenizer belongs to this model and that the weights are finite."
    with tempfile.TemporaryDirectory(prefix="inhibidistilbert-remote-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(
            HF_HUB_OFFLINE="1",  # the folder is local: nothing to download
            HF_MODULES_CACHE=str(Path(tmp) / "modules"),  # the folder's code, imported fresh, not a cached copy
            HF_HUB_DISABLE_TELEMETRY="1",
            TRANSFORMERS_VERBOSITY="error",
            TOKENIZERS_PARALLELISM="false",
        )
        try:
            # -I: no current directory, script directory or PYTHON* variables on the path (only installed packages)
            proc = subprocess.run(
                [sys.executable, "-I", str(REMOTE_CHECK), str(staging), auto_class, str(result_file)],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=REMOTE_CHECK_TIMEOUT,
            )
        except subprocess.TimeoutExpired as err:
            raise FolderCheckError(
                folder,
                f"loading the folder through trust_remote_code=True did not finish in {REMOTE_CHECK_TIMEOUT} s.",
                "run the upload on a less busy machine, or check that the model loads: "
                "`AutoModel.from_pretrained(folder, trust_remote_code=True)`.",
            ) from err
        if not result_file.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise FolderCheckError(
                folder,
                f"the remote-code check crashed (exit status {proc.returncode}) before reporting:\n{tail}",
                fix,
            )
        result = json.loads(result_file.read_text(encoding="utf-8"))
    if result.get("error"):
        raise FolderCheckError(
            folder,
            f"the model does not run on one example when loaded as Hub users load it (trust_remote_code=True, "
            f"without this package): {result['error']}",
            fix,
        )
    if result.get("package_importable") or not str(result.get("module", "")).startswith("transformers_modules."):
        raise FolderCheckError(
            folder,
            f"the remote-code check did not run the folder's own code (the model class came from "
            f"{result.get('module')!r}).",
            "report this as a bug of hub_upload.py.",
        )
    return result


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars: the checks report problems themselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
