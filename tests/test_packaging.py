"""The wheel a lab installs: LICENSE inside, an SPDX license, classifiers, and a description the index can show."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)], check=True,
                   capture_output=True)
    (found,) = out.glob("freqlab-*.whl")
    return found


def test_the_wheel_carries_the_license_and_complete_metadata(wheel):
    import freqlab

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert f"{info}/licenses/LICENSE" in names
        assert zf.read(f"{info}/licenses/LICENSE").decode() == (ROOT / "LICENSE").read_text()
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert meta["Version"] == freqlab.__version__
    assert meta["License-Expression"] == "MIT"  # SPDX, not the deprecated table form
    assert not meta.get_all("License")
    classifiers = meta.get_all("Classifier")
    assert "Intended Audience :: Science/Research" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression alone
    assert "freqlab = freqlab.cli:main" in entry_points
    assert "freqlab/runtime/outputs.py" in names and not [n for n in names if n.startswith("tests/")]
    assert "freqlab/compare/criterion.json" in names  # the report reads it from the installed package
    # the package index cannot show images linked relative to the repository: the description has none
    body = meta.get_payload()
    assert "freqlab" in body and not re.search(r"!\[[^\]]*\]\((?!https://)", body)
