"""Correctness of the four attention models (ABN, B-CNN, IBP, BR-NPA): tiny resnet18 inputs."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats
import torch
from omegaconf import OmegaConf

from embryo_xai.errors import CheckpointError
from embryo_xai.models import abn, bcnn, brnpa, cnn, ibp  # noqa: F401  (registers the models)
from embryo_xai.models.backbone import PretrainedWeightsUnavailable
from embryo_xai.models.checkpoint import load_backbone, load_classifier
from embryo_xai.models.module import EmbryoLitModule
from embryo_xai.models.registry import create_model
from tests.helpers import REPO, compose_config

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
ATTENTION_MODELS = ("abn", "bcnn", "ibp", "brnpa")
# Input / attention-map side of each model with its default options.
MAP_STRIDE = {"abn": 16, "bcnn": 32, "ibp": 32, "brnpa": 8}


def build(name: str, seed: int = 0, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, backbone="resnet18", **cfg)


def images(batch: int = 4, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


LABELS = torch.tensor([0, 5, 9, 15])


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network and an empty weight cache: Hugging Face offline mode (the environment variables and
    the already-imported constants), and any socket that tries to connect fails. Returns the cache."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))

    def refuse(*args, **kwargs):
        raise OSError("network blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return cache


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_output_shapes_at_several_input_sizes(name: str) -> None:
    model = build(name).eval()
    assert model.has_attention
    with torch.inference_mode():
        for size in (64, 96, 112):
            x = images(2, size)
            side = -(-size // MAP_STRIDE[name])  # ResNet convs round up
            assert model(x).shape == (2, 16)
            assert model.attention(x).shape == (2, side, side)


def test_brnpa_stride_8_maps_are_4x_stride_32() -> None:
    x = images(2, 64)
    with torch.inference_mode():
        high = build("brnpa", output_stride=8).eval().attention(x)
        low = build("brnpa", output_stride=32).eval().attention(x)
    assert low.shape == (2, 2, 2) and high.shape == (2, 8, 8)


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_gradients_reach_every_trainable_parameter(name: str) -> None:
    model = build(name).train()
    # timm zero-initialises each residual block's last BN scale, which blocks the gradient of the
    # block's convs at step 0 only; set it to 1 so an all-zero gradient means a real disconnection.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d) and not module.weight.any():
            torch.nn.init.ones_(module.weight)
    losses = model.loss(model.forward_train(images()), LABELS)
    losses["loss"].backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}.{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}.{param_name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name}.{param_name} has an all-zero gradient"


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_a_few_optimisation_steps_lower_the_loss(name: str) -> None:
    model = build(name).train()
    x = images()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        loss = model.loss(model.forward_train(x), LABELS)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.detach())
    assert history[-1] < 0.7 * history[0], f"{name} loss {[round(float(v), 3) for v in history]}"


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_same_seed_gives_same_outputs(name: str) -> None:
    x = images(2)
    with torch.inference_mode():
        first, second = (build(name, seed=3).eval() for _ in range(2))
        other = build(name, seed=4).eval()
        assert torch.equal(first(x), second(x))
        assert torch.equal(first.attention(x), second.attention(x))
        assert not torch.equal(first(x), other(x))


@pytest.mark.parametrize(("name", "size", "cfg"), [
    ("abn", 16, {}), ("bcnn", 32, {}), ("ibp", 32, {}), ("brnpa", 8, {}),
    ("brnpa", 16, {"num_parts": 5}),  # a 2x2 map has fewer pixels than parts
])
def test_too_small_feature_map_fails_clearly(name: str, size: int, cfg: dict) -> None:
    model = build(name, **cfg).eval()
    with pytest.raises(ValueError, match=rf"{name}: the feature map is \d+x\d+ for a {size}x{size} input"):
        model(images(2, size))


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="known models: abn, bcnn, brnpa, cnn, ibp"):
        create_model("vit")


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_conf_yaml_builds_the_model(name: str) -> None:
    net = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml").net, resolve=True)
    net["backbone"] = "resnet18"
    model = create_model(num_classes=16, **net)
    assert type(model).__module__ == f"embryo_xai.models.{name}"
    with torch.inference_mode():
        assert model.eval().attention(images(2)).shape[-1] == -(-64 // MAP_STRIDE[name])


# ---------------------------------------------------------------- ABN


def test_abn_map_in_unit_interval_and_perception_input_is_x_map_plus_x() -> None:
    model = build("abn").eval()
    captured = {}
    model.backbone.layer3.register_forward_hook(lambda m, i, out: captured.setdefault("layer3", out))
    model.backbone.layer4.register_forward_pre_hook(lambda m, i: captured.setdefault("layer4_in", i[0]))
    with torch.inference_mode():
        outputs = model.forward_train(images(2))
    attention_map = outputs["attention_map"]
    assert ((attention_map > 0) & (attention_map < 1)).all()
    layer3 = captured["layer3"]
    assert attention_map.shape == (2, *layer3.shape[-2:])
    torch.testing.assert_close(captured["layer4_in"], layer3 * attention_map.unsqueeze(1) + layer3)


def test_abn_attention_block_keeps_layer3_resolution_and_layer4_weights() -> None:
    model = build("abn")
    strides = {m.stride for m in model.attention_block.modules() if isinstance(m, torch.nn.Conv2d)}
    assert strides == {(1, 1)}
    torch.testing.assert_close(model.attention_block[0].conv1.weight, model.backbone.layer4[0].conv1.weight)


def test_abn_map_comes_from_a_3x3_convolution() -> None:
    model = build("abn").eval()
    assert model.map_conv.kernel_size == (3, 3) and model.map_conv.padding == (1, 1)
    assert model.map_conv.in_channels == 16 and model.map_conv.out_channels == 1
    branch = torch.zeros(1, 16, 5, 5)
    branch[0, :, 2, 2] = 1.0  # one active pixel reaches its 8 neighbours through the 3x3 kernel
    with torch.inference_mode():
        touched = model.map_conv(branch)[0, 0] != 0
    assert touched[1:4, 1:4].all() and touched.sum() == 9
    assert build("abn", map_kernel_size=1).map_conv.kernel_size == (1, 1)  # the former 1x1, as an option
    with pytest.raises(ValueError, match="map_kernel_size must be odd"):
        build("abn", map_kernel_size=2)


# ---------------------------------------------------------------- B-CNN


@pytest.mark.parametrize("normalize", [False, True])
def test_bcnn_pools_features_with_its_first_p_maps(normalize: bool) -> None:
    model = build("bcnn", num_parts=2, normalize=normalize).eval()
    with torch.inference_mode():
        outputs = model.forward_train(images(2))
        features, maps = outputs["features"], outputs["attention_maps"]
        assert maps.shape[1] == 3 and (maps >= 0).all()
        pooled = torch.cat([(features * maps[:, p : p + 1]).mean((2, 3)) for p in range(2)], dim=1)
        if normalize:  # WS-DAN: signed sqrt, then L2 normalised; scaled to unit RMS per component
            pooled = pooled.sign() * pooled.abs().sqrt()
            pooled = pooled / pooled.norm(dim=1, keepdim=True) * pooled.shape[1] ** 0.5
        torch.testing.assert_close(outputs["logits"], model.fc(pooled))


# ---------------------------------------------------------------- IBP


def test_ibp_assignment_is_softmax_of_squared_distances_over_sigmoid_scale() -> None:
    model = build("ibp", num_parts=4).eval()
    # the authors' start: smooth factor 0 -> scale sigmoid(0) = 0.5; centres Kaiming-normal clamped >= 1e-5
    assert torch.equal(model.smooth_factor, torch.zeros(4)) and (model.centres >= 1e-5).all()
    with torch.no_grad():
        model.smooth_factor.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
        outputs = model.forward_train(images(2))
    features, assignments = outputs["features"], outputs["assignments"]
    pixels = features.flatten(2).transpose(1, 2)  # (B, N, C)
    squared = torch.cdist(pixels, model.centres.detach().expand(2, -1, -1)).pow(2)  # (B, N, K)
    expected = torch.softmax(-squared / torch.sigmoid(model.smooth_factor.detach()), dim=2)
    torch.testing.assert_close(assignments.flatten(2).transpose(1, 2), expected, rtol=1e-4, atol=1e-5)
    assert assignments.shape == (2, 4, 2, 2) and (assignments >= 0).all()
    torch.testing.assert_close(assignments.sum(1), torch.ones(2, 2, 2))


def test_ibp_head_is_attention_weighted_sum_of_bottlenecked_parts() -> None:
    model = build("ibp", num_parts=3).eval()
    for module in model.modules():  # non-trivial blocks (their last BN starts at 0) and BN statistics
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.running_mean, -0.1, 0.1)
    region = torch.nn.functional.normalize(torch.randn(2, 3, 512, generator=torch.Generator().manual_seed(0)), dim=2)
    with torch.inference_mode():
        logits, attention = model._head(region)
        # each part alone through 1x1 bottlenecks: part k of the batch = the block on part k's vector
        parts = region.transpose(1, 2).unsqueeze(3)
        processed = model.post_blocks(parts)[..., 0].transpose(1, 2)  # (B, K, C)
        scores = model.attention_net(parts)[:, 0, :, 0]  # (B, K)
        torch.testing.assert_close(attention, torch.softmax(scores, dim=1))
        torch.testing.assert_close(attention.sum(1), torch.ones(2))
        pooled = (attention.unsqueeze(2) * processed).sum(1)  # a weighted SUM, not a concatenation
        torch.testing.assert_close(logits, model.fc(model.bn(pooled)))
        assert model.fc.in_features == 512 and not isinstance(model.bn, torch.nn.BatchNorm2d)
        # parts enter symmetrically: permuting them permutes the attention and keeps the logits
        order = torch.tensor([2, 0, 1])
        permuted_logits, permuted_attention = model._head(region[:, order])
        torch.testing.assert_close(permuted_logits, logits)
        torch.testing.assert_close(permuted_attention, attention[:, order])
    assert len(model.post_blocks) == 4 and all(
        m.kernel_size == (1, 1) for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m not in
        set(model.backbone.modules()))


def test_ibp_blur_kernel_and_occurrence_are_the_authors() -> None:
    kernel = ibp.gaussian_kernel(2, 0.4)
    offsets = torch.arange(-2, 3, dtype=torch.float64)
    expected = torch.exp(-(offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) / (2 * 0.4**2))
    torch.testing.assert_close(kernel, expected / expected.sum())
    assert 0.83 < kernel[2, 2] < 0.85  # a light blur
    for side in (14, 4):  # the paper's 448 px maps; the demo's 112 px ones
        maps = torch.zeros(1, 3, side, side, dtype=torch.float64)
        maps[0, 0] = 1.0  # everywhere
        maps[0, 1, side // 2, side // 2] = 1.0  # one inner pixel
        maps[0, 2, 0, 0] = 1.0  # one corner pixel
        occurrence = ibp.part_occurrence(maps)[0]
        torch.testing.assert_close(occurrence[:2], torch.stack([torch.tensor(1.0, dtype=torch.float64), kernel[2, 2]]))
        if side == 14:  # the authors' "valid" blur: no window is centred on the 2-pixel border
            assert occurrence[2] < 1e-9
        else:  # a 4x4 map is replicate-padded: every pixel counts, the corner one too
            assert occurrence[2] > kernel[2, 2]
    torch.testing.assert_close(ibp.part_occurrence(torch.ones(2, 3, 2, 2)), torch.ones(2, 3))


@pytest.mark.parametrize("prior", [(1.0, 0.001), (2.0, 3.0)])
def test_ibp_shaping_loss_is_zero_at_the_prior_quantiles(prior: tuple[float, float]) -> None:
    quantiles = ibp.beta_quantiles(6, *prior)
    shuffled = torch.stack([quantiles[torch.randperm(6, generator=torch.Generator().manual_seed(k))]
                            for k in range(3)], dim=1)  # (B=6, K=3), each part a permutation
    assert ibp.shaping_loss(shuffled, *prior) == 0
    assert ibp.shaping_loss(torch.full((6, 3), 0.5, dtype=torch.float64), *prior) > 0
    if prior == (1.0, 0.001):  # closed form F^-1(u) = 1 - (1 - u)^(1 / beta) ~ 1: "every part occurs"
        assert (quantiles > 0.999).all()


def test_ibp_shaping_loss_is_l1_of_logs_of_sorted_occurrences() -> None:
    occurrences = torch.tensor([[0.9, 0.0], [0.2, 1.0], [0.5, 0.3]], dtype=torch.float64)  # (B=3, K=2)
    quantiles = torch.from_numpy(scipy.stats.beta.ppf([1 / 6, 3 / 6, 5 / 6], 1.0, 0.001))
    eps = 1e-5
    expected = sum(abs(math.log(o + eps) - math.log(q + eps))
                   for column in occurrences.T for o, q in zip(sorted(column.tolist()), quantiles.tolist())) / 6
    torch.testing.assert_close(ibp.shaping_loss(occurrences), torch.tensor(expected, dtype=torch.float64))
    # an absent part costs |log(eps)| ~ 11.5 per image, a present one ~0: the loss asks every part to occur
    assert ibp.shaping_loss(torch.zeros(4, 1)) > 11 > 1e-3 > ibp.shaping_loss(torch.ones(4, 1))


def test_ibp_loss_is_ce_plus_half_the_shaping_loss() -> None:
    model = build("ibp").train()
    outputs = model.forward_train(images())
    loss = model.loss(outputs, LABELS)
    assert set(loss) == {"loss", "ce", "shaping"}
    torch.testing.assert_close(loss["shaping"], ibp.shaping_loss(ibp.part_occurrence(outputs["assignments"])))
    torch.testing.assert_close(loss["loss"], loss["ce"] + 0.5 * loss["shaping"])


def test_ibp_background_is_the_part_filling_the_border() -> None:
    model = build("ibp", num_parts=3)
    assignments = torch.full((2, 3, 4, 4), 0.1)
    assignments[0, 2] = 0.8  # image 0: part 2 everywhere
    assignments[1, 1, [0, 3], :] = 0.8  # image 1: part 1 on the top and bottom rows,
    assignments[1, 0, 1:3, 1:3] = 0.9  # part 0 fills the centre
    assert model.background(assignments).tolist() == [2, 1]
    assert build("ibp", num_parts=3, background_part=0).background(assignments).tolist() == [0, 0]
    with pytest.raises(ValueError, match="background_part"):
        build("ibp", num_parts=3, background_part=3)


@pytest.mark.parametrize("background_part", [None, 1])
def test_ibp_saliency_is_attention_weighted_foreground_assignments_times_norm(background_part: int | None) -> None:
    model = build("ibp", num_parts=3, background_part=background_part).eval()
    x = images(2, 96)
    with torch.inference_mode():
        outputs = model.forward_train(x)
        assignments, attention = outputs["assignments"], outputs["part_attention"]
        background = model.background(assignments)
        if background_part is not None:
            assert background.tolist() == [1, 1]
        expected = torch.zeros_like(assignments[:, 0])
        for b in range(2):
            for k in range(3):
                if k != background[b]:  # never the background part
                    expected[b] += attention[b, k] * assignments[b, k]
        expected = expected * outputs["features"].norm(dim=1)
        torch.testing.assert_close(model.attention(x), expected)


@pytest.mark.parametrize("name", ["cnn", "abn", "bcnn", "ibp", "brnpa"])
def test_backbone_warm_start_from_cnn_checkpoint(name: str, tmp_path: Path) -> None:
    """``backbone_init``: every model's backbone (BR-NPA's dilated one too) starts from a trained CNN's;
    ABN's attention branch, a copy of layer4, starts from the loaded layer4."""
    trained_cnn = build("cnn", seed=7)
    path = tmp_path / "cnn.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in trained_cnn.state_dict().items()}}, path)
    module = EmbryoLitModule(net={"name": name, "backbone": "resnet18"}, backbone_init=str(path))
    for key, value in trained_cnn.backbone.state_dict().items():
        torch.testing.assert_close(module.net.backbone.state_dict()[key], value)
    if name == "abn":
        for key, value in trained_cnn.backbone.layer4.state_dict().items():
            torch.testing.assert_close(module.net.attention_block.state_dict()[key], value)
    assert module(images(batch=2)).shape == (2, 16)


