"""The README's Python blocks run as written (the quickstart on a smaller built-in benchmark)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

import sodlab

REPO = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)


def test_readme_quickstart_runs(tmp_path, repo_env):
    block = _python_blocks()[0]
    # 20 steps of batch 16: after 3 (48 images) BatchNorm's running statistics are still mostly
    # their defaults and the eval-mode map can saturate to one value (seen once in CI: all 255)
    small = block.replace("ensure_benchmark()", "ensure_benchmark(n_train=320, n_test=16)")
    assert small != block, "the quickstart no longer calls ensure_benchmark(): update this test"
    script = tmp_path / "quickstart.py"
    script.write_text(small + "\nprint('MAP', sal.shape, sal.dtype, int(sal.min()), int(sal.max()))\n", encoding="utf-8")
    env = {**repo_env, "SODLAB_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"MAP \((\d+), (\d+)\) (\w+) (\d+) (\d+)", proc.stdout)
    assert m, proc.stdout[-2000:]
    h, w, dtype, lo, hi = m.groups()
    assert (h, w, dtype) == ("512", "512", "uint8")  # skimage's astronaut is 512x512
    assert int(hi) - int(lo) > 64, (lo, hi)  # a map, not a constant: 120-180 levels apart in 6 runs
    assert (tmp_path / "my_csnet.pt").is_file() and (tmp_path / "runs" / "first" / "best.pt").is_file()


def test_readme_authors_weights_block_runs(reference_dir, tmp_path, monkeypatch):
    """The block that loads the authors' released weights, in a folder holding their two files
    and a photo: the map is the one the authors' own code gives for that photo."""
    block = next(b for b in _python_blocks() if "load_official_csnet" in b)
    for name in ("csnet-L-x2.pth.tar", "csnet-L-x2.bin"):
        (tmp_path / name).symlink_to(reference_dir / "official" / name)
    Image.fromarray(data.astronaut()).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {"sodlab": sodlab}
    exec(block.replace('"photo.jpg"', '"photo.png"'), scope)  # PNG: the same pixels as the reference input
    sal = scope["sal"]
    assert sal.shape == (512, 512) and sal.dtype == np.uint8
    with np.load(reference_dir / "csnet-L-x2_astronaut.npz") as ref:
        expected = ref["saliency"]
    diff = np.abs(sal.astype(np.float64) - expected) / 255
    # measured 1.6e-5: the two pipelines resize a little differently (inputs 1e-4 apart), which moves
    # a few hundred pixels of steep edges by 2-9 levels; any real mismatch is orders larger
    assert diff.mean() < 5e-5
