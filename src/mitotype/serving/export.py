"""``mitotype export``: pack trained model(s) into the tarball the challenge platform unpacks.

Layout inside the tarball (unpacked to ``/opt/ml/model/``)::

    mitotype-export.json        members, threshold, TTA, base weights (packed file or reference)
    member-0/model.safetensors  adapters + heads (+ config, threshold, preprocessing in metadata)
    member-0/model.json
    base/<file>                 the backbone's pretrained weights, when --include-base

Inference loads one member at a time (``models.predict.Ensemble``), so the GPU must hold one
backbone in fp32 (autocast keeps parameters in fp32) plus the bf16 activations of a batch of 16
figures x 8 TTA views; a model whose estimate exceeds the platform's 16 GB is refused.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mitotype.errors import MitotypeError
from mitotype.ioutils import atomic_write
from mitotype.models.artifact import (
    META_FILE,
    MODEL_FILE,
    check_artifact_fits,
    load_model_artifact,
    model_config_of,
    read_artifact_meta,
)
from mitotype.models.classifier import build_classifier
from mitotype.models.onnx_runtime import ONNX_FILE, SOURCE_FILE, current_graph, write_onnx_beside
from mitotype.models.predict import ensemble_threshold, find_model_dirs, refuse_repeated_members
from mitotype.models.registry import get_backbone_spec
from mitotype.models.weights import check_weights_file, resolve_weights
from mitotype.serving.challenge import MANIFEST, MANIFEST_FORMATS, PACKED_BASE_DIR

PLATFORM_GPU_BYTES = 16 * 1024**3


@dataclass
class MemoryEstimate:
    """Peak GPU memory of inference for one ensemble member."""

    parameters: int
    weight_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


def estimate_inference_memory(meta: dict[str, Any], batch: int = 16, tta: bool = True) -> MemoryEstimate:
    """Weights in the inference dtype plus the activations alive in one forward of the batch.

    Activations of a transformer block in inference: the residual stream, the qkv and attention
    output, and the MLP hidden layer, times a safety factor of 2 for allocator slack and SDPA
    workspace. Counted on the meta device: nothing is allocated.
    """
    model_config = model_config_of(meta)
    model_config.weights = None
    with torch.device("meta"):
        model = build_classifier(model_config, num_domains=0)
    n_params = sum(p.numel() for p in model.parameters())
    # Autocast computes in bf16 but keeps the parameters in fp32; activations are bf16 on a GPU.
    precision = meta["config"].get("optim", {}).get("precision", "auto")
    dtype_bytes = 2 if precision in ("auto", "bf16") else 4
    views = batch * (8 if tta else 1)
    size = int(meta["preprocessing"].get("input_size", [224])[-1])
    width = max((m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)), default=1024)
    hidden = max((m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)), default=4096)
    tokens = (size // 14) ** 2 + 5
    per_image = tokens * (4 * width + hidden) * dtype_bytes
    activation = int(2 * views * per_image)
    return MemoryEstimate(
        parameters=n_params, weight_bytes=n_params * dtype_bytes, activation_bytes=activation
    )


def _base_reference(weights: str | None, backbone: str, include: bool) -> tuple[Path | None, str | None]:
    """(file to pack, reference to write) for the backbone's pretrained weights.

    ``None`` weights mean the backbone's default source (its hub repository or bundled package file).
    Packed: the resolved local file. Referenced: a hub id, a package file, or an absolute path, which
    the container must be able to reach offline.
    """
    spec = get_backbone_spec(backbone)
    source = weights or spec.default_weights
    if source in (None, "random"):
        return None, source  # nothing pretrained to ship (test stand-ins, random init)
    if include:
        path = resolve_weights(source, spec)
        check_weights_file(path)
        return path, None
    if source.startswith(("hf-hub:", "package:")) or ("/" in source and not Path(source).exists()):
        return None, source
    return None, str(Path(source).resolve())


def export_model(
    models: list[str | Path],
    out_path: str | Path,
    include_base: bool = False,
    tta: bool = True,
    gpu_bytes: int = PLATFORM_GPU_BYTES,
    allow_unfinished: bool = False,
    onnx: bool = False,
) -> dict[str, Any]:
    """Write the model tarball; returns its manifest. Refuses a model that would not fit the GPU.

    ``onnx`` packs each member's ONNX graph too (made now unless a current one lies beside it), which the
    container runs on a CPU-only machine (:class:`~mitotype.models.predict.Ensemble`)."""
    from mitotype.runs import require_finished

    dirs = [d for m in models for d in find_model_dirs(m)]
    refuse_repeated_members(dirs)
    require_finished(dirs, allow_unfinished)
    metas = [read_artifact_meta(d) for d in dirs]
    for d, meta in zip(dirs, metas):  # a diverged, damaged or mislabelled model must not reach the platform
        check_weights_file(d / MODEL_FILE)
        check_artifact_fits(d, meta)
    backbones = {m["config"]["model"]["backbone"] for m in metas}
    if len(backbones) > 1:  # the container builds every member on the one base the manifest names
        raise MitotypeError(f"ensemble members use different backbones {sorted(backbones)}: "
                            f"{', '.join(str(d) for d in dirs)}; export one backbone per tarball")
    bases = {m["config"]["model"].get("weights") for m in metas}
    if len(bases) > 1:
        raise MitotypeError(f"ensemble members use different base weights {sorted(map(str, bases))}")
    base = bases.pop()
    estimate = estimate_inference_memory(metas[0], batch=16, tta=tta)
    if estimate.total_bytes > gpu_bytes:
        raise MitotypeError(
            f"model needs about {estimate.total_bytes / 1024**3:.1f} GB of GPU memory at batch 16"
            f"{' with 8 TTA views' if tta else ''} ({estimate.parameters / 1e9:.2f} B parameters); "
            f"the platform has {gpu_bytes / 1024**3:.0f} GB. Export without TTA or use a smaller backbone."
        )
    base_file, base_ref = _base_reference(base, metas[0]["config"]["model"]["backbone"], include_base)
    manifest = {
        "format": MANIFEST_FORMATS[-1],
        "members": [f"member-{i}" for i in range(len(dirs))],
        "threshold": ensemble_threshold(metas, False),  # on the scale the ensemble reports (calibrated where
        "threshold_tta": ensemble_threshold(metas, True),  # every member is), as the container compares it
        "tta": tta,
        "base_weights": f"{PACKED_BASE_DIR}/{base_file.name}" if base_file else base_ref,
        "backbone": metas[0]["config"]["model"]["backbone"],
        "estimated_gpu_gb": round(estimate.total_bytes / 1024**3, 2),
        "sources": [str(d) for d in dirs],
        "onnx": onnx,
    }
    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            for name, d in zip(manifest["members"], dirs):
                tar.add(d / MODEL_FILE, arcname=f"{name}/{MODEL_FILE}")
                if (d / META_FILE).is_file():
                    tar.add(d / META_FILE, arcname=f"{name}/{META_FILE}")
                for file in graphs.get(d, []):
                    tar.add(file, arcname=f"{name}/{file.name}")
            if base_file:
                tar.add(base_file, arcname=f"{PACKED_BASE_DIR}/{base_file.name}")

    with tempfile.TemporaryDirectory(prefix="mitotype-onnx-") as scratch:
        graphs: dict[Path, list[Path]] = (
            {d: _onnx_graph(d, Path(scratch) / str(i)) for i, d in enumerate(dirs)} if onnx else {})
        atomic_write(out_path, write)
    return manifest


def _onnx_graph(model_dir: Path, scratch: Path) -> list[Path]:
    """The member's current ``model.onnx`` and its source record, made in ``scratch`` when there is none."""
    if current_graph(model_dir) is not None:
        return [model_dir / ONNX_FILE, model_dir / SOURCE_FILE]
    scratch.mkdir(parents=True)
    write_onnx_beside(model_dir, load_model_artifact(model_dir, device="cpu").model, target_dir=scratch)
    return [scratch / ONNX_FILE, scratch / SOURCE_FILE]
