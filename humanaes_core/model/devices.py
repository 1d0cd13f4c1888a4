"""Choosing the device, the precision and 4-bit quantisation for inference."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from humanaes_core.errors import DeviceError

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    quantize: str | None

    @property
    def label(self) -> str:
        """Short text for settings fingerprints and logs, e.g. 'cuda/bf16/4bit'."""
        name = {v: k for k, v in _DTYPES.items()}[self.dtype]
        return f"{self.device.type}/{name}" + (f"/{self.quantize}" if self.quantize else "")


def resolve(device: str = "auto", precision: str = "auto", quantize: str | None = None) -> Placement:
    """`auto` picks CUDA in bf16 (fp16 where bf16 is unsupported), else the CPU in fp32 with a warning."""
    if quantize not in (None, "4bit"):
        raise DeviceError(f"unknown quantize={quantize!r}; use None or '4bit'")
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise DeviceError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} was requested but no CUDA GPU is available here")
    if precision == "auto":
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    elif precision in _DTYPES:
        dtype = _DTYPES[precision]
    else:
        raise DeviceError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if quantize == "4bit":
        if dev.type != "cuda":
            raise DeviceError(
                "4-bit quantization (bitsandbytes NF4) needs a CUDA GPU; on this machine load the model "
                "without quantize='4bit' (full precision on the CPU)."
            )
        if dtype == torch.float32:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Placement(dev, dtype, quantize)


def warn_if_slow(placement: Placement) -> None:
    """One line, once per load, for people who expected their GPU to be used."""
    if placement.device.type == "cpu":
        log.warning("No CUDA GPU in use: scoring on the CPU in float32 takes seconds per photo.")


def bnb_4bit_config(placement: Placement) -> object:
    """NF4 for the language model only; the vision tower, projector and LM head stay 16-bit."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise DeviceError(
            "4-bit quantization needs bitsandbytes: pip install 'humanaes[gpu]' (or pip install bitsandbytes)"
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=placement.dtype,
        llm_int8_skip_modules=["vision_tower", "multi_modal_projector", "lm_head"],
    )
