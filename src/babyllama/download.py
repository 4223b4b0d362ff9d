"""Fetch a BabyLM corpus from the Hugging Face Hub (``babyllama download``).

Downloads a dataset repository's files into a local folder and checks that it is a corpus the
pipeline reads (``*.train`` files, plus ``*.dev`` / ``*.test``). Offline, or without
``huggingface_hub`` installed, it fails with one line saying so; nothing is left half-written.
"""

from __future__ import annotations

from pathlib import Path

from .data.corpus import discover
from .errors import UserError
from .io import atomic_path


def download_corpus(repo: str, out_dir: Path, revision: str | None = None) -> Path:
    """Download dataset ``repo`` into ``out_dir`` (atomically) and check its layout."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise UserError("download needs huggingface_hub: pip install 'babyllama[hub]'") from None
    if out_dir.exists():
        raise UserError(f"{out_dir}: already exists; choose a new folder")
    with atomic_path(out_dir) as tmp:
        try:
            snapshot_download(repo_id=repo, repo_type="dataset", revision=revision, local_dir=tmp,
                              allow_patterns=["*.train", "*.dev", "*.test", "*.train.gz", "*.dev.gz", "*.test.gz",
                                              "**/*.train", "**/*.dev", "**/*.test"])
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"download of {repo} failed (offline, or no such dataset?): {first[:200]}") from None
        try:
            discover(tmp)
        except UserError:
            raise UserError(f"{repo}: the dataset holds no *.train files; point --repo at a BabyLM text release") from None
    print(f"downloaded {repo} -> {out_dir}")
    return out_dir
