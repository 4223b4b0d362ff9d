"""The evaluation stage of an experiment: zero-shot and GLUE for every model, folded into metrics.

Loss and bits per byte come from training (``metrics.json``). Zero-shot scores go to
``MODEL/zero_shot/results.json`` and GLUE results to ``MODEL/glue/glue_results.json``; their
group scores are merged into ``MODEL/metrics.json`` under ``zero_shot`` and ``glue``. Each
evaluation is skipped when its results file exists for the same settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ExperimentConfig, config_hash, to_dict
from .io import atomic_path, atomic_write_json
from .word_checkpoints import list_word_checkpoints


def _builtin_pairs(run_dir: Path, pairs_per_phenomenon: int) -> Path:
    """Generate the built-in corpus's minimal pairs once per run folder."""
    from .data.minimal_pairs import generate_minimal_pairs

    folder = run_dir / "builtin_pairs"
    if not folder.is_dir():
        with atomic_path(folder) as tmp:
            generate_minimal_pairs(tmp, pairs_per_phenomenon=pairs_per_phenomenon)
    return folder


def zero_shot_tasks(config: ExperimentConfig) -> dict[str, Path]:
    """Task name -> folder, with ``builtin`` replaced by the generated pairs."""
    zs = config.evaluation.zero_shot
    run_dir = Path(config.run_dir)
    return {name: (_builtin_pairs(run_dir, zs.pairs_per_phenomenon) if path == "builtin" else Path(path))
            for name, path in zs.tasks.items()}


def evaluate_models(config: ExperimentConfig, names: list[str], overwrite: bool = False,
                    progress: bool = True) -> dict[str, dict]:
    """Run the configured evaluations on each model and return the updated metrics by name."""
    run_dir = Path(config.run_dir)
    results = {}
    zs, glue = config.evaluation.zero_shot, config.evaluation.glue
    tasks = zero_shot_tasks(config) if zs and zs.tasks else {}
    for name in names:
        model_dir = run_dir / name
        metrics_path = model_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        if tasks:
            from .evaluation.zero_shot import evaluate_zero_shot

            settings = config_hash({"tasks": {k: str(v) for k, v in tasks.items()}, "batch": zs.batch_size})
            out = model_dir / "zero_shot"
            if overwrite or metrics.get("zero_shot_settings") != settings or not (out / "results.json").is_file():
                print(f"[babyllama] {name}: zero-shot {', '.join(tasks)}", flush=True)
                zero = evaluate_zero_shot(model_dir, tasks, out, batch_size=zs.batch_size, progress=progress)
                metrics["zero_shot"] = zero["summary"]
                metrics["zero_shot_settings"] = settings
            if zs.checkpoints and list_word_checkpoints(model_dir):
                from .evaluation.fast_eval import score_checkpoints

                print(f"[babyllama] {name}: zero-shot on the word-count checkpoints", flush=True)
                score_checkpoints(model_dir, tasks, batch_size=zs.batch_size, progress=progress, overwrite=overwrite,
                                  final_results=out)
        if glue and glue.data:
            from .evaluation.glue import evaluate_glue, glue_summary

            settings = config_hash(to_dict(glue))
            if overwrite or metrics.get("glue_settings") != settings:
                print(f"[babyllama] {name}: GLUE finetuning", flush=True)
                res = evaluate_glue(model_dir, glue.data, model_dir / "glue", tasks=glue.tasks,
                                    max_train_examples=glue.max_train_examples, progress=progress)
                metrics["glue"] = glue_summary(res)
                metrics["glue_settings"] = settings
        atomic_write_json(metrics_path, metrics)
        results[name] = metrics
    return results
