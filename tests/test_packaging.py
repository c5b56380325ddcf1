"""The wheel carries every module and the top-level templates/ (installed as runner.templates)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_every_module_and_the_templates(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("runner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "runner").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - names == set(), "modules missing from the wheel: add their package to pyproject's packages"
    templates = {f"runner/templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")}
    assert {"runner/templates/startup.sh.j2", "runner/templates/items.sh.j2"} <= templates <= names
    assert "runner/data/aws_on_demand.csv" in names
