"""``babyllama push MODEL_DIR --repo USER/NAME``: a model and its word checkpoints to the Hub.

The final model (the top-level files of ``MODEL_DIR``: config, weights, tokenizer, resolved
config, metrics) goes to the repository's ``main`` branch; each word-count checkpoint
``MODEL_DIR/word_checkpoints/chck_{N}M`` goes to a branch of the same name, the revision names
the BabyLM 2025 pipeline evaluates (``chck_1M`` .. ``chck_10M``, ``chck_20M`` .. ``chck_100M``,
and on to ``chck_1000M`` for the strict track). A branch holds exactly its checkpoint's files.
Re-running the command updates the same repository and branches.

Uses ``huggingface_hub.HfApi`` (``create_repo``, ``upload_folder``, ``create_branch``); the token
comes from ``--token``, ``HF_TOKEN`` or ``hf auth login``. Offline, without a token or without
access it fails in one line.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UserError
from .word_checkpoints import is_pipeline_name, list_word_checkpoints

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_files(model_dir: Path) -> list[str]:
    """Top-level file names of a model folder to upload (sub-folders and hidden files stay local)."""
    if not (model_dir / "config.json").is_file() or not any(model_dir.glob("*.safetensors")):
        raise UserError(f"{model_dir}: not a model folder (needs config.json and *.safetensors weights)")
    return sorted(p.name for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def push_model(model_dir: str | Path, repo: str, private: bool = False, token: str | None = None,
               checkpoints: bool = True) -> list[str]:
    """Upload ``model_dir`` to ``repo`` (``main``) and each word checkpoint to its branch; return the
    revisions written, ``main`` first."""
    model_dir = Path(model_dir)
    if not _REPO_ID.match(repo):
        raise UserError(f"--repo {repo!r}: expected USER/NAME (letters, digits, '-', '_', '.')")
    files = model_files(model_dir)
    found = list_word_checkpoints(model_dir) if checkpoints else []
    try:
        from huggingface_hub import HfApi, errors
    except ImportError:
        raise UserError("push needs huggingface_hub: pip install 'huggingface_hub>=1.0'") from None
    failures = tuple(e for e in (getattr(errors, "HTTPError", None), OSError, ValueError) if e is not None)
    api = HfApi(token=token)
    written = []
    try:
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=model_dir, allow_patterns=files,
                          commit_message=f"babyllama push: final model ({model_dir.name})")
        print(f"pushed {model_dir} -> {url} (main)", flush=True)
        written.append("main")
        for _, folder in found:
            branch = folder.name
            api.create_branch(repo, branch=branch, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=folder, revision=branch, delete_patterns=["*"],
                              commit_message=f"babyllama push: word checkpoint {branch}")
            note = "" if is_pipeline_name(branch) else " (the 2025 pipeline reads only chck_{N}M names)"
            print(f"pushed {folder} -> branch {branch}{note}", flush=True)
            written.append(branch)
    except failures as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        done = f" after {', '.join(written)}" if written else ""
        raise UserError(f"push to {repo} failed{done} (offline, no token, or no write access?): {first[:200]}") from None
    return written


def cmd_push(args) -> int:
    """Upload a model folder to the Hugging Face Hub, each word-count checkpoint as a branch."""
    push_model(args.model_dir, args.repo, private=args.private, token=args.token,
               checkpoints=not args.no_checkpoints)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("push", help="upload a model and its word checkpoints to the Hugging Face Hub",
                              description=cmd_push.__doc__ + " The final model goes to main; each "
                              "MODEL_DIR/word_checkpoints/chck_{N}M to a branch of that name, the revisions the "
                              "BabyLM 2025 pipeline evaluates.")
    p.add_argument("model_dir", help="model folder (from pretrain, distill or run)")
    p.add_argument("--repo", required=True, metavar="USER/NAME", help="model repository on the Hub (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    p.add_argument("--no-checkpoints", action="store_true", help="upload only the final model")
    p.set_defaults(func=cmd_push)
