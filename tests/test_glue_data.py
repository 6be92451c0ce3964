"""Task data from a GLUE-layout folder or from files: Hub column names, Hub label ids, clear errors."""

import json

import pandas as pd
import pytest

from modeling_inhibidistilbert.distill.data import (
    DataError,
    load_task_splits,
    load_text_corpus,
    read_table,
    tokenize_splits,
)
from modeling_inhibidistilbert.tasks import TASKS, get_task

from .distill_fixtures import SHARED_DATA, make_tokenizer, write_glue_fixture


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    return write_glue_fixture(tmp_path_factory.mktemp("glue"), n_train=30, n_dev=12)


@pytest.mark.parametrize("task_name", ["sst2", "cola", "mrpc", "stsb", "rte"])
def test_glue_layout_folder_loads_with_hub_columns_and_labels(glue_dir, task_name):
    task = get_task(task_name)
    splits = load_task_splits(task, data_dir=glue_dir)
    assert set(splits) == {"train", "validation"}
    assert len(splits["train"]) == 30 and len(splits["validation"]) == 12
    for split in splits.values():
        assert split.column_names == [*task.text_columns, "label"]
        if task.is_regression:
            assert all(0.0 <= score <= 5.0 for score in split["label"])
        else:
            assert split.features["label"].names == list(task.label_names)  # the Hub's names, in its order
            assert set(split["label"]) <= set(range(task.num_labels))
        assert all(isinstance(text, str) and text for text in split[task.text_columns[0]])


def test_rte_string_labels_map_to_hub_ids(glue_dir):
    frame = read_table(glue_dir / "RTE" / "dev.tsv")
    split = load_task_splits(get_task("rte"), data_dir=glue_dir)["validation"]
    expected = [{"entailment": 0, "not_entailment": 1}[label] for label in frame["label"]]
    assert split["label"] == expected


def test_mrpc_byte_order_mark_and_cola_missing_header_are_handled(glue_dir):
    mrpc = read_table(glue_dir / "MRPC" / "train.tsv", get_task("mrpc"))
    assert mrpc.columns[0] == "Quality"
    cola = load_task_splits(get_task("cola"), data_dir=glue_dir)["train"]
    first = (glue_dir / "CoLA" / "train.tsv").read_text().splitlines()[0].split("\t")
    assert cola[0]["sentence"] == first[3] and cola[0]["label"] == int(first[1])


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize(
    "task_name, rows", [("sst2", 872), ("cola", 1043), ("mrpc", 408), ("rte", 277), ("stsb", 1500), ("qnli", 5463)]
)
def test_real_dev_files_read_completely_with_quoting_off(task_name, rows):
    splits = load_task_splits(get_task(task_name), data_dir=SHARED_DATA, need_train=False)
    assert len(splits["validation"]) == rows


def test_data_dir_comes_from_the_environment(glue_dir, monkeypatch):
    monkeypatch.setenv("INHIBI_DATA_DIR", str(glue_dir))
    assert len(load_task_splits(get_task("sst2"))["validation"]) == 12


@pytest.mark.parametrize("suffix", ["csv", "json", "parquet", "tsv"])
def test_train_and_validation_files_in_every_format(tmp_path, suffix):
    frame = pd.DataFrame(
        {"sentence1": ["a b", "c d", "e f"], "sentence2": ["g", "h", "i"], "label": ["entailment", 1, "0"]}
    )
    path = tmp_path / f"rte.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "json":
        path.write_text("\n".join(json.dumps({k: str(v) for k, v in row.items()}) for row in frame.to_dict("records")))
    elif suffix == "parquet":
        frame.astype(str).to_parquet(path)
    else:
        frame.to_csv(path, sep="\t", index=False)
    splits = load_task_splits(get_task("rte"), train_file=path, validation_file=path)
    assert splits["train"]["label"] == [0, 1, 0]
    assert splits["validation"]["sentence2"] == ["g", "h", "i"]


def test_original_glue_column_names_are_accepted_in_files(tmp_path):
    path = tmp_path / "mrpc.tsv"
    path.write_text('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said "yes.\tHe agreed.\n')
    split = load_task_splits(get_task("mrpc"), train_file=path, validation_file=path)["train"]
    assert split[0] == {"sentence1": 'He said "yes.', "sentence2": "He agreed.", "label": 1}


