"""Finding and loading backbone weights: files, folders, bundled packages and the Hugging Face Hub.

Never unpickles arbitrary objects: ``.safetensors`` is read with safetensors, everything else with
``torch.load(weights_only=True)``. Loading is strict by default and every mismatch is reported in one
:class:`~mitotype.errors.WeightsError` naming the missing, unexpected and mis-shaped keys, because a
silently half-loaded foundation model trains without complaint and is useless.

Weight sources (``ModelConfig.weights`` / ``--weights``):

* a ``.safetensors`` / ``.bin`` / ``.pth`` / ``.pt`` / ``.ckpt`` file;
* a folder holding one of :data:`FOLDER_FILENAMES` (a Hub snapshot folder works);
* ``hf-hub:org/name`` or ``org/name``: the local Hugging Face cache (``HF_HUB_CACHE``, else
  ``HF_HOME/hub``) is searched first without network; when it misses and ``HF_HUB_OFFLINE`` is not
  set, the file is downloaded with ``huggingface_hub`` (gated models need ``hf auth login``);
* ``package:<import name>/<relative path>``: a file shipped inside an installed Python package.

Known checkpoint quirks are absorbed and reported as notes: wrappers (``{"state_dict": ...}``),
key prefixes (``module.``, ``model.``, ``backbone.``...), a backbone-specific key converter, a ViT
position embedding stored for another grid (resampled), and a missing classifier head (the classifier
drops the head anyway).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mitotype.errors import WeightsError
from mitotype.models.registry import BackboneSpec, create_backbone

if TYPE_CHECKING:
    import torch
    from torch import nn

RANDOM = "random"
"""Weight source meaning "random initialisation" (tests, smoke runs)."""

FOLDER_FILENAMES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.pth",
    "model.pt",
    "pytorch_model.pth",
    "checkpoint.pth",
)
"""Files looked for, in order, inside a weights folder."""

HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
"""Files looked for, in order, in a Hugging Face Hub repository."""

STRIPPABLE_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "trunk.", "_orig_mod.", "teacher.")
"""Key prefixes left by DDP, Lightning, torch.compile or wrapper modules."""

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "teacher")
"""Keys of training-checkpoint dicts that hold the actual state dict."""

TORCH_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadReport:
    """What a weights file held and how it matched the backbone."""

    backbone: str
    """Registry name of the backbone the weights were matched against."""
    source: str
    """The weight source as given (file, folder, hub id, package reference)."""
    path: str
    """The file actually read."""
    num_tensors: int = 0
    """Number of tensors in the checkpoint (after unwrapping)."""
    num_elements: int = 0
    """Total number of values in those tensors."""
    dtypes: dict[str, int] = field(default_factory=dict)
    """Tensor count per dtype (e.g. ``{"float32": 567}``)."""
    missing: list[str] = field(default_factory=list)
    """Model keys the checkpoint lacks."""
    unexpected: list[str] = field(default_factory=list)
    """Checkpoint keys the model does not have."""
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    """(key, checkpoint shape, model shape) for keys present in both with different shapes."""
    notes: list[str] = field(default_factory=list)
    """Adjustments made on the way (prefix stripped, keys converted, position embedding resampled)."""

    @property
    def ok(self) -> bool:
        """True when every model key got a tensor of the right shape and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        """One-line description of the mismatches (empty when :attr:`ok`)."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys ({_short(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys ({_short(self.unexpected)})")
        if self.mismatched:
            items = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatches ({_short(items)})")
        return "; ".join(parts)

    def summary(self) -> list[str]:
        """Human-readable lines for ``mitotype models check``."""
        dtypes = ", ".join(f"{n} {d}" for d, n in sorted(self.dtypes.items()))
        lines = [
            f"backbone: {self.backbone}",
            f"file: {self.path}",
            f"tensors: {self.num_tensors} ({dtypes})",
            f"values: {self.num_elements:,}",
            f"missing keys: {len(self.missing)}" + (f" ({_short(self.missing)})" if self.missing else ""),
            f"unexpected keys: {len(self.unexpected)}"
            + (f" ({_short(self.unexpected)})" if self.unexpected else ""),
            f"shape mismatches: {len(self.mismatched)}"
            + (
                " (" + _short([f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched]) + ")"
                if self.mismatched
                else ""
            ),
        ]
        lines += [f"note: {n}" for n in self.notes]
        return lines


def _short(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")


# --------------------------------------------------------------------------- resolving a source


def resolve_weights(source: str, spec: BackboneSpec) -> Path:
    """The weights file ``source`` designates for ``spec`` (downloading from the Hub if allowed)."""
    if source.startswith("package:"):
        return _resolve_package(source, spec)
    hub_id = source[len("hf-hub:") :] if source.startswith("hf-hub:") else None
    path = Path(os.path.expanduser(source))
    if hub_id is None and path.is_file():
        return path
    if hub_id is None and path.is_dir():
        for name in FOLDER_FILENAMES:
            if (path / name).is_file():
                return path / name
        singles = [p for p in sorted(path.iterdir()) if p.suffix in (".safetensors", *TORCH_SUFFIXES)]
        if len(singles) == 1:
            return singles[0]
        raise WeightsError(
            f"{spec.name}: no weights file in folder {path} (looked for {', '.join(FOLDER_FILENAMES)} "
            f"or a single .safetensors/.bin/.pth/.pt file); {spec.weights_hint or 'pass --weights FILE'}"
        )
    if hub_id is None and _HUB_ID.match(source) and not source.endswith((".safetensors", *TORCH_SUFFIXES)):
        hub_id = source
    if hub_id is None:
        raise WeightsError(
            f"{spec.name}: weights {source!r} not found: no such file or folder, and not a Hub id "
            "(hf-hub:org/name)"
        )
    return _resolve_hub(hub_id, spec, as_given=source)


def _resolve_package(source: str, spec: BackboneSpec) -> Path:
    package, _, rel = source[len("package:") :].partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise WeightsError(
            f"{spec.name}: weights package {package!r} is not installed; "
            f"{spec.weights_hint or 'install it or pass --weights FILE'}"
        )
    for location in found.submodule_search_locations:
        candidate = Path(location) / rel
        if candidate.is_file():
            return candidate
    raise WeightsError(f"{spec.name}: package {package!r} is installed but has no {rel}; reinstall it")


def hub_cache_dir() -> Path:
    """The Hub cache folder, read from the environment now (huggingface_hub reads it at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.path.expanduser(os.environ[var])))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.path.expanduser(os.environ["HF_HOME"]))) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids network access, read now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _resolve_hub(repo_id: str, spec: BackboneSpec, as_given: str) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    cache = hub_cache_dir()
    for name in HUB_FILENAMES:
        try:
            cached = try_to_load_from_cache(repo_id, name, cache_dir=cache)
        except ValueError as exc:  # malformed repo id
            raise WeightsError(f"{spec.name}: invalid Hub id {repo_id!r}: {exc}") from None
        if isinstance(cached, str) and os.path.isfile(cached):
            return Path(cached)
    not_file = "" if as_given.startswith("hf-hub:") else f"no file or folder {as_given!r}; "
    searched = f"{not_file}Hub repo {repo_id} ({', '.join(HUB_FILENAMES)}) is not in the cache {cache}"
    hint = spec.weights_hint or "pass --weights FILE"
    if hub_offline():
        raise WeightsError(f"{spec.name}: no weights found: {searched} and HF_HUB_OFFLINE is set; {hint}")
    for name in HUB_FILENAMES:
        try:
            return Path(hf_hub_download(repo_id, name, cache_dir=cache))
        except GatedRepoError:
            raise WeightsError(
                f"{spec.name}: {repo_id} is gated: accept its terms on https://huggingface.co/{repo_id} "
                "and log in (`hf auth login` or HF_TOKEN)"
            ) from None
        except RepositoryNotFoundError:
            raise WeightsError(
                f"{spec.name}: Hub repo {repo_id} not found or not accessible with your token; {hint}"
            ) from None
        except LocalEntryNotFoundError as exc:
            raise WeightsError(
                f"{spec.name}: no weights found: {searched} and the Hub is unreachable "
                f"({str(exc).splitlines()[0]}); {hint}"
            ) from None
        except EntryNotFoundError:
            continue
        except (HfHubHTTPError, OSError) as exc:
            raise WeightsError(f"{spec.name}: downloading {repo_id}/{name} failed: {exc}; {hint}") from None
    raise WeightsError(f"{spec.name}: Hub repo {repo_id} has none of {', '.join(HUB_FILENAMES)}; {hint}")


