"""The GPU check (benchmarks/device_check.py) in its reduced CPU mode, so it cannot rot between GPU
sessions: every part runs and records sane figures. And ``batch_size: auto`` (embryo_xai.device):
exactly today's default on the CPU (same maps, same metric values), sized from free memory on CUDA."""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

import embryo_xai.device as device_module
from benchmarks import device_check
from embryo_xai.device import auto_batch_size, check_batch_size, resolve_batch_size
from embryo_xai.explainers import create_explainer, explainer_class, list_explainers
from embryo_xai.metrics import METRIC_NAMES, FaithfulnessConfig, faithfulness, forward_passes_per_image
from embryo_xai.models import create_model, list_models


@pytest.fixture(scope="module")
def reduced(tmp_path_factory) -> tuple[dict, object]:
    out = tmp_path_factory.mktemp("device_check") / "device_check"
    return device_check.main(["--reduced", "--out", str(out)]), out


def rows(results: dict, part: str) -> list[dict]:
    return results["sections"][part]["rows"]


def test_every_part_runs_and_is_written(reduced):
    results, out = reduced
    assert list(results["sections"]) == list(device_check.PARTS)
    for name, section in results["sections"].items():
        assert section["status"] == "ok", (name, section.get("error"), section.get("traceback"))
        assert 0 <= section["seconds"] <= section["budget_s"] + results["settings"]["hard_grace_s"]
    assert 0 < results["total_seconds"] < results["settings"]["total_s"]
    assert results["settings"]["reduced"] and results["bf16_peak_tflops"] is None  # a CPU has no entry
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(results, default=float))
    with open(out.with_suffix(".csv"), newline="") as handle:
        written = dict(csv.reader(handle))
    assert written["sections.engine.status"] == "ok" and "sections.projection.rows[1].hours" in written
    table = device_check.table_rows(results)
    assert {part for part, _, _ in table} == set(device_check.PARTS)


def test_code_path_checks_pass(reduced):
    results, _ = reduced
    items = {item["name"]: item for item in results["sections"]["cuda_paths"]["items"]}
    cnn = create_model("cnn", backbone="resnet10t")
    methods = [m for m in list_explainers() if explainer_class(m).cannot_explain(cnn) is None]
    attention = [m for m in list_models() if m != "cnn"
                 and explainer_class("attention").cannot_explain(create_model(m, backbone="resnet10t")) is None]
    expected = {"batch_size auto", "engine float32", "engine bf16",
                *(f"explain {m} {p}" for m in methods for p in ("float32", "bf16")),
                *(f"explain attention ({m}) bf16" for m in attention),
                *(f"fast_dev_run {m} bf16-mixed" for m in list_models())}
    assert len(methods) >= 7 and len(attention) >= 4 and expected <= set(items)
    assert [name for name, item in items.items() if not item["passed"]] == []
    assert results["sections"]["cuda_paths"]["failed"] == 0
    assert items["batch_size auto"]["auto_batch_size"] == 64  # the CPU: exactly the default
    assert items["engine float32"]["forwards"] == 2 * forward_passes_per_image((4, 4), METRIC_NAMES)
    assert all(0 <= items[f"fast_dev_run {m} bf16-mixed"]["test_acc_video"] <= 1 for m in list_models())


def test_training_throughput_rows(reduced):
    results, _ = reduced
    measured = {(row["model"], row["input"].split(",")[0]): row for row in rows(results, "training")}
    assert set(measured) == {(m, source) for m in ("cnn", "brnpa") for source in ("device tensors", "DataModule")}
    for row in measured.values():
        assert row["steps"] == 3 and row["batch_size"] == 4 and row["size"] == 64
        assert row["images_per_s"] > 0 and row["seconds"] > 0 and row["peak_memory_mib"] > 0
        assert row["achieved_tflops"] > 0 and row["bf16_peak_fraction"] is None
        assert row["images_per_s"] == pytest.approx(row["steps"] * row["batch_size"] / row["seconds"])
    # BR-NPA's stride-8 maps cost more per image than the CNN's stride 32
    assert measured["brnpa", "device tensors"]["train_gflops_per_image"] > \
        measured["cnn", "device tensors"]["train_gflops_per_image"] > 0


