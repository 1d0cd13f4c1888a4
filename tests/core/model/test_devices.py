import pytest
import torch

from humanaes_core import load_scorer
from humanaes_core.errors import DeviceError
from humanaes_core.model.devices import resolve

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_auto_falls_back_to_cpu_fp32():
    placement = resolve("auto")
    assert placement.device.type == "cpu" and placement.dtype == torch.float32
    assert placement.label == "cpu/fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_cpu_warning_is_one_line(tiny_model, caplog):
    with caplog.at_level("WARNING", logger="humanaes_core.model.devices"):
        load_scorer(tiny_model, device="auto")
    messages = [r.getMessage() for r in caplog.records if "CPU" in r.getMessage()]
    assert len(messages) == 1 and "\n" not in messages[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_4bit_on_cpu_is_a_clear_error(tiny_model):
    with pytest.raises(DeviceError, match="CUDA GPU"):
        load_scorer(tiny_model, device="auto", quantize="4bit")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve("cuda")


def test_bad_settings():
    with pytest.raises(DeviceError):
        resolve("cpu", precision="int3")
    with pytest.raises(DeviceError):
        resolve("cpu", quantize="2bit")
    with pytest.raises(DeviceError):
        resolve("tpu9")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda_matches_fp32(tiny_model, photo_dir, precision):
    path = photo_dir / "astronaut.jpg"
    ref = load_scorer(tiny_model, device="cpu").score([path])[0]
    card = load_scorer(tiny_model, device="cuda", precision=precision).score([path])[0]
    assert card.heads.keys() == ref.heads.keys()
    for key, value in ref.dims.items():
        assert card.dims[key] == pytest.approx(value, abs=0.05)


@pytest.mark.gpu
@needs_cuda
def test_4bit_on_cuda(tiny_model, photo_dir):
    pytest.importorskip("bitsandbytes")
    scorer = load_scorer(tiny_model, device="cuda", quantize="4bit")
    lm = scorer.model.backbone.model.language_model
    assert "4bit" in type(lm.layers[0].mlp.up_proj).__name__.lower() or hasattr(
        lm.layers[0].mlp.up_proj.weight, "quant_state"
    )
    assert scorer.model.backbone.model.vision_tower.dtype in (torch.float16, torch.bfloat16)
    (card,) = scorer.score([photo_dir / "astronaut.jpg"])
    assert len(card.dims) == 12