# --------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of a checkpoint tensor read without loading its values."""

    shape: tuple[int, ...]
    """Tensor shape."""
    dtype: str
    """dtype name (``float32``, ``bfloat16``...)."""

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or torch file, unwrapped from training-checkpoint dicts."""
    state, _ = _read(Path(path), shapes_only=False)
    return state  # type: ignore[return-value]


def _read(path: Path, *, shapes_only: bool) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint's tensors (or only their shapes), refused when empty, when loading it would need
    code, or when a value is NaN or infinite: broken weights train and predict without complaint."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes): an interrupted download or copy?")
    if path.suffix == ".safetensors":
        state, notes = _read_safetensors(path, shapes_only), []
    else:
        state, notes = _read_torch(path)
    bad = _non_finite_keys(path, state)
    if bad:
        raise WeightsError(f"weights file {path}: {len(bad)} tensor(s) hold NaN or infinite values "
                           f"({_short(bad)}); the file is broken, use another copy")
    return state, notes


def _non_finite_keys(path: Path, state: Mapping[str, Any]) -> list[str]:
    """Keys of floating-point tensors holding NaN or infinity (streamed for a shapes-only read)."""
    import torch

    def bad(tensor: torch.Tensor) -> bool:
        return bool(tensor.is_floating_point() and not torch.isfinite(tensor).all())

    if all(isinstance(v, torch.Tensor) for v in state.values()):
        return [k for k, v in state.items() if bad(v)]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return [k for k in f.keys() if bad(f.get_tensor(k))]  # noqa: SIM118  (not a Mapping)


def check_weights_file(path: str | Path) -> None:
    """Refuse an empty, code-needing or non-finite weights file (any artifact about to be shipped)."""
    _read(Path(path), shapes_only=True)


def unsafe_pickle_globals(path: Path) -> list[str]:
    """The globals a torch file's pickle would import that ``weights_only`` does not allow, found by
    disassembling the pickle (nothing runs), so a refusal never depends on torch's message wording."""
    import zipfile

    import torch

    if zipfile.is_zipfile(path):
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = set(_get_allowed_globals())
    return [g for g in _legacy_pickle_globals(path) if g not in allowed]


