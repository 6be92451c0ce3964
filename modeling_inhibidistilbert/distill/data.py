"""Loading task data from the Hub, from a folder in the original GLUE layout, or from csv/json/parquet files.

Whatever the source, a split comes back as a `datasets.Dataset` with the Hub's column names (the task's text columns
and `label`), labels as Hub label ids (`ClassLabel` with the Hub's names) or float scores (STS-B). Every problem with
the data (a missing file or column, an empty split, a label the task does not have) is a `DataError` raised before
any training starts.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import pandas as pd

from ..tasks import TaskSpec, get_task

DATA_DIR_ENV = "INHIBI_DATA_DIR"
TABLE_EXTENSIONS = (".tsv", ".csv", ".json", ".jsonl", ".parquet")


class DataError(ValueError):
    """The data cannot be used for the task as given (missing file or column, empty split, unknown label)."""


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """`--data_dir`, else the `INHIBI_DATA_DIR` environment variable, else `None` (load from the Hub)."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"Data folder {path} does not exist (from --data_dir or ${DATA_DIR_ENV}).")
    return path


def read_table(path: str | os.PathLike, task: TaskSpec | None = None) -> pd.DataFrame:
    """Read a tsv (GLUE style: quoting off), csv, json/jsonl or parquet file into a DataFrame of strings/numbers."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist.")
    try:
        return _read_table(path, task)
    except DataError:
        raise
    except Exception as err:  # pandas/pyarrow parser errors: a damaged or mislabelled file
        raise DataError(
            f"Cannot read {path} as a {path.suffix or 'table'} file ({type(err).__name__}: {err}). The file is damaged "
            "or not in that format; replace it (or give it the extension of its format)."
        ) from None


def _read_table(path: Path, task: TaskSpec | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        headerless = task is not None and not task.local_header and _first_row_is_data(path, task)
        return pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            encoding="utf-8-sig",  # MRPC's files start with a byte-order mark
            header=None if headerless else "infer",
            names=list(task.local_names) if headerless else None,
            dtype=str,
        )
    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, encoding="utf-8-sig")
    if suffix in (".json", ".jsonl"):
        try:
            return pd.read_json(path, lines=True)
        except ValueError:
            return pd.read_json(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise DataError(f"Cannot read {path}: use one of {', '.join(TABLE_EXTENSIONS)}.")


def _first_row_is_data(path: Path, task: TaskSpec) -> bool:
    """CoLA's files have no header; accept a copy with a header row too (its label column is not a 0/1 value)."""
    with open(path, encoding="utf-8-sig") as handle:
        first = handle.readline().rstrip("\n").split("\t")
    label_index = task.local_names.index("label")
    return len(first) > label_index and first[label_index].strip() in ("0", "1")


def _label_to_id(value, task: TaskSpec) -> int | None:
    """A label id from a Hub id, an id written as text, or a label name; `None` when it is none of these."""
    if isinstance(value, str):
        text = value.strip()
        if text in task.label2id:
            return task.label2id[text]
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            return None
    if isinstance(value, bool) or not float(value).is_integer():
        return None
    index = int(value)
    return index if 0 <= index < task.num_labels else None


def normalize_labels(values: Sequence, task: TaskSpec, source: str) -> list:
    """Labels as Hub ids (classification) or floats (regression); a `DataError` names any label the task lacks."""
    if task.is_regression:
        out, bad = [], []
        low, high = regression_range(task)
        for row, value in enumerate(values):
            try:
                score = float(value)
            except (TypeError, ValueError):
                raise DataError(f"{source}: {task.name} needs numeric scores, found label {value!r}.") from None
            if not low <= score <= high:  # NaN fails both comparisons
                bad.append(f"row {row}: {value!r}")
            out.append(score)
        if bad:
            raise DataError(
                f"{source}: {len(bad)} score(s) of task {task.name!r} missing or outside [{low:g}, {high:g}] "
                f"({', '.join(bad[:5])}). Fix or drop those rows."
            )
        return out
    out, unknown = [], set()
    for value in values:
        label = None if value is None or (isinstance(value, float) and value != value) else _label_to_id(value, task)
        if label is None:
            unknown.add(str(value))
        out.append(label)
    if unknown:
        shown = ", ".join(sorted(unknown)[:10])
        raise DataError(
            f"{source}: labels the model does not have for task {task.name!r}: {shown}. "
            f"Expected ids 0..{task.num_labels - 1} or names {', '.join(task.label_names)}."
        )
    return out


def regression_range(task: TaskSpec) -> tuple[float, float]:
    """The scores a regression task's labels may take (the registry's `label_range`; STS-B: 0 to 5)."""
    return task.label_range or (-math.inf, math.inf)


def task_features(task: TaskSpec) -> datasets.Features:
    """The Hub's features of a task: string text columns and a `ClassLabel` (or float32 score) `label`."""
    features = {column: datasets.Value("string") for column in task.text_columns}
    features["label"] = (
        datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.label_names))
    )
    return datasets.Features(features)