def test_engine_rows(reduced):
    results, _ = reduced
    by_precision = {row["precision"]: row for row in rows(results, "engine")}
    assert set(by_precision) == {"bf16", "float32"}
    for row in by_precision.values():
        assert row["forwards"] == 2 * forward_passes_per_image((4, 4), METRIC_NAMES) == 70
        assert row["batch_size"] == 64 and row["largest_chunk"] == 64  # auto on the CPU = the default
        assert row["engine_fps"] > 0 and row["bare_fps"] > 0 and 0.05 < row["efficiency"] < 5
        assert row["engine_fps"] == pytest.approx(row["forwards"] / row["seconds"])
        assert row["peak_memory_mib"] > 0 and row["achieved_tflops"] > 0
    assert by_precision["bf16"]["channels_last"] and not by_precision["float32"]["channels_last"]
    assert results["sections"]["engine"]["forward_gflops"] > 0
    assert [row["skipped"] for row in rows(results, "compile")] and \
        {row["compile_mode"] for row in rows(results, "compile")} == {"default", "reduce-overhead"}


def test_explainer_rows(reduced):
    results, _ = reduced
    measured = {(row["method"], row["precision"]): row for row in rows(results, "explainers")}
    assert set(measured) == {(m, p) for m in ("scorecam", "rise") for p in ("bf16", "float32")}
    for (method, _), row in measured.items():
        assert row["images_per_s"] > 0 and row["peak_memory_mib"] > 0 and row["batch_size"] == 64
        if method == "scorecam":  # a masked forward per varying channel of layer4, the black image once if any is not
            assert row["channels"] == 512 and 0 < row["varying_channels"] <= 512
            assert row["forwards_per_image"] == row["varying_channels"] + (row["varying_channels"] < 512)
            assert row["largest_chunk"] == 64
        else:
            assert row["masks"] == 16 and row["forwards_per_image"] == 16 and row["largest_chunk"] == 16


def test_projection(reduced):
    results, _ = reduced
    projection = results["sections"]["projection"]
    sample, full = projection["rows"]
    assert (sample["images"], full["images"]) == (100, 28282)
    assert sample["hours"] > 0 and full["hours"] / sample["hours"] == pytest.approx(282.82)
    assert projection["approaches"] == 9 and projection["metrics"] == 7
    assert projection["per_approach"]["CNN/AM"]["metric_forwards"] == 395
    assert projection["per_approach"]["CNN/RISE"]["metric_forwards"] == 395  # 14x14: RISE's feature-map maps
    scorecam = next(r for r in rows(results, "explainers") if r["method"] == "scorecam" and r["precision"] == "bf16")
    explain_seconds = projection["per_approach"]["CNN/Score-CAM"]["explainer_seconds"]
    assert explain_seconds == pytest.approx(1 / scorecam["images_per_s"])
    assert projection["brnpa_bare_fps"] > 0 and projection["engine"]["bf16_peak_fraction"] is None
    per_image = sum(a["metric_seconds"] + a["explainer_seconds"] for a in projection["per_approach"].values())
    assert sample["hours"] == pytest.approx(per_image * 100 / 3600)