def _legacy_pickle_globals(path: Path) -> list[str]:
    """Globals named by the pickles of a legacy (non-zip) torch file, read with ``pickletools``."""
    import io
    import pickletools

    found: list[str] = []
    data = io.BytesIO(path.read_bytes())
    while data.tell() < len(data.getbuffer()):
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(data):
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # the raw storage bytes after the pickles, or garbage: stop here
            break
    return found


def _read_safetensors(path: Path, shapes_only: bool) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if shapes_only:
                out = {}
                for key in f.keys():  # noqa: SIM118  (safe_open is not a Mapping)
                    sl = f.get_slice(key)
                    out[key] = TensorInfo(tuple(sl.get_shape()), _dtype_name(sl.get_dtype()))
                return out
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from None


_SAFETENSORS_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _dtype_name(dtype: str) -> str:
    return _SAFETENSORS_DTYPES.get(dtype, dtype.lower())


def _read_torch(path: Path) -> tuple[dict[str, Any], list[str]]:
    import torch

    try:
        unsafe = unsafe_pickle_globals(path)
    except Exception:  # not a readable pickle at all; torch.load below says why
        unsafe = []
    if unsafe:
        raise WeightsError(
            f"refusing to load {path}: it is a pickle that needs code to load ({', '.join(unsafe[:3])}), "
            "not a plain state dict; re-save it as safetensors (or a dict of tensors) where you trust it"
        )
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).split("Check the documentation")[0]
        reason = " ".join(text.split("WeightsUnpickler error:")[-1].split()) or type(exc).__name__
        raise WeightsError(f"cannot read torch file {path}: not a valid checkpoint ({reason[:200]})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f"cannot read torch file {path}: not a valid checkpoint ({first[:300]})") from None
    except Exception as exc:  # weights_only: nothing ran, so any other failure means the bytes are no checkpoint
        raise WeightsError(f"cannot read torch file {path}: not a valid checkpoint ({type(exc).__name__} "
                           "while unpickling)") from None
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, Any], list[str]]:
    import torch

    notes = []
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise WeightsError(
                f"{path} is not a state dict: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor "
                f"(and there is no {'/'.join(WRAPPER_KEYS)} entry holding one)"
            )
        notes.append(f"took the state dict under {inner!r}")
        obj = obj[inner]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} is not a state dict but a {type(obj).__name__}")
    return dict(obj), notes


