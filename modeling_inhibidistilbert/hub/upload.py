"""The upload: check the folder, build its card, have the Hub validate the card, then commit everything at once."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import get_session, hf_raise_for_status

from .card import HUB_ID, build_model_card
from .checks import FolderCheckError, FolderReport, check_folder, human_size

logger = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The upload failed after the folder passed its checks; the message says what happened and what to do."""


@dataclass
class PublishResult:
    """The outcome of `publish`: the files of the commit (README.md included), the card, and the commit's address."""

    repo_id: str
    files: list[tuple[str, int]]
    card: ModelCard
    report: FolderReport
    dry_run: bool
    repo_url: str | None = None
    commit_url: str | None = None
    commit_oid: str | None = None
    pr_url: str | None = None

    def file_table(self) -> str:
        width = max(len(path) for path, _ in self.files)
        rows = [f"  {path:<{width}}  {human_size(size):>10}  ({size} bytes)" for path, size in self.files]
        total = sum(size for _, size in self.files)
        return "\n".join([*rows, f"  {'total':<{width}}  {human_size(total):>10}  ({total} bytes)"])


def publish(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    teacher_results: str | os.PathLike | Mapping | None = None,
    baseline_results: str | os.PathLike | Mapping | None = None,
) -> PublishResult:
    """Check `folder`, build its model card and upload it to `repo_id` in one commit.

    The commit holds exactly the files `check_folder` validated (config.json, the code files, one set of safetensors
    weights, the tokenizer files, the metrics files) and the generated README.md; nothing else from the folder.
    `token` defaults to huggingface_hub's usual sources (`HF_TOKEN`, the saved login) and is never printed or logged;
    `endpoint` defaults to `HF_ENDPOINT`. `revision` names a branch (created from main when missing); `create_pr`
    opens a pull request instead of pushing. `dry_run` checks the folder and builds the card but contacts no server;
    otherwise the Hub validates the card's metadata before anything is created or uploaded. Raises
    `FolderCheckError` for a folder that must not be published (a card the Hub rejects included) and `PublishError`
    when the upload fails (nothing is committed then).
    """
    if not HUB_ID.match(repo_id):
        raise ValueError(f"repo_id must read OWNER/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}.")
    report = check_folder(folder)
    card = build_model_card(report.folder, repo_id, teacher_results=teacher_results, baseline_results=baseline_results)
    readme = str(card).encode("utf-8")
    files = [*report.upload_files, ("README.md", len(readme))]
    result = PublishResult(repo_id=repo_id, files=files, card=card, report=report, dry_run=dry_run)
    if dry_run:
        return result

    api = HfApi(endpoint=endpoint, token=token)
    secret = token or get_token()
    operations = [
        CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(report.folder / n)) for n, _ in report.upload_files
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme))
    message = commit_message or f"Upload {report.architecture} from {report.folder.name}"
    _validate_card(card, api.endpoint, report.folder)
    try:
        result.repo_url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        if revision is not None and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as err:
        raise PublishError(
            _redact(
                f"Could not create or reach {repo_id} on {api.endpoint}: {_describe_error(err)}\nNothing was "
                "uploaded. Check the repo id, the endpoint and that the token may write to that namespace.",
                secret,
            )
        ) from err
    try:
        commit = api.create_commit(repo_id, operations, commit_message=message, revision=revision, create_pr=create_pr)
    except Exception as err:
        raise PublishError(
            _redact(
                f"Upload of {report.folder} to {repo_id} failed: {_describe_error(err)}\n"
                "Nothing was committed: a Hub commit is applied all at once, so the repository kept its previous "
                "files, and the local folder was not modified. Fix the cause and run the same command again; files "
                "whose upload completed are not sent twice.",
                secret,
            )
        ) from err
    result.commit_url, result.commit_oid, result.pr_url = commit.commit_url, commit.oid, commit.pr_url
    logger.info("Published %s to %s (%s)", report.folder, repo_id, commit.commit_url)
    return result


def _validate_card(card: ModelCard, endpoint: str, folder) -> None:
    """Have the Hub at `endpoint` validate the card's metadata (`/api/validate-yaml`) before anything is uploaded.

    `ModelCard.validate` would ask `HF_ENDPOINT`, not the `--endpoint` of this upload, hence the request here.
    """
    try:
        response = get_session().post(
            f"{endpoint}/api/validate-yaml",
            json={"repoType": "model", "content": str(card)},
            headers={"Accept": "text/plain"},
        )
        if response.status_code == 400:
            try:
                errors = [e.get("message", str(e)) for e in response.json().get("errors", [])]
            except (ValueError, AttributeError):
                errors = []
            raise FolderCheckError(
                folder,
                f"the Hub rejects the generated model card's metadata: {'; '.join(errors) or response.text}.",
                "check the folder's all_results.json and training_args.json (the card is built from them); run with "
                "--dry_run to read the card.",
            )
        hf_raise_for_status(response)
    except FolderCheckError:
        raise
    except Exception as err:
        raise PublishError(
            f"Could not reach {endpoint} to validate the model card: {_describe_error(err)}\nNothing was uploaded."
        ) from err


def _describe_error(err: BaseException) -> str:
    """The error and its causes, outermost first: huggingface_hub wraps the HTTP error that says what happened."""
    parts = []
    while err is not None and len(parts) < 4:
        parts.append(f"{type(err).__name__}: {str(err).strip()}")
        if isinstance(err, HfHubHTTPError):  # it already names the status, the address and the server's message
            break
        err = err.__cause__
    return "\n  caused by ".join(parts)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
