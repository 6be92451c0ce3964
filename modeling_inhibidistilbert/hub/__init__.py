"""Publish a trained InhibiDistilBERT folder to the Hugging Face Hub: folder checks, model card, one-commit upload.

`publish(folder, repo_id)` is the one entry point that `hub_upload.py` and the training scripts' `--push_to_hub`
share. It runs `check_folder` (checks.py: refuses any folder that would not load and run from the Hub, and validates
exactly the files it uploads), builds the model card with `build_model_card` (card.py: `modelcard_template.md`
filled from the run's own results and the task registry), has the Hub validate the card's metadata, then uploads
(upload.py) in a single commit. The folder itself is never modified.
"""

from .card import build_model_card
from .checks import CODE_FILES, PACKAGE_DIR, FolderCheckError, FolderReport, check_folder
from .upload import PublishError, PublishResult, publish

__all__ = [
    "CODE_FILES",
    "PACKAGE_DIR",
    "FolderCheckError",
    "FolderReport",
    "PublishError",
    "PublishResult",
    "build_model_card",
    "check_folder",
    "publish",
]
