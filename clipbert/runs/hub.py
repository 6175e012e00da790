"""Model folders on the Hugging Face Hub: fetched through its local cache, pushed with its API.

Fetching honours the Hub's own settings: ``HF_HUB_CACHE`` (where the cache is) and
``HF_HUB_OFFLINE=1`` (no network: only what the cache holds), read when ``huggingface_hub`` is
first imported, or ``cache_dir`` and ``local_files_only`` given here.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from clipbert.runs.model_folder import WEIGHTS, WRITE_HINT, is_model_folder


def model_folder_path(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> Path:
    """A local folder as it is, or a Hub repository id (``org/name``) as the folder of its
    snapshot in the Hub cache, downloaded first unless the cache has it or the Hub is off."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        raise FileNotFoundError(f"{name_or_path}: no such model folder") from None
    try:
        snapshot = snapshot_download(
            str(name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            library_name="clipbert",
        )
    except OSError as err:  # the Hub's errors: not found, offline and not cached, unreachable
        raise FileNotFoundError(
            f"{name_or_path}: no such local folder, and the Hugging Face Hub did not give it "
            f"({type(err).__name__}: {err})"
        ) from err
    return Path(snapshot)


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload clipbert model folder",
) -> str:
    """Upload a model folder to the Hub repository ``repo_id`` (created if needed, ``private``
    as asked); returns the commit's URL. Only the folder's own files go up, and only from a
    complete folder. Needs network and a token (``hf auth login``, ``HF_TOKEN`` or ``token``)."""
    folder = Path(folder).expanduser()
    if not (is_model_folder(folder) and (folder / WEIGHTS).is_file()):
        raise FileNotFoundError(f"{folder} is not a complete clipbert model folder; {WRITE_HINT}")
    api = HfApi(token=token, library_name="clipbert")
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        allow_patterns=[WEIGHTS, "*.json", "*.md", "tokenizer/*"],
    )
    return commit.commit_url