def test_backbone_warm_start_needs_the_same_backbone(tmp_path: Path) -> None:
    path = tmp_path / "cnn.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in build("cnn").state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match="backbone does not match"):
        load_backbone(create_model("abn", backbone="resnet10t"), path)
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="holds no backbone weights"):
        load_backbone(create_model("abn", backbone="resnet18"), path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_backbone(create_model("abn", backbone="resnet18"), tmp_path / "gone.ckpt")


def test_teacher_must_predict_the_students_classes(tmp_path: Path) -> None:
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in build("cnn", num_classes=4).state_dict().items()},
                "hyper_parameters": {"net": {"name": "cnn", "backbone": "resnet18"}, "num_classes": 4}}, path)
    with pytest.raises(CheckpointError, match="predicts 4 classes, not the 16 needed"):
        build("brnpa", teacher_ckpt=str(path))


# ---------------------------------------------------------------- BR-NPA


def test_brnpa_maps_are_distributions_and_first_seed_is_highest_norm() -> None:
    features = torch.relu(torch.randn(3, 8, 5, 6, generator=torch.Generator().manual_seed(0)))
    result = brnpa.representative_vectors(features, num_parts=3)
    assert result.maps.shape == (3, 3, 5, 6) and (result.maps >= 0).all()
    torch.testing.assert_close(result.maps.sum((2, 3)), torch.ones(3, 3))
    assert torch.equal(result.seeds[:, 0], features.flatten(2).norm(dim=1).argmax(1))
    assert (result.seeds.sort(dim=1).values.diff(dim=1) != 0).all(), "seeds repeat"
    for first, second in ((0, 1), (0, 2), (1, 2)):
        assert not torch.allclose(result.vectors[:, first], result.vectors[:, second])
    # Batched == one image at a time.
    single = brnpa.representative_vectors(features[1:2], num_parts=3)
    torch.testing.assert_close(single.vectors[0], result.vectors[1])


