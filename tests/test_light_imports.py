"""The kernel (and the clients built on it) must not pull in torch or any model library."""

import subprocess
import sys

HEAVY = ("torch", "diffusers", "transformers", "open_clip", "segment_anything")


def test_kernel_and_clients_import_no_model_library() -> None:
    code = (
        "import sys, spotdiff, spotdiff.clients, spotdiff.pipeline, spotdiff.runner, spotdiff.cli, "
        "spotdiff.storage, spotdiff.gallery, services.kit, services.registry; "
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
