"""Device, dtype and revision resolution shared by the services' ``model.py`` files.

torch is imported inside the functions: only model-loading code calls them, and the kit stays importable
(and its routes answerable) before torch has loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

FULL_HASH_LIMIT = 256 * 2**20  # hash whole files up to this total; larger sets hash head, tail and size


def resolve_device(setting: str) -> str:
    """``auto`` means the first CUDA device when there is one, else the CPU."""
    import torch

    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(setting: str, device: str) -> Any:
    """``auto`` is fp16 on CUDA and fp32 on the CPU (half precision on a CPU is slow and lossy)."""
    import torch

    if setting == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[setting]


def limit_device_memory(device_setting: str, fraction: float | None) -> None:
    """Cap what this process may allocate on its CUDA device, so that services sharing one card each keep to
    their budget (an over-budget allocation fails in this service instead of starving its neighbours)."""
    if fraction is None:
        return
    import torch

    device = resolve_device(device_setting)
    if device.startswith("cuda"):
        torch.cuda.set_per_process_memory_fraction(fraction, torch.device(device))


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def fingerprint(path: str | Path) -> str:
    """A checksum of a local checkpoint (file or directory), so `/v1/info` names exactly what is loaded.

    Small checkpoints are hashed whole; for large ones (an SDXL directory is ~7 GB) each file contributes its
    size and its first and last MiB, which changes whenever the weights do without reading them all.
    """
    root = Path(path)
    files = sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    total = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root if root.is_dir() else root.parent)).encode())
        size = file.stat().st_size
        digest.update(size.to_bytes(8, "little"))
        with file.open("rb") as handle:
            if total <= FULL_HASH_LIMIT:
                for chunk in iter(lambda: handle.read(2**20), b""):
                    digest.update(chunk)
            else:
                digest.update(handle.read(2**20))
                if size > 2**20:
                    handle.seek(-(2**20), 2)
                    digest.update(handle.read())
    return "sha256:" + digest.hexdigest()[:16]


def revision_of(model: str) -> str:
    """A local path's fingerprint, or the cached snapshot's commit for a hub id (``unknown`` when absent)."""
    local = Path(model.removeprefix("local-dir:"))
    if local.exists():
        return fingerprint(local)
    try:
        from huggingface_hub import snapshot_download

        return "hub:" + Path(snapshot_download(model, local_files_only=True)).name
    except Exception:
        return "unknown"