def test_brnpa_damping_moves_seeds_to_new_directions() -> None:
    # Pixels point along three axes; the axis-0 pixels have the largest norms, yet after the first
    # seed every pixel similar to it is damped to zero, so seeds 2 and 3 come from the other axes.
    features = torch.zeros(1, 3, 1, 6)
    for pixel, (axis, norm) in enumerate([(0, 9.0), (0, 8.0), (0, 7.0), (1, 2.0), (2, 3.0), (1, 1.0)]):
        features[0, axis, 0, pixel] = norm
    result = brnpa.representative_vectors(features, num_parts=3)
    assert result.seeds[0].tolist() == [0, 4, 3]
    torch.testing.assert_close(result.maps[0, 0, 0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0, 0]))
    torch.testing.assert_close(result.vectors[0, 0], torch.tensor([8.0, 0.0, 0.0]))


def test_brnpa_damps_scores_by_one_minus_similarity_as_the_authors() -> None:
    # Pixels a=(10,0), b=(3,1), c=(1,2): cos(a,b)=0.95, cos(a,c)=0.45. After seed a, the authors'
    # score <- (1 - sim) * score leaves b 3.16*0.05=0.16 and c 2.24*0.55=1.24, so c is the next seed.
    # (A min-max rescaled similarity would zero c, the least similar pixel, and pick b.)
    features = torch.tensor([[10.0, 3.0, 1.0], [0.0, 1.0, 2.0]]).view(1, 2, 1, 3)
    result = brnpa.representative_vectors(features, num_parts=3)
    assert result.seeds[0].tolist() == [0, 2, 1]


