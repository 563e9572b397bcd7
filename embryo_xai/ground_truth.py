"""``python -m embryo_xai.ground_truth runs=[DIR ...]``: the ground-truth layer of a study (synthetic set only).

For the images the faithfulness runs under ``runs`` explained (one sample, shared by every approach):

1. redraws each frame once per structure with that structure removed (``data/synthetic/counterfactual``),
   cached in ``counterfactuals.npz``;
2. per model, the **true importance** of each structure: the drop of the explained class's score
   (``metrics/ground_truth.py``; a few extra forwards per image);
3. per approach (model + method, the control pseudo-explainers included), the **ground-truth
   faithfulness** of its saved maps (Spearman of per-structure saliency vs importance, top-1 hit) and the
   **localisation** of the maps against the stage-defining structures (pointing game, relevance mass and
   rank accuracy, ROC-AUC: ``metrics/localisation.py``);
4. per approach, the **sanity checks** on a few images: cascading model-parameter randomisation and the
   random-logit test (``sanity.py``).

Writes a ``GroundTruthRun`` (``runs.py``) into the run dir; the report's ground-truth section reads it
with the faithfulness rows. On a data set that is not synthetic (the real one has no structures to
remove) it writes why in ``ground_truth.json`` and stops: one line in the log, no error.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torchvision import tv_tensors
from tqdm import tqdm

from embryo_xai.data.dataset import build_transform, to_model_input
from embryo_xai.data.synthetic import counterfactual
from embryo_xai.errors import UsageError, exit_on_usage_error
from embryo_xai.evaluation import EvaluationConfig
from embryo_xai.explainers import create_explainer
from embryo_xai.faithfulness import resolve_device
from embryo_xai.metrics.config import FaithfulnessConfig
from embryo_xai.metrics.ground_truth import ground_truth_faithfulness, structure_saliency, true_importance
from embryo_xai.metrics.localisation import LOCALISATION_METRICS
from embryo_xai.models.checkpoint import load_classifier
from embryo_xai.runs import FaithfulnessRun, GroundTruthRun
from embryo_xai.sanity import parameter_randomisation, random_logit
from embryo_xai.utils import write_json

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# The explained images and their counterfactuals, as the models saw them
# ---------------------------------------------------------------------------------------------------

def explained_frames(runs: list[FaithfulnessRun]) -> pd.DataFrame:
    """image_id, video, run, label, prediction per model: the one sample every run explained."""
    frames = []
    for run in runs:
        rows = run.rows()
        if rows is None:
            raise UsageError(f"{run.dir} has no rows: run its faithfulness step first")
        frames.append(rows.drop_duplicates("image_id")[["model", "image_id", "video", "run", "label", "prediction"]])
    every = pd.concat(frames)
    frames_of = every.groupby("image_id")[["video", "run"]].nunique()
    if (frames_of > 1).any(axis=None) or every.groupby("model")["image_id"].nunique().nunique() != 1:
        raise UsageError("the faithfulness runs explained different images; ground truth needs one shared sample "
                         "(same n_images, sample_seed and data set)")
    return every


def model_inputs(frames: np.ndarray, data: dict, device: torch.device) -> torch.Tensor:
    """(K, H, W) uint8 frames -> (K, 3, h, w) model inputs through the test transform (resize, centre crop)."""
    transform = build_transform(False, int(data["crop_size"]), data.get("resize"))
    crops = transform(torch.from_numpy(frames)[:, None])
    return to_model_input(crops.to(device))


def crop_masks(masks: np.ndarray, data: dict, device: torch.device) -> torch.Tensor:
    """(K, S, H, W) bool structure masks -> the crops' geometry (nearest resampling: a mask stays a mask)."""
    transform = build_transform(False, int(data["crop_size"]), data.get("resize"))
    k, s, height, width = masks.shape
    cropped = transform(tv_tensors.Mask(torch.from_numpy(masks.reshape(k * s, height, width)).to(torch.uint8)))
    return cropped.reshape(k, s, *cropped.shape[-2:]).bool().to(device)


