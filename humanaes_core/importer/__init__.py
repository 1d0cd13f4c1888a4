"""`humanaes-import`: released InternVL-layout HumanAesExpert checkpoints into the native format.

One module per step: source (the folder, its JSON and safetensors), config (config.json → native
InternVLConfig and PromptConfig), tokenizer (to a fast tokenizer, no source code run), weights (the
backbone's tensors, fused qkv/wqkv split), heads (recognised by name and shape), convert (the plan
and the written checkpoint) verify and reference (`--verify`: the import against the release's own outputs).

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used, and the option tuples (for `--help`) never import torch.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "BACKBONE_DTYPES",
    "METAVOTER_MODES",
    "ImportFailure",
    "ImportPlan",
    "ImportReport",
    "TensorPlacement",
    "Tolerance",
    "VerifyError",
    "VerifyReport",
    "import_checkpoint",
    "looks_like_original",
    "plan_import",
    "read_modeling",
    "read_reference",
    "verify_import",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BACKBONE_DTYPES": "weights",
        "METAVOTER_MODES": "heads",
        "ImportFailure": "source",
        "ImportPlan": "convert",
        "ImportReport": "convert",
        "TensorPlacement": "source",
        "Tolerance": "verify",
        "VerifyError": "reference",
        "VerifyReport": "verify",
        "read_reference": "reference",
        "verify_import": "verify",
        "import_checkpoint": "convert",
        "looks_like_original": "source",
        "plan_import": "convert",
        "read_modeling": "modeling_reader",
    },
)