def test_a_failing_or_overrunning_part_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(ctx, part, section):
        raise RuntimeError("boom")

    def endless(ctx, part, section):  # ignores its budget: SIGALRM stops it
        section["rows"] = [{"partial": 1}]
        while True:
            time.sleep(0.01)

    monkeypatch.setitem(device_check.FUNCTIONS, "engine", broken)
    monkeypatch.setitem(device_check.FUNCTIONS, "compile", endless)
    settings = device_check.Settings.for_mode(True, "cpu")
    settings.budgets["compile"], settings.hard_grace_s = 1.0, 0.5
    ctx = device_check.Context(settings, torch.device("cpu"), tmp_path, {"sections": {}, "bf16_peak_tflops": None})
    total = device_check.Budget(120)
    for name in ("engine", "compile", "projection"):
        device_check.run_part(ctx, name, total)
    sections = ctx.results["sections"]
    assert sections["engine"]["status"] == "error" and "boom" in sections["engine"]["error"]
    assert sections["compile"]["status"] == "timeout" and sections["compile"]["rows"] == [{"partial": 1}]
    assert 1.4 <= sections["compile"]["seconds"] < 10
    assert sections["projection"]["status"] == "ok"  # the run went on, without the engine's figures
    assert "engine part missing" in sections["projection"]["notes"][0]


def test_bf16_peaks_by_device_name():
    peak = device_check.bf16_peak_tflops
    assert peak("NVIDIA H100 80GB HBM3") == peak("NVIDIA H200") == 989
    assert peak("NVIDIA H100 PCIe") == 756 and peak("NVIDIA A100-SXM4-80GB") == 312
    assert peak("NVIDIA L4") == 121 and peak("NVIDIA L40S") == 362 and peak("Tesla T4") is None


def test_auto_batch_size_is_the_default_on_the_cpu_and_changes_nothing():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert resolve_batch_size("auto", images) == resolve_batch_size(None, images) == 64
    assert resolve_batch_size(5, images) == 5 and check_batch_size("12") == 12
    for bad in (0, -3, "big"):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            check_batch_size(bad)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        FaithfulnessConfig(batch_size=0)
    torch.manual_seed(0)
    model = create_model("cnn", backbone="resnet10t").eval()
    for method, options in (("scorecam", {}), ("rise", {"num_masks": 80}), ("ablationcam", {})):
        auto = create_explainer(method, batch_size="auto", **options)
        assert auto.chunk_size(images) == 64
        assert torch.equal(auto(model, images), create_explainer(method, batch_size=64, **options)(model, images))
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(1))
    automatic, default = faithfulness(model, images, maps, batch_size="auto"), faithfulness(model, images, maps)
    for name in METRIC_NAMES:
        torch.testing.assert_close(automatic[name], default[name], rtol=0, atol=0, equal_nan=True)


def test_auto_batch_size_from_free_cuda_memory(monkeypatch):
    monkeypatch.setattr(device_module, "free_memory_bytes", lambda device: 10 * 2**30)
    assert auto_batch_size(100 * 2**20, "cuda") == 48  # half of 10 GiB / 100 MiB = 51, down to a multiple of 8
    assert auto_batch_size(1, "cuda") == device_module.MAX_AUTO_BATCH_SIZE
    assert auto_batch_size(2**40, "cuda") == 1
    assert auto_batch_size(100 * 2**20, "cpu") == 48  # the device's free memory decides (patched here)
    monkeypatch.setattr(device_module, "free_memory_bytes", lambda device: None)
    assert auto_batch_size(100 * 2**20, "cpu") == 64


def test_compiled_engine_runs_one_static_shape(monkeypatch):
    """compile_mode pads every chunk to batch_size rows (one shape for the compiled graph / CUDA graphs)
    and gives the values of the plain engine; torch.compile itself is stubbed (inductor is minutes on a CPU)."""
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: model)
    torch.manual_seed(0)
    model = create_model("cnn", backbone="resnet10t").eval()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1))
    shapes: set[int] = set()
    handle = model.register_forward_pre_hook(lambda module, args: shapes.add(args[0].shape[0]))
    compiled = faithfulness(model, images, maps, batch_size=16, compile_mode="reduce-overhead")
    handle.remove()
    plain = faithfulness(model, images, maps, batch_size=16)
    assert shapes == {16}
    for name in METRIC_NAMES:
        torch.testing.assert_close(compiled[name], plain[name], rtol=1e-5, atol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="compile_mode"):
        faithfulness(model, images, maps, compile_mode="fast")