def test_mnli_has_matched_and_mismatched_splits(tmp_path):
    (tmp_path / "MNLI").mkdir()
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n"
    for name in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        rows = "0\t1\t1g\tfiction\tA man sleeps.\tA person rests.\tentailment\n1\t2\t2c\tfiction\tIt rains.\tIt is dry.\tcontradiction\n"
        (tmp_path / "MNLI" / name).write_text(header + rows)
    splits = load_task_splits(get_task("mnli"), data_dir=tmp_path)
    assert set(splits) == {"train", "validation", "validation_mm"}
    assert splits["validation_mm"]["label"] == [0, 2]
    assert splits["train"].column_names == ["premise", "hypothesis", "label"]


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown task 'squad'.*cola"):
        get_task("squad")
    assert get_task("SST-2") is TASKS["sst2"] and get_task("STS-B") is TASKS["stsb"]


def test_missing_columns_empty_data_and_unknown_labels_are_clear_errors(tmp_path):
    task = get_task("sst2")
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"text": ["good"], "label": [1]}).to_csv(wrong, index=False)
    with pytest.raises(DataError, match="missing column.*sentence"):
        load_task_splits(task, train_file=wrong, validation_file=wrong)
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n")
    with pytest.raises(DataError, match="empty"):
        load_task_splits(task, train_file=empty, validation_file=empty)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"sentence": ["a", "b", "c"], "label": [0, 2, "neutral"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="labels the model does not have.*2, neutral"):
        load_task_splits(task, train_file=bad, validation_file=bad)
    scores = tmp_path / "scores.csv"
    pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "label": ["high"]}).to_csv(scores, index=False)
    with pytest.raises(DataError, match="numeric scores"):
        load_task_splits(get_task("stsb"), train_file=scores, validation_file=scores)


def test_missing_or_out_of_range_sts_b_scores_are_named_by_the_data_checks(tmp_path):
    task = get_task("stsb")
    for name, labels, shown in (
        ("nan", [1.0, float("nan"), 2.5], "row 1: nan"),
        ("empty", ["1.0", "", "2.5"], "row 1: ''"),
        ("range", [1.0, 7.5, -0.5], "row 1: 7.5, row 2: -0.5"),
    ):
        path = tmp_path / f"{name}.json"
        pd.DataFrame({"sentence1": ["a", "b", "c"], "sentence2": ["d", "e", "f"], "label": labels}).to_json(
            path, orient="records", lines=True
        )
        if name == "empty":
            with pytest.raises(DataError, match="numeric scores, found label ''"):
                load_task_splits(task, train_file=path, validation_file=path)
            continue
        with pytest.raises(DataError, match=r"missing or outside \[0, 5\]") as error:
            load_task_splits(task, train_file=path, validation_file=path)
        assert shown in str(error.value) and "learning" not in str(error.value)
    edges = tmp_path / "edges.csv"
    pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0.0, 5.0]}).to_csv(edges, index=False)
    assert list(load_task_splits(task, train_file=edges, validation_file=edges)["train"]["label"]) == [0.0, 5.0]


def test_damaged_files_are_a_data_error_naming_the_file(tmp_path):
    task = get_task("sst2")
    for name, content in (("bad.parquet", b"PAR1 not parquet"), ("bad.json", b"{not json"), ("bad.csv", b'a,"b\n')):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=f"Cannot read .*{name}.*damaged"):
            load_task_splits(task, train_file=path, validation_file=path)


def test_an_unknown_text_source_is_a_data_error():
    from modeling_inhibidistilbert.distill.data import load_text_corpus

    with pytest.raises(DataError, match="--text_sources 'squad'.*Unknown task"):
        load_text_corpus(["squad"])


def test_missing_task_folder_in_data_dir_is_a_clear_error(glue_dir):
    with pytest.raises(DataError, match="QQP/train.tsv"):
        load_task_splits(get_task("qqp"), data_dir=glue_dir)
    with pytest.raises(DataError, match="does not exist"):
        load_task_splits(get_task("sst2"), data_dir=glue_dir / "nowhere")


