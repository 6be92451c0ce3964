"""Publish a trained InhibiDistilBERT folder to the Hugging Face Hub in one commit.

    python hub_upload.py FOLDER --repo_id OWNER/NAME [--private] [--revision BRANCH] [--create_pr]
        [--commit_message TEXT] [--token TOKEN] [--endpoint URL] [--dry_run]
        [--teacher_results PATH] [--baseline_results PATH]

The folder is checked first, on exactly the files that will be uploaded: the three code files identical to the
installed package's, the config, one set of safetensors weights that load with no missing or unexpected keys and are
all finite, the tokenizer, and a forward pass in a fresh process that loads the folder as Hub users do
(`trust_remote_code=True`, this package not importable) with finite outputs. A folder failing any check is refused
with the reason and the fix.
The model card is generated from the folder's all_results.json and training_args.json, and the Hub validates its
metadata before anything is created or uploaded. `--dry_run` prints the card and every file with its size and
contacts no server. The token defaults to `HF_TOKEN` or the saved login
(`hf auth login`); prefer those to `--token`, which shells keep in their history. The token is never printed.
"""

from __future__ import annotations

import argparse
import sys

from modeling_inhibidistilbert.hub import FolderCheckError, PublishError, publish


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="output folder of a training run (config.json, model.safetensors, ...)")
    parser.add_argument("--repo_id", required=True, help="target model repository, OWNER/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository private (if it is new)")
    parser.add_argument("--revision", help="branch to commit to, created from main if missing (default: main)")
    parser.add_argument("--create_pr", action="store_true", help="open a pull request instead of pushing")
    parser.add_argument("--commit_message", help="commit title (default: 'Upload <architecture> from <folder>')")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login); never printed")
    parser.add_argument("--endpoint", help="Hub address (default: HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--dry_run", action="store_true", help="check, build the card and list files; upload nothing")
    parser.add_argument("--teacher_results", help="all_results.json of the teacher, for the comparison table")
    parser.add_argument("--baseline_results", help="all_results.json of the dot-product student, for the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = publish(
            args.folder,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            commit_message=args.commit_message,
            token=args.token,
            endpoint=args.endpoint,
            dry_run=args.dry_run,
            teacher_results=args.teacher_results,
            baseline_results=args.baseline_results,
        )
    except FolderCheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (PublishError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    print(result.report.summary())
    if result.dry_run:
        print(f"\nDry run: nothing uploaded. The commit to {args.repo_id} would hold:\n{result.file_table()}")
        print(f"\n----- README.md -----\n{result.card}")
        return 0
    print(f"\nUploaded to {args.repo_id}:\n{result.file_table()}")
    print(f"Commit: {result.commit_url}")
    if result.pr_url:
        print(f"Pull request: {result.pr_url}")
    print(f"Pin this revision when loading: revision={result.commit_oid!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