# --------------------------------------------------------------------------- matching


@dataclass
class _Plan:
    rename: dict[str, str]
    resample: list[str]
    report: LoadReport


def _pos_prefix_tokens(model: nn.Module) -> int:
    if getattr(model, "no_embed_class", False):
        return 0
    return int(getattr(model, "num_prefix_tokens", 1))


def _can_resample(model: nn.Module, ckpt: tuple[int, ...], want: tuple[int, ...]) -> bool:
    if len(ckpt) != 3 or len(want) != 3 or ckpt[0] != 1 or ckpt[2] != want[2]:
        return False
    n = ckpt[1] - _pos_prefix_tokens(model)
    return n > 0 and round(n**0.5) ** 2 == n and hasattr(model, "patch_embed")


def _head_prefix(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier")
    return name if isinstance(name, str) and name else None


def _resolve_callable(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _plan(
    spec: BackboneSpec, model: nn.Module, ckpt: Mapping[str, Any], source: str, path: Path, notes: list[str]
) -> _Plan:
    """Match checkpoint keys to the model's state dict (works on a meta-device model)."""
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    report = LoadReport(backbone=spec.name, source=source, path=str(path), notes=list(notes))
    report.num_tensors = len(ckpt)
    report.num_elements = sum(int(v.numel()) for v in ckpt.values())
    report.dtypes = dict(Counter(str(v.dtype).removeprefix("torch.") for v in ckpt.values()))
    keys = list(ckpt)
    rename = {k: k for k in keys}

    def matches(names: list[str]) -> int:
        return sum(1 for n in names if n in model_shapes)

    if spec.converter:
        try:
            converted = _resolve_callable(spec.converter)({k: tuple(ckpt[k].shape) for k in keys}, model_shapes)
        except WeightsError as exc:  # the converter knows what is wrong, the caller which file and backbone
            raise WeightsError(f"{path}: not weights for {spec.name}: {exc}") from None
        if converted:
            rename = {k: converted.get(k, k) for k in keys}
            report.notes.append(f"renamed {len(converted)} keys with {spec.converter}")
    improved = True
    while improved:
        improved = False
        current = list(rename.values())
        for prefix in STRIPPABLE_PREFIXES:
            stripped = {k: v.removeprefix(prefix) for k, v in rename.items()}
            if matches(list(stripped.values())) > matches(current):
                rename, improved = stripped, True
                report.notes.append(f"stripped key prefix {prefix!r}")
                break
    target_of = {v: k for k, v in rename.items()}
    resample = []
    for key, want in model_shapes.items():
        if key not in target_of:
            report.missing.append(key)
            continue
        have = tuple(ckpt[target_of[key]].shape)
        if have == want:
            continue
        if key == "pos_embed" and _can_resample(model, have, want):
            resample.append(key)
            report.notes.append(f"position embedding resampled from {have} to {want}")
        else:
            report.mismatched.append((key, have, want))
    report.unexpected = [v for v in rename.values() if v not in model_shapes]
    head = _head_prefix(model)
    if head and report.missing and any(k.startswith(head + ".") for k in report.missing):
        dropped = [k for k in report.missing if k.startswith(head + ".")]
        report.missing = [k for k in report.missing if not k.startswith(head + ".")]
        report.notes.append(f"checkpoint has no classifier head ({', '.join(dropped)}); left random")
    return _Plan(rename=rename, resample=resample, report=report)


def _mismatch_error(spec: BackboneSpec, report: LoadReport) -> WeightsError:
    where = report.source if report.source == report.path else f"{report.source} ({report.path})"
    return WeightsError(
        f"{spec.name}: weights {where} do not match {spec.architecture}: "
        f"{report.problems()}; check the weights belong to this backbone, or load only what matches "
        "(training: --set model.strict_weights=false; `mitotype models check --no-strict` lists it)"
    )


# --------------------------------------------------------------------------- public entry points


def check_weights(spec: BackboneSpec, source: str | None = None) -> LoadReport:
    """Match a weight source against ``spec`` without allocating the model (meta device) and, for
    safetensors, without reading tensor values. Resolution errors raise; mismatches are reported."""
    source = source or spec.default_weights
    if not source or source == RANDOM:
        raise WeightsError(f"{spec.name}: no weights to check; pass --weights (file, folder or hub id)")
    path = resolve_weights(source, spec)
    ckpt, notes = _read(path, shapes_only=True)
    model = create_backbone(spec, device="meta")
    return _plan(spec, model, ckpt, source, path, notes).report


def load_weights(model: nn.Module, spec: BackboneSpec, source: str, *, strict: bool = True) -> LoadReport:
    """Load ``source`` into an allocated ``model`` built from ``spec``; strict unless ``strict=False``."""
    path = resolve_weights(source, spec)
    ckpt, notes = _read(path, shapes_only=False)
    plan = _plan(spec, model, ckpt, source, path, notes)
    if strict and not plan.report.ok:
        raise _mismatch_error(spec, plan.report)
    _apply(model, ckpt, plan)
    return plan.report


def _apply(model: nn.Module, ckpt: Mapping[str, torch.Tensor], plan: _Plan) -> None:
    bad = {k for k, _, _ in plan.report.mismatched} | set(plan.report.unexpected)
    state = {plan.rename[k]: v for k, v in ckpt.items() if plan.rename[k] not in bad}
    for key in plan.resample:
        from timm.layers import resample_abs_pos_embed

        state[key] = resample_abs_pos_embed(
            state[key].float(),
            new_size=list(model.patch_embed.grid_size),
            num_prefix_tokens=_pos_prefix_tokens(model),
        )
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # cannot happen after planning; guard against a silent partial load
        raise WeightsError(f"internal error: unexpected keys survived matching: {result.unexpected_keys[:5]}")


def build_backbone(
    spec: BackboneSpec, weights: str | None = None, *, strict: bool = True
) -> tuple[nn.Module, LoadReport | None]:
    """The timm backbone of ``spec`` with its weights loaded.

    ``weights=None`` takes the spec's default source (bundled file or Hub id); specs without one
    (tiny test models) and ``weights="random"`` give random initialisation and no report. Under a
    ``with torch.device("meta")`` block nothing is read either (a meta model holds no values; used to
    size models). When the checkpoint covers every tensor, the model is created on the meta device and
    materialised uninitialised before loading, which skips the (minutes-long for 1B parameters) init.
    """
    import torch

    source = weights if weights is not None else spec.default_weights
    if source is None or source == RANDOM or torch.get_default_device().type == "meta":
        return create_backbone(spec), None
    path = resolve_weights(source, spec)
    ckpt, notes = _read(path, shapes_only=False)
    meta_model = create_backbone(spec, device="meta")
    plan = _plan(spec, meta_model, ckpt, source, path, notes)
    if strict and not plan.report.ok:
        raise _mismatch_error(spec, plan.report)
    persistent = set(meta_model.state_dict())
    all_buffers = {n for n, _ in meta_model.named_buffers()}
    head = _head_prefix(meta_model)
    fully_covered = (
        not plan.report.missing
        and not plan.report.mismatched
        and not (head and any(k.startswith(head + ".") and k not in plan.rename.values() for k in persistent))
    )
    # Every tensor comes from the checkpoint: skip the random initialisation of a huge model.
    model = meta_model.to_empty(device="cpu") if fully_covered and all_buffers <= persistent else create_backbone(spec)
    _apply(model, ckpt, plan)
    return model, plan.report
