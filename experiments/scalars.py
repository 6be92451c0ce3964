"""Where the per-head scalars of saved inhibitor students ended up: min and max over heads and layers.

python experiments/scalars.py outputs/experiments/grid-cpu/stsb/ts-inhibitor-seed42 ...
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

NAMES = {"score_scale": "gamma", "shift": "delta", "output_scale": "eta"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print("model | " + " | ".join(f"{name} min..max" for name in NAMES.values()))
    for folder in args.folders:
        weights = load_file(folder / "model.safetensors")
        cells = []
        for suffix in NAMES:
            values = torch.cat([v.flatten() for k, v in weights.items() if k.endswith(f"attention.{suffix}")])
            cells.append(f"{values.min().item():.4f}..{values.max().item():.4f}")
        print(f"{folder.parent.name}/{folder.name} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