def check_same_crops(originals: torch.Tensor, run: FaithfulnessRun, image_ids: list[int]) -> None:
    """The redrawn originals must be exactly the crops the run's model explained (maps.npz): otherwise the
    counterfactuals would not be counterfactuals of those images."""
    saved = run.crops()
    if not saved:
        return
    ours = (originals[:, 0] * 255).round().to(torch.uint8).cpu().numpy()
    for row, image_id in enumerate(image_ids):
        if image_id in saved and not np.array_equal(saved[image_id], ours[row]):
            raise UsageError(f"image {image_id}: the redrawn frame differs from the crop {run.dir} explained; was "
                             "the data set regenerated with other settings since?")


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

def _settings(run: FaithfulnessRun) -> dict:
    settings = run.settings()
    if not settings.get("ckpt"):
        raise UsageError(f"{run.dir}: settings.json names no checkpoint; rerun its faithfulness step")
    return settings


def run(cfg: DictConfig) -> dict:
    out = GroundTruthRun(Path(cfg.paths.output_dir))
    runs = [r for r in FaithfulnessRun.find(cfg.runs) if r.complete()]
    if not runs:
        raise UsageError(f"no finished faithfulness run under runs={list(cfg.runs)}")
    data = _settings(runs[0])["data"]
    reason = counterfactual.why_not_synthetic(Path(data["root"]))
    if reason:
        log.info("ground truth skipped: %s", reason)
        out.dir.mkdir(parents=True, exist_ok=True)
        summary = {"skipped": reason}
        write_json(out.summary_file, summary)
        return summary
    device = resolve_device(cfg.device)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    images = explained_frames(runs)
    sample = images.drop_duplicates("image_id").sort_values("image_id")
    image_ids = sample["image_id"].tolist()
    frames = list(zip(sample["video"], sample["run"].astype(int)))
    if out.counterfactuals_file.is_file():
        sets = counterfactual.load(out.counterfactuals_file)
    else:
        sets = counterfactual.render_many(Path(data["root"]), frames)
        out.dir.mkdir(parents=True, exist_ok=True)
        counterfactual.save(out.counterfactuals_file, sets)
    timings["counterfactuals_s"] = time.perf_counter() - started

    # Padded to the image with most structures; `valid` says which are there (and inside the crop).
    n_structures = max(len(s.names) for s in sets)
    height, width = sets[0].original.shape
    masks = np.zeros((len(sets), n_structures, height, width), bool)
    for row, s in enumerate(sets):
        masks[row, : len(s.names)] = s.masks
    crop_structures = crop_masks(masks, data, device)
    valid = crop_structures.flatten(2).any(-1)
    defining = torch.zeros(len(sets), n_structures, dtype=torch.bool, device=device)
    for row, s in enumerate(sets):
        defining[row, : len(s.names)] = torch.as_tensor(s.defining, device=device)
    stage_masks = (crop_structures & defining[..., None, None]).any(1)
    originals = model_inputs(np.stack([s.original for s in sets]), data, device)
    structure_image = torch.tensor([row for row, s in enumerate(sets) for _ in s.names], device=device)
    removed = model_inputs(np.concatenate([s.removed for s in sets]), data, device)
    flat_valid = torch.cat([valid[row, : len(s.names)] for row, s in enumerate(sets)])

    by_model: dict[str, list[FaithfulnessRun]] = defaultdict(list)
    for r in runs:
        by_model[_settings(r)["ckpt"]].append(r)
    importance_rows, rows, sanity_rows = [], [], []
    bar = tqdm(total=len(runs), desc="ground truth", unit="approach", disable=not cfg.progress)
    for ckpt, model_runs in by_model.items():
        settings = _settings(model_runs[0])
        model_name = settings["model"]
        check_same_crops(originals, model_runs[0], image_ids)
        model, _ = load_classifier(ckpt, map_location=device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        metric_cfg = FaithfulnessConfig.from_kwargs(**settings["metric_cfg"])
        evaluation = EvaluationConfig(precision=settings.get("precision", "32"))
        explained = images[images["model"] == model_name].drop_duplicates("image_id").set_index("image_id")
        column = "label" if metric_cfg.explained_class == "label" else "prediction"
        targets = torch.tensor(explained.loc[image_ids, column].to_numpy(), device=device)

        tick = time.perf_counter()
        with evaluation.autocast(device):
            original_scores, drops = true_importance(model, originals, removed, structure_image, targets,
                                                     metric_cfg.scorer, metric_cfg.batch_size)
        timings[f"importance_{model_name}_s"] = time.perf_counter() - tick
        importance = torch.full((len(sets), n_structures), torch.nan, device=device)
        position = torch.cat([torch.arange(len(s.names), device=device) for s in sets])
        importance[structure_image, position] = torch.where(flat_valid, drops, torch.nan)
        for k, (row, pos) in enumerate(zip(structure_image.tolist(), position.tolist())):
            s = sets[row]
            importance_rows.append((model_name, image_ids[row], s.names[pos], s.kinds[pos], bool(s.defining[pos]),
                                    bool(flat_valid[k]), float(original_scores[row]), float(drops[k])))

        for approach in model_runs:
            method_cfg = _settings(approach)["method_cfg"]
            method = method_cfg["name"]
            stored = approach.maps()
            maps = torch.stack([torch.from_numpy(stored[i]) for i in image_ids]).to(device)
            saliency = structure_saliency(maps, crop_structures, metric_cfg.upsample)
            scores = ground_truth_faithfulness(saliency, importance, valid)
            for name, (function, _, _) in LOCALISATION_METRICS.items():
                scores[name] = function(maps, stage_masks, upsample=metric_cfg.upsample)
            for row, image_id in enumerate(image_ids):
                rows.append({"model": model_name, "method": method, "image_id": image_id,
                             **{name: float(values[row]) for name, values in scores.items()}})

            tick = time.perf_counter()
            sanity_rows += sanity_checks(model, model_name, method_cfg, originals, targets, image_ids, cfg.sanity,
                                         evaluation, device)
            timings[f"sanity_{model_name}_{method}_s"] = time.perf_counter() - tick
            bar.update()
    bar.close()

    pd.DataFrame(importance_rows, columns=["model", "image_id", "structure", "kind", "defining", "in_crop",
                                           "original_score", "importance"]).to_csv(out.importance_file, index=False)
    pd.DataFrame(rows).to_csv(out.rows_file, index=False)
    pd.DataFrame(sanity_rows, columns=["model", "method", "test", "step", "layer", "image_id",
                                       "spearman"]).to_csv(out.sanity_file, index=False)
    timings["total_s"] = time.perf_counter() - started
    summary = {"n_images": len(image_ids), "n_structures": int(flat_valid.sum()), "approaches": len(runs),
               "runs": [str(r.dir.resolve()) for r in runs], "timings": timings}
    write_json(out.summary_file, summary)
    log.info("ground truth of %d approaches on %d images (%d structures) in %.0f s -> %s", len(runs),
             len(image_ids), summary["n_structures"], timings["total_s"], out.dir)
    return summary


def sanity_checks(model: torch.nn.Module, model_name: str, method_cfg: dict, images: torch.Tensor,
                  targets: torch.Tensor, image_ids: list[int], cfg: DictConfig, evaluation: EvaluationConfig,
                  device: torch.device) -> list[tuple]:
    """Rows (model, method, test, step, layer, image_id, spearman) of the randomisation and random-logit tests
    (``cfg``: the ``sanity`` node), on the first ``cfg.n_images`` images."""
    explainer = create_explainer(**method_cfg)
    method, n = method_cfg["name"], int(cfg.n_images)
    images, targets = images[:n], targets[:n]
    rows = []
    with evaluation.autocast(device):
        original = explainer(model, images, targets)  # shared by both tests
        cascade = parameter_randomisation(model, explainer, images, targets, cfg.seed, cfg.steps, original)
        logit = random_logit(model, explainer, images, targets, cfg.seed, original)
    for step, (layer, similarity) in enumerate(cascade, start=1):
        rows += [(model_name, method, "randomisation", step, layer, image_ids[i], float(v))
                 for i, v in enumerate(similarity.tolist())]
    rows += [(model_name, method, "random_logit", 0, "", image_ids[i], float(v)) for i, v in enumerate(logit.tolist())]
    return rows


@hydra.main(version_base="1.3", config_path="../conf", config_name="ground_truth")
@exit_on_usage_error
def main(cfg: DictConfig) -> None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    run(cfg)


if __name__ == "__main__":
    main()