def test_tokenization_encodes_pairs_and_keeps_labels(glue_dir, tmp_path):
    from .distill_fixtures import fixture_texts

    tokenizer = make_tokenizer(tmp_path / "tok", fixture_texts(glue_dir))
    task = get_task("mrpc")
    splits = load_task_splits(task, data_dir=glue_dir)
    encoded = tokenize_splits(splits, tokenizer, task, max_seq_length=24)
    row = encoded["validation"][0]
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2 and len(row["input_ids"]) <= 24
    assert encoded["validation"]["labels"] == splits["validation"]["label"]
    assert tokenizer.unk_token_id not in row["input_ids"]


def test_text_corpus_from_tasks_and_files(glue_dir, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("first line\n\nsecond line\n")
    corpus = load_text_corpus(["sst2", "mrpc"], [lines], data_dir=glue_dir)
    assert len(corpus) == 30 + 2 * 30 + 2  # SST-2 sentences, both MRPC sentences, two non-empty lines
    with pytest.raises(DataError, match="No text"):
        load_text_corpus([], [])


def test_text_corpus_keeps_pairs_as_pairs_and_takes_the_first_rows_of_a_source(glue_dir):
    corpus = load_text_corpus(["sst2:10", "mrpc"], data_dir=glue_dir, keep_pairs=True)
    assert corpus.column_names == ["text", "text_pair"] and len(corpus) == 10 + 30
    sst2 = load_task_splits(get_task("sst2"), data_dir=glue_dir, need_eval=False)["train"]
    mrpc = load_task_splits(get_task("mrpc"), data_dir=glue_dir, need_eval=False)["train"]
    assert corpus["text"][:10] == sst2["sentence"][:10] and corpus["text_pair"][:10] == [""] * 10
    assert list(zip(corpus["text"][10:], corpus["text_pair"][10:])) == list(zip(mrpc["sentence1"], mrpc["sentence2"]))
    with pytest.raises(DataError, match="NAME:N"):
        load_text_corpus(["sst2:many"], data_dir=glue_dir)


# The Hub's column names, label names (index = label id) and evaluation splits, as `nyu-mll/glue` and
# `stanfordnlp/imdb` publish them: the registry must agree, so a model trained on either source means the same labels.
HUB_TASKS = {
    "cola": (("sentence",), ["unacceptable", "acceptable"], ["validation"]),
    "sst2": (("sentence",), ["negative", "positive"], ["validation"]),
    "mrpc": (("sentence1", "sentence2"), ["not_equivalent", "equivalent"], ["validation"]),
    "stsb": (("sentence1", "sentence2"), None, ["validation"]),
    "qqp": (("question1", "question2"), ["not_duplicate", "duplicate"], ["validation"]),
    "mnli": (
        ("premise", "hypothesis"),
        ["entailment", "neutral", "contradiction"],
        ["validation_matched", "validation_mismatched"],
    ),
    "qnli": (("question", "sentence"), ["entailment", "not_entailment"], ["validation"]),
    "rte": (("sentence1", "sentence2"), ["entailment", "not_entailment"], ["validation"]),
    "wnli": (("sentence1", "sentence2"), ["not_entailment", "entailment"], ["validation"]),
    "imdb": (("text",), ["neg", "pos"], ["test"]),
}


def test_registry_matches_the_hub_columns_labels_and_splits():
    assert set(TASKS) == set(HUB_TASKS)
    for name, (columns, labels, eval_splits) in HUB_TASKS.items():
        task = get_task(name)
        assert task.text_columns == columns, name
        assert (list(task.label_names) if task.label_names else None) == labels, name
        assert list(task.eval_splits.values()) == eval_splits, name
        assert (task.hub_path, task.hub_config) == (
            ("stanfordnlp/imdb", None) if name == "imdb" else ("nyu-mll/glue", name)
        )


def _fake_hub_dataset(task, rows: int = 4):
    """A DatasetDict shaped like the Hub's: the task's columns, an `idx` column, ClassLabel (or float) labels."""
    import datasets

    columns, labels, eval_splits = HUB_TASKS[task.name]
    features = {column: datasets.Value("string") for column in columns}
    features["label"] = datasets.Value("float32") if labels is None else datasets.ClassLabel(names=labels)
    features["idx"] = datasets.Value("int32")
    splits = {}
    for split in ["train", *eval_splits]:
        data = {column: [f"{split} {column} {i}" for i in range(rows)] for column in columns}
        data["label"] = [float(i) for i in range(rows)] if labels is None else [i % len(labels) for i in range(rows)]
        data["idx"] = list(range(rows))
        splits[split] = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    return datasets.DatasetDict(splits)


@pytest.mark.parametrize("task_name", ["mnli", "stsb", "imdb"])
def test_without_data_dir_the_hub_data_set_is_loaded_with_the_same_columns(monkeypatch, task_name):
    import datasets

    task = get_task(task_name)
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return _fake_hub_dataset(task)

    monkeypatch.delenv("INHIBI_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    splits = load_task_splits(task)
    assert calls == [(task.hub_path, task.hub_config)]  # one download for every split
    assert set(splits) == {"train", *(f"validation{suffix}" for suffix in task.eval_splits)}
    for name, split in splits.items():
        assert split.column_names == [*task.text_columns, "label"]  # the Hub's extra `idx` is dropped
        hub_split = "train" if name == "train" else task.eval_splits[name.removeprefix("validation")]
        assert split[task.text_columns[0]][0] == f"{hub_split} {task.text_columns[0]} 0"
    if task.is_regression:
        assert splits["train"]["label"] == [0.0, 1.0, 2.0, 3.0]
    else:
        assert splits["train"].features["label"].names == list(task.label_names)


def test_hub_split_without_labels_is_a_clear_error(monkeypatch):
    import datasets

    task = get_task("sst2")
    monkeypatch.delenv("INHIBI_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: _fake_hub_dataset(task).remove_columns("label"))
    with pytest.raises(DataError, match="nyu-mll/glue/sst2:train: missing column.*label"):
        load_task_splits(task)


def test_imdb_parquet_folder_loads_with_hub_labels(tmp_path):
    (tmp_path / "IMDB").mkdir()
    for name in ("train", "test"):  # the layout and columns of ../shared/data/IMDB
        pd.DataFrame(
            {"text": ["Great film.<br />Loved it", "Dull."], "label": [1, 0], "rating": [9, 2], "review_id": [0, 1]}
        ).to_parquet(tmp_path / "IMDB" / f"{name}.parquet")
    splits = load_task_splits(get_task("imdb"), data_dir=tmp_path)
    assert set(splits) == {"train", "validation"}
    assert splits["validation"].column_names == ["text", "label"]
    assert splits["validation"]["label"] == [1, 0] and splits["validation"].features["label"].names == ["neg", "pos"]


@pytest.mark.skipif(not (SHARED_DATA / "IMDB").is_dir(), reason="needs ../shared/data/IMDB")
def test_real_imdb_test_split_reads_completely():
    split = load_task_splits(get_task("imdb"), data_dir=SHARED_DATA, need_train=False)["validation"]
    assert len(split) == 25_000 and sum(split["label"]) == 12_500


def test_subsets_are_the_first_rows_or_a_seeded_random_draw_for_sorted_data():
    from datasets import Dataset, DatasetDict

    from modeling_inhibidistilbert.distill.data import limit_splits

    def sorted_splits():  # like IMDB: all negatives first
        rows = {"text": [f"t{i}" for i in range(100)], "label": [0] * 50 + [1] * 50}
        return DatasetDict(train=Dataset.from_dict(rows), validation=Dataset.from_dict(rows))

    first = limit_splits(sorted_splits(), 20, 10)
    assert first["train"]["text"] == [f"t{i}" for i in range(20)] and set(first["validation"]["label"]) == {0}
    drawn = limit_splits(sorted_splits(), 20, 30, seed=0)
    assert len(drawn["train"]) == 20 and len(drawn["validation"]) == 30
    assert set(drawn["train"]["label"]) == {0, 1} and set(drawn["validation"]["label"]) == {0, 1}
    assert limit_splits(sorted_splits(), 20, 30, seed=0)["train"]["text"] == drawn["train"]["text"]  # reproducible
    assert len(limit_splits(sorted_splits(), 500, None, seed=0)["train"]) == 100  # a limit above the size keeps all
