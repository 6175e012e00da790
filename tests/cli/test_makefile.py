"""The Makefile's run folders: training and prediction must name the same one."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


@pytest.fixture
def ticking_date(tmp_path: Path) -> dict[str, str]:
    """A `date` that answers a later second on every call, like a recipe crossing seconds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    counter = tmp_path / "calls"
    counter.write_text("0")
    fake = bin_dir / "date"
    fake.write_text(
        "#!/bin/bash\n"
        f'n=$(( $(cat "{counter}") + 1 )); echo $n > "{counter}"\n'
        'printf "2026-01-01_00-00-%02d\\n" "$n"\n'
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(
    ("target", "folder"), [("demo", "demo_video_qa"), ("test-core", "core_install")]
)
def test_every_recipe_line_names_one_run_folder(
    ticking_date: dict[str, str], target: str, folder: str
) -> None:
    dry_run = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", target],
        cwd=REPO,
        env=ticking_date,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    run_dirs = re.findall(rf"outputs/{folder}/[\w-]+", dry_run)
    assert len(run_dirs) >= 2, dry_run  # trained into, then predicted from
    assert len(set(run_dirs)) == 1, f"`make {target}` names several run folders: {set(run_dirs)}"
