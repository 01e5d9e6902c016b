"""notebooks/quickstart.ipynb runs from top to bottom on a CPU, and says what it should.

The notebook is executed in a kernel of this interpreter (the .venv's ipykernel: jupyter_client swaps the
kernelspec's "python" for sys.executable), from the repository root so `import gptjax` finds this checkout, with
its run directory in a pytest temporary directory: the repository is never written to.
"""

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def _text(cell) -> str:
    """Everything a code cell printed or displayed as text, and its error if it raised."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback))
    return "".join(parts)


def test_the_committed_notebook_holds_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert not cell.outputs and cell.execution_count is None, f"stored output in cell:\n{cell.source[:200]}"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    run_root = tmp_path_factory.mktemp("quickstart")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_before = os.environ.get("GPTJAX_QUICKSTART_DIR")
    # The kernel inherits this process's environment: that is how the notebook learns where to write.
    os.environ["GPTJAX_QUICKSTART_DIR"] = str(run_root)
    try:
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(REPO)}})
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("GPTJAX_QUICKSTART_DIR", None)
        else:
            os.environ["GPTJAX_QUICKSTART_DIR"] = env_before
    outputs = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    return run_root / "tiny", outputs


def test_the_notebook_trains_evaluates_and_samples(executed):
    run_dir, outputs = executed
    # The run went where the notebook was told, and is a complete run directory.
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints").is_dir()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert max(r["step"] for r in records) == 200

    final = re.search(r"final train loss (\S+), val loss (\S+)", outputs)
    assert final, outputs[-3000:]
    train_loss, val_loss = map(float, final.groups())
    assert math.isfinite(train_loss) and math.isfinite(val_loss)
    # 200 steps must have learned something: a uniform guess over ~95 characters is a loss of ln(95) = 4.55.
    assert val_loss < 3.5

    evaluated = re.search(r"val_loss (\S+), perplexity (\S+) over", outputs)
    assert evaluated and math.isfinite(float(evaluated.group(1))), outputs[-3000:]

    # The reprs the notebook shows.
    assert re.search(r"Run\('.*tiny', step 200, [\d,]+ parameters: 2 layers, 2 heads, d_model 64, block 64", outputs)
    assert re.search(r"GPT\([\d,]+ parameters: 2 layers", outputs)
    assert re.search(r"Setup\([\d,]+ parameters; mesh data \d+", outputs)
    assert "WindowLoader(" in outputs and "CharTokenizer(" in outputs
    assert "\ndef " in outputs  # run.sample's text starts with its prompt


def test_the_kernel_is_this_interpreter():
    # nbclient finds "python3" among jupyter's kernelspecs; were it another interpreter, the notebook would test
    # whatever gptjax that one imports. jupyter_client replaces a kernelspec's bare "python" by sys.executable.
    from jupyter_client.manager import KernelManager

    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve(), command


def test_the_run_directory_is_outside_the_repository(executed):
    run_dir, _ = executed
    assert REPO not in run_dir.resolve().parents


# ----------------------------------------------------------------------------------------------------------------
# The API the notebook uses


def _python(code: str, **env) -> str:
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_gptjax_is_cheap_and_every_export_resolves():
    out = _python("import sys, gptjax; print('jax' in sys.modules); "
                  "print(all(getattr(gptjax, n) is not None for n in gptjax.__all__)); print('jax' in sys.modules)")
    assert out.split() == ["False", "True", "True"]


def test_gptjax_train_is_the_command_module_and_trainer_trains():
    # The package does not pretend a submodule is a function: gptjax.train is the command's module once imported,
    # and before that the attribute error says where training lives.
    out = _python("import gptjax\n"
                  "try:\n    gptjax.train\nexcept AttributeError as e:\n    print(str(e).split(';')[1].strip())\n"
                  "import gptjax.train\nprint(type(gptjax.train).__name__, gptjax.Trainer.__module__)")
    assert out.splitlines() == ["from Python, train with gptjax.Trainer(cfg, run_dir).run()", "module gptjax.trainer"]


def test_setup_repr_counts_the_bytes_on_each_device():
    # Four simulated CPU devices: fully sharded (fsdp) holds about a quarter of what data parallelism holds.
    out = _python(
        "import gptjax\n"
        "for mesh in (['mesh.data=4'], ['mesh.data=1', 'mesh.fsdp=4']):\n"
        "    cfg = gptjax.load_config(None, ['model.d_model=64', *mesh])\n"
        "    built = gptjax.setup(cfg, gptjax.ModelConfig.from_config(cfg.model, 128))\n"
        "    print(built.bytes_per_device()); print(repr(built))\n",
        XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    replicated, replicated_repr, sharded, sharded_repr = out.splitlines()
    assert 3.5 < int(replicated) / int(sharded) <= 4
    assert "mesh data 4 x fsdp 1 x tensor 1 (4 devices)" in replicated_repr
    assert "mesh data 1 x fsdp 4 x tensor 1 (4 devices)" in sharded_repr


def test_model_config_and_gpt_reprs_summarize_the_shape():
    from flax import nnx

    from gptjax.model import GPT, ModelConfig, count_params

    mc = ModelConfig(vocab_size=65, block_size=32, num_layers=2, num_heads=4, d_model=32, num_kv_heads=2,
                     mlp="swiglu")
    assert repr(mc) == (f"ModelConfig(vocab_size=65, block_size=32, num_layers=2, num_heads=4, d_model=32, "
                        f"num_kv_heads=2, mlp='swiglu') [{count_params(mc):,} parameters]")
    model = nnx.eval_shape(lambda: GPT(mc, rngs=nnx.Rngs(0)))  # shapes only: the repr must not need arrays
    assert model.num_params == count_params(mc)
    assert repr(model).startswith(f"GPT({count_params(mc):,} parameters: 2 layers, 4 heads (2 kv) of 8, "
                                  "d_model 32, d_ff 128, block 32, vocab 65; learned positions, swiglu")
