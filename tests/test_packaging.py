"""The package as an image installs it (a wheel, not this checkout): every data file the code reads is in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("spotdiff", "httpkit", "services", "workers", "gateway")
DATA = {".json", ".html", ".js", ".css"}


def clean_copy(target: Path) -> Path:
    """The checkout's files as an image's build context has them: no egg-info, no build folder."""
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    for name in subprocess.run(listed, cwd=ROOT, check=True, capture_output=True, text=True).stdout.splitlines():
        source = ROOT / name
        if source.is_file() and not name.endswith(".egg-info") and ".egg-info/" not in name:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    source = clean_copy(tmp_path / "src")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("spotdiff-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and (path.suffix == ".py" or path.suffix in DATA) and "__pycache__" not in path.parts
    }
    assert "services/generation/configs/sdxl-base-1.0/scheduler/scheduler_config.json" in wanted
    assert wanted - names == set()
