"""Correctness of the four attention models (ABN, B-CNN, IBP, BR-NPA): tiny resnet18 inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from embryo_xai.models import abn, bcnn, brnpa, cnn, ibp  # noqa: F401  (registers the models)
from embryo_xai.models.module import EmbryoLitModule
from embryo_xai.models.registry import create_model

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
    net = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml").net)
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


def test_ibp_assignments_sum_to_one_over_parts() -> None:
    model = build("ibp", num_parts=4).eval()
    with torch.inference_mode():
        assignments = model.forward_train(images(2))["assignments"]
    assert assignments.shape == (2, 4, 2, 2) and (assignments >= 0).all()
    torch.testing.assert_close(assignments.sum(1), torch.ones(2, 2, 2))


@pytest.mark.parametrize("prior", [(1.0, 0.001), (2.0, 3.0)])
def test_ibp_shaping_loss_is_zero_at_the_prior_quantiles(prior: tuple[float, float]) -> None:
    quantiles = ibp.beta_quantiles(6, *prior)
    shuffled = torch.stack([quantiles[torch.randperm(6, generator=torch.Generator().manual_seed(k))]
                            for k in range(3)], dim=1)  # (B=6, K=3), each part a permutation
    assert ibp.shaping_loss(shuffled, *prior) == 0
    assert ibp.shaping_loss(torch.full((6, 3), 0.5, dtype=torch.float64), *prior) > 0
    if prior == (1.0, 0.001):  # closed form F^-1(u) = 1 - (1 - u)^(1 / beta) ~ 1: "every part occurs"
        assert (quantiles > 0.999).all()


def test_ibp_occurrence_is_max_of_blurred_map() -> None:
    present = torch.ones(1, 1, 5, 5)
    spike = torch.zeros(1, 1, 5, 5)
    spike[..., 2, 2] = 1.0
    occurrence = ibp.part_occurrence(torch.cat([present, spike], 1), blur_sigma=1.0)
    torch.testing.assert_close(occurrence[0, 0], torch.tensor(1.0))
    assert 0 < occurrence[0, 1] < 0.5  # a lone pixel is spread out by the blur


def test_ibp_shaping_loss_pushes_occurrence_up() -> None:
    model = build("ibp").train()
    loss = model.loss(model.forward_train(images()), LABELS)
    assert set(loss) == {"loss", "ce", "shaping"}
    torch.testing.assert_close(loss["loss"], loss["ce"] + 0.5 * loss["shaping"])


def test_ibp_init_from_cnn_checkpoint(tmp_path: Path) -> None:
    trained_cnn = build("cnn", seed=7)
    path = tmp_path / "cnn.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in trained_cnn.state_dict().items()}}, path)
    model = build("ibp", init_from=str(path))
    for key, value in trained_cnn.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)


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
    with pytest.raises(ValueError, match="backbone does not match"):
        create_model("abn", backbone="resnet10t").init_backbone_from(path)


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


def test_brnpa_attention_is_first_map_times_feature_norm() -> None:
    model = build("brnpa").eval()
    x = images(2)
    with torch.inference_mode():
        outputs = model.forward_train(x)
        expected = outputs["attention_maps"][:, 0] * outputs["features"].norm(dim=1)
        torch.testing.assert_close(model.attention(x), expected)


def test_brnpa_distils_from_a_frozen_low_resolution_teacher(tmp_path: Path) -> None:
    teacher = build("brnpa", seed=5, output_stride=32).eval()
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in teacher.state_dict().items()},
                "hyper_parameters": {"net": {"name": "brnpa", "backbone": "resnet18", "output_stride": 32},
                                     "num_classes": 16}}, path)
    student = build("brnpa", teacher_ckpt=str(path), distill_temperature=2.0, distill_weight=0.5).train()
    assert not any(key.startswith("_teacher") for key in student.state_dict())
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in teacher.parameters())
    x = images()
    outputs = student.forward_train(x)
    with torch.inference_mode():
        torch.testing.assert_close(outputs["teacher_logits"], teacher(x))
    losses = student.loss(outputs, LABELS)
    assert losses["distill"] > 0
    torch.testing.assert_close(losses["loss"], losses["ce"] + 0.5 * losses["distill"])
    matched = student.loss({**outputs, "logits": outputs["teacher_logits"]}, LABELS)
    torch.testing.assert_close(matched["distill"], torch.tensor(0.0), atol=1e-6, rtol=0)