def test_brnpa_attention_is_first_map_times_feature_norm() -> None:
    model = build("brnpa").eval()
    x = images(2)
    with torch.inference_mode():
        outputs = model.forward_train(x)
        expected = outputs["attention_maps"][:, 0] * outputs["features"].norm(dim=1)
        torch.testing.assert_close(model.attention(x), expected)


def test_brnpa_distils_from_a_frozen_low_resolution_teacher(tmp_path: Path, offline: Path) -> None:
    teacher = build("brnpa", seed=5, output_stride=32).eval()
    path = tmp_path / "teacher.ckpt"
    # trained from ImageNet weights: rebuilding the teacher must not fetch them again (network blocked)
    net = {"name": "brnpa", "backbone": "resnet18", "output_stride": 32, "pretrained": True}
    torch.save({"state_dict": {f"net.{k}": v for k, v in teacher.state_dict().items()},
                "hyper_parameters": {"net": net, "num_classes": 16}}, path)
    student = build("brnpa", teacher_ckpt=str(path), distill_temperature=2.0, distill_interp=0.3).train()
    assert not any(key.startswith("_teacher") for key in student.state_dict())
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in teacher.parameters())
    x = images()
    outputs = student.forward_train(x)
    with torch.inference_mode():
        torch.testing.assert_close(outputs["teacher_logits"], teacher(x))
    losses = student.loss(outputs, LABELS)
    assert losses["distill"] > 0
    # the authors' loss: (1 - a) CE + a T^2 KL(softmax(teacher / T) || softmax(student / T))
    reference = torch.nn.functional.kl_div(torch.log_softmax(outputs["logits"] / 2, dim=1),
                                           torch.softmax(outputs["teacher_logits"] / 2, dim=1),
                                           reduction="batchmean") * 4
    torch.testing.assert_close(losses["distill"], reference)
    torch.testing.assert_close(losses["loss"], 0.7 * losses["ce"] + 0.3 * losses["distill"])
    matched = student.loss({**outputs, "logits": outputs["teacher_logits"]}, LABELS)
    torch.testing.assert_close(matched["distill"], torch.tensor(0.0), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- ImageNet-pretrained weights


def test_pretrained_weights_missing_offline_fail_in_one_line(offline: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable) as caught:
        create_model("cnn", backbone="resnet18", pretrained=True)
    message = str(caught.value)
    assert "\n" not in message
    for text in ("resnet18", "timm/resnet18", "model.net.pretrained=false", str(offline), "HF_HOME"):
        assert text in message, message


def test_paper_experiment_starts_every_model_from_imagenet_weights(tmp_path: Path) -> None:
    for name in ("cnn", "abn", "bcnn", "ibp", "brnpa"):
        paper = compose_config("train", ["experiment=paper", f"model={name}"], tmp_path)
        assert paper.model.net.pretrained is True and paper.model.net.backbone == "resnet50"
        assert compose_config("train", ["experiment=demo", f"model={name}"], tmp_path).model.net.pretrained is False


def test_paper_training_without_network_ends_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "TORCH_HOME": str(tmp_path / "torch_home")}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run([sys.executable, "-m", "embryo_xai.train", "experiment=paper", "model=cnn",
                             "model.net.backbone=resnet18", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "model.net.pretrained=false" in errors[0], output


def test_checkpoint_of_a_pretrained_model_reloads_offline(tmp_path: Path, offline: Path) -> None:
    """A model trained from ImageNet weights is rebuilt for its checkpoint's weights: nothing to download;
    ``init_from``, the warm-start argument IBP had before ``backbone_init``, is ignored in older checkpoints."""
    model = build("ibp", seed=2).eval()
    path = tmp_path / "ibp.ckpt"
    net = {"name": "ibp", "backbone": "resnet18", "pretrained": True, "init_from": str(tmp_path / "gone.ckpt")}
    torch.save({"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"net": net, "num_classes": 16}}, path)
    rebuilt, _ = load_classifier(path)
    x = images(2)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x), model(x))
