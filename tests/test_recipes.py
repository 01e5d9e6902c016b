"""Full training recipes: minutes each, so marked slow (run with `make test-slow`)."""

from pathlib import Path

import pytest

from gptjax.config import load_config
from gptjax.trainer import train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_baby_shakespeare_matches_the_reference(tmp_path, shakespeare_path):
    cfg = load_config(REPO / "configs/shakespeare_char_cpu.py", [f"data.path={shakespeare_path}",
                                                                 "train.sample_tokens=0"])
    final = train(cfg, tmp_path / "baby")
    # The same recipe in PyTorch on this machine ends at 1.892-1.899 (full validation split, three seeds), and
    # gptjax at 1.889-1.914 over five seeds (docs/benchmarks.md): a regression shows as a clear step above that.
    assert final["val_loss"] < 1.93