def standardize(frame: pd.DataFrame, task: TaskSpec, source: str) -> datasets.Dataset:
    """Rename GLUE columns to the Hub's, check them, normalise the labels and build a `datasets.Dataset`."""
    renames = {old: new for old, new in task.local_columns.items() if old in frame.columns and new not in frame.columns}
    frame = frame.rename(columns=renames)
    needed = [*task.text_columns, "label"]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} for task {task.name!r}; it has "
            f"{', '.join(map(str, frame.columns))}. Expected {', '.join(needed)}."
        )
    if len(frame) == 0:
        raise DataError(f"{source}: no rows (empty data set).")
    columns = {column: [("" if text is None else str(text)) for text in frame[column]] for column in task.text_columns}
    columns["label"] = normalize_labels(list(frame["label"]), task, source)
    return datasets.Dataset.from_dict(columns, features=task_features(task))


def _check_hub_split(split: datasets.Dataset, task: TaskSpec, source: str) -> datasets.Dataset:
    missing = [column for column in (*task.text_columns, "label") if column not in split.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; it has {', '.join(split.column_names)}.")
    if len(split) == 0:
        raise DataError(f"{source}: no rows (empty data set).")
    return split.select_columns([*task.text_columns, "label"])


def load_task_splits(
    task: TaskSpec,
    data_dir: str | os.PathLike | None = None,
    train_file: str | os.PathLike | None = None,
    validation_file: str | os.PathLike | None = None,
    validation_mismatched_file: str | os.PathLike | None = None,
    need_train: bool = True,
    need_eval: bool = True,
) -> dict[str, datasets.Dataset]:
    """The task's splits: `"train"` and one `"validation<suffix>"` per eval split (`"validation_mm"` for MNLI).

    Per split the source is, in order: an explicit file (`train_file`, `validation_file`), the GLUE-layout folder
    (`data_dir` or `$INHIBI_DATA_DIR`), then the Hub. MNLI's mismatched split comes from `validation_mismatched_file`
    when `validation_file` is given, and is skipped when only the matched file is given.
    """
    folder = resolve_data_dir(data_dir)
    explicit = {"train": train_file, "": validation_file, "_mm": validation_mismatched_file}
    wanted = (["train"] if need_train else []) + (list(task.eval_splits) if need_eval else [])
    splits: dict[str, datasets.Dataset] = {}
    hub = None
    for key in wanted:
        name = "train" if key == "train" else f"validation{key}"
        file = explicit.get(key)
        if key == "_mm" and file is None and validation_file is not None:
            continue  # a custom matched file without a mismatched one: evaluate on the matched file only
        if file is not None:
            splits[name] = standardize(read_table(file, task), task, str(file))
        elif folder is not None:
            path = folder / task.local_folder / task.local_files[key]
            if not path.is_file():
                raise DataError(
                    f"{path} does not exist: {folder} has no {task.local_folder}/{task.local_files[key]} for task "
                    f"{task.name!r}. Pass --train_file/--validation_file, or drop --data_dir to use the Hub."
                )
            splits[name] = standardize(read_table(path, task), task, str(path))
        else:
            if hub is None:
                hub = datasets.load_dataset(task.hub_path, task.hub_config)
            split = task.train_split if key == "train" else task.eval_splits[key]
            splits[name] = _check_hub_split(hub[split], task, f"{task.hub_path}/{task.hub_config or ''}:{split}")
    return splits


def tokenize_splits(
    splits: dict[str, datasets.Dataset],
    tokenizer,
    task: TaskSpec,
    max_seq_length: int,
    pad_to_max_length: bool = False,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
) -> dict[str, datasets.Dataset]:
    """Tokenize the text columns (one text or a pair), truncated to `max_seq_length`; `label` becomes `labels`."""

    def encode(batch):
        texts = [batch[column] for column in task.text_columns]
        encoded = tokenizer(
            *texts, truncation=True, max_length=max_seq_length, padding="max_length" if pad_to_max_length else False
        )
        encoded["labels"] = batch["label"]
        return encoded

    return {
        name: split.map(
            encode,
            batched=True,
            num_proc=num_proc,
            remove_columns=split.column_names,
            load_from_cache_file=load_from_cache_file,
            desc=f"Tokenizing {name}",
        )
        for name, split in splits.items()
    }


def parse_text_source(source: str) -> tuple[TaskSpec, str]:
    """`NAME` or `NAME:N` of `--text_sources` -> (task, "N" or ""); a `DataError` names a bad one."""
    name, _, limit = source.partition(":")
    if limit and not limit.isdigit():
        raise DataError(f"Text source {source!r}: write a task name, or NAME:N for its first N training rows.")
    try:
        return get_task(name), limit
    except ValueError as err:
        raise DataError(f"--text_sources {source!r}: {err}") from None


def load_text_corpus(
    sources: Sequence[str] = (),
    files: Sequence[str | os.PathLike] = (),
    data_dir: str | os.PathLike | None = None,
    text_column: str | None = None,
    keep_pairs: bool = False,
) -> datasets.Dataset:
    """Unlabeled text for task-agnostic distillation, as a `datasets.Dataset` with a `text` column.

    `sources` names tasks of the registry (their training texts; each text column gives its own examples, labels are
    dropped); `name:N` takes the task's first N training rows only (to balance a large task against small ones). With `keep_pairs`, a sentence-pair task's rows stay pairs instead: a second column `text_pair` holds
    the second sentence ("" for single texts), so that the model sees `[CLS] a [SEP] b [SEP]` as the pair tasks feed
    it. `files` are `.txt` files (one example per non-empty line) or tables (csv/tsv/json/parquet) read through
    `text_column` (default: `text`, else every text column of a task whose columns the table has).
    """
    from ..tasks import TASKS

    texts: list[str] = []
    pairs: list[tuple[str, str]] = []
    for source in sources:
        task, limit = parse_text_source(source)
        split = load_task_splits(task, data_dir=data_dir, need_train=True, need_eval=False)["train"]
        if limit:
            split = split.select(range(min(int(limit), len(split))))
        if keep_pairs and len(task.text_columns) == 2:
            first, second = task.text_columns
            pairs.extend((a, b) for a, b in zip(split[first], split[second]) if a and a.strip() and b and b.strip())
            continue
        for column in task.text_columns:
            texts.extend(split[column])
    for file in files:
        path = Path(file)
        if path.suffix.lower() in (".txt", ".text", ".raw"):
            if not path.is_file():
                raise DataError(f"Text file {path} does not exist.")
            texts.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
            continue
        frame = read_table(path)
        if text_column is not None:
            columns = [text_column]
        elif "text" in frame.columns:
            columns = ["text"]
        else:
            columns = next(
                (list(t.text_columns) for t in TASKS.values() if all(c in frame.columns for c in t.text_columns)), []
            )
        missing = [column for column in columns if column not in frame.columns] or ([] if columns else ["text"])
        if missing:
            raise DataError(
                f"{path}: no text column {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}. "
                "Pass --text_column."
            )
        for column in columns:
            texts.extend(str(text) for text in frame[column])
    texts = [text for text in texts if text and text.strip()]
    if not texts and not pairs:
        raise DataError("No text to distil on: pass --text_sources (task names) and/or --train_files.")
    if not keep_pairs:
        return datasets.Dataset.from_dict({"text": texts})
    return datasets.Dataset.from_dict(
        {"text": texts + [a for a, _ in pairs], "text_pair": [""] * len(texts) + [b for _, b in pairs]}
    )


def limit_splits(splits, max_train: int | None, max_eval: int | None, seed: int | None = None):
    """Keep at most `max_train` training rows and `max_eval` rows of each validation split.

    The first rows, as transformers' examples do, or with `seed` a random subset drawn with that seed (the same rows
    for every run with the same seed), which data sorted by label (IMDB) needs.
    """
    for name in [n for n in splits if n == "train" or n.startswith("validation")]:
        limit = max_train if name == "train" else max_eval
        if limit is not None and limit < len(splits[name]):
            rows = splits[name] if seed is None else splits[name].shuffle(seed=seed)
            splits[name] = rows.select(range(limit))
    return splits


def split_heldout(train: datasets.Dataset, fraction: float, min_rows: int, seed: int):
    """Remove a fixed part of the training set for every choice (best checkpoint, early stopping, recipe search).

    `max(min_rows, ceil(fraction * rows))` rows drawn with `seed` alone, so that every model of a task, whatever its
    training seed, is chosen on the same rows. Returns (the remaining training rows in their order, the held-out
    rows).
    """
    import numpy as np

    size = max(min_rows, math.ceil(round(fraction * len(train), 6)))  # 3000 / 67349 of 67349 rows is 3000
    if size >= len(train):
        raise DataError(
            f"Holding out {size} of {len(train)} training rows (--heldout_fraction {fraction}, --heldout_min_rows "
            f"{min_rows}) would leave nothing to train on; lower --heldout_min_rows or use --selection_split dev."
        )
    chosen = np.random.default_rng(seed).permutation(len(train))[:size]
    mask = np.zeros(len(train), dtype=bool)
    mask[chosen] = True
    return train.select(np.flatnonzero(~mask)), train.select(np.flatnonzero(mask))


def split_corpus(corpus: datasets.Dataset, percentage: float, seed: int, max_train: int | None, max_eval: int | None):
    """Unlabeled text -> (training texts, `percentage`% held out for the validation loss), each cut to its limit."""
    held_out = max(1, int(len(corpus) * percentage / 100))
    if len(corpus) - held_out < 1:
        raise DataError(f"Only {len(corpus)} texts: too few to hold out {percentage}% for eval.")
    split = corpus.train_test_split(test_size=held_out, seed=seed, shuffle=True)
    parts = limit_splits({"train": split["train"], "validation": split["test"]}, max_train, max_eval)
    return parts["train"], parts["validation"]


def drop_token_types(split: datasets.Dataset) -> datasets.Dataset:
    """The split without `token_type_ids` (DistilBERT models take none)."""
    return split.remove_columns([c for c in split.column_names if c == "token_type_ids"])
