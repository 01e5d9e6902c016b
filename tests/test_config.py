import subprocess
import sys
from pathlib import Path

import pytest

from gptjax.config import ConfigError, base_config, load_config, save_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load_and_validate(path):
    cfg = load_config(path)
    assert cfg.train.steps > 0


def test_presets_have_the_published_shapes():
    small = load_config(REPO / "configs/gpt2_small.py").model
    assert (small.num_layers, small.num_heads, small.d_model, small.block_size, small.vocab_size) == (12, 12, 768, 1024, 50304)
    medium = load_config(REPO / "configs/gpt2_medium.py").model
    assert (medium.num_layers, medium.num_heads, medium.d_model) == (24, 16, 1024)
    baby = load_config(REPO / "configs/shakespeare_char_cpu.py")
    assert (baby.model.num_layers, baby.model.num_heads, baby.model.d_model, baby.model.block_size) == (4, 4, 128, 64)
    assert (baby.train.batch_size, baby.train.steps, baby.model.dropout) == (12, 2000, 0.0)
    full = load_config(REPO / "configs/shakespeare_char.py")
    assert (full.model.num_layers, full.model.d_model, full.model.block_size, full.model.dropout) == (6, 384, 256, 0.2)
    modern = load_config(REPO / "configs/modern_small.py").model
    assert (modern.position, modern.mlp, modern.norm, modern.use_bias) == ("rope", "swiglu", "rmsnorm", False)
    assert 1 < modern.num_kv_heads < modern.num_heads


def test_overrides_are_typed():
    cfg = load_config(None, ["model.num_layers=3", "optim.lr=3e-4", "model.qk_norm=true", "optim.weight_decay=0"])
    assert cfg.model.num_layers == 3 and cfg.optim.lr == 3e-4 and cfg.model.qk_norm is True
    assert isinstance(cfg.optim.weight_decay, float)


@pytest.mark.parametrize("override, expected", [
    ("model.num_layer=3", "unknown key model.num_layer (did you mean model.num_layers?)"),
    ("modle.num_layers=3", "did you mean model?"),
    ("model.num_layers=three", "model.num_layers must be an integer"),
    ("model.qk_norm=3", "model.qk_norm must be true or false"),
    ("model.norm=batchnorm", "model.norm='batchnorm' is not one of: layernorm, rmsnorm"),
    ("model.attention=flash", "is not one of: xla, cudnn, pallas, auto"),
    ("model.num_heads=5", "model.num_heads=5 must divide model.d_model=128"),
    ("model.num_kv_heads=3", "model.num_kv_heads=3 must divide model.num_heads=4"),
    ("train.grad_accum=5", "train.grad_accum=5 must divide train.batch_size=12"),
    ("model.dropout=1.5", "model.dropout=1.5 must be in [0, 1)"),
    ("data.source=text", "data.source='text' needs data.path"),
    ("model=3", "model is a section"),
    ("train.steps=0", "train.steps=0 must be positive"),
    ("optim.min_lr=1.0", "optim.min_lr=1.0 within [0, lr]"),
])
def test_bad_settings_name_the_key(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_fused_attention_cannot_drop_attention_probabilities():
    with pytest.raises(ConfigError, match="attn_dropout>0 needs model.attention='xla'"):
        load_config(None, ["model.attn_dropout=0.1", "model.attention=cudnn"])


def test_yaml_round_trip_repeats_the_config(tmp_path):
    cfg = load_config(REPO / "configs/shakespeare_char.py", ["train.steps=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_yaml_with_unknown_key_fails(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  num_layers: 2\n  widht: 64\n")
    with pytest.raises(ConfigError, match="unknown key model.widht"):
        load_config(tmp_path / "c.yaml")


def test_python_config_with_typo_fails(tmp_path):
    (tmp_path / "c.py").write_text(
        "from gptjax.config import base_config\n"
        "def get_config():\n    c = base_config()\n    c.model.num_layer = 2\n    return c\n")
    with pytest.raises(ConfigError, match=r"unknown key num_layer \(did you mean num_layers\?\)"):
        load_config(tmp_path / "c.py")


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.py")


def test_base_config_is_locked():
    with pytest.raises(AttributeError):
        base_config().train.stpes = 3


def test_cli_reports_a_bad_key_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.train", "--workdir", str(tmp_path / "run"), "--config.model.num_layer=2"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: unknown key model.num_layer (did you mean model.num_layers?); valid keys in model: "
                     + ", ".join(sorted(base_config().model.keys()))]
    assert not (tmp_path / "run").exists()  # nothing is written for a config that cannot run


@pytest.mark.parametrize("source, expected", [
    ('raise RuntimeError("boom")\n', r"failed to load: RuntimeError: boom \(line 1\)"),
    ("import a_module_that_is_not_there\n", r"failed to load: ModuleNotFoundError: No module named"),
    ("x = 1\ny = 1 / 0\n", r"failed to load: ZeroDivisionError: division by zero \(line 2\)"),
    ("def get_config(:\n", r"has a syntax error at line 1"),
    ("x = 1\n", r"has no get_config\(\) function"),
    ("def get_config():\n    return 1 / 0\n", r"get_config\(\) raised ZeroDivisionError: division by zero \(line 2\)"),
])
def test_a_python_config_that_fails_is_one_clear_error(tmp_path, source, expected):
    path = tmp_path / "mine.py"
    path.write_text(source)
    with pytest.raises(ConfigError, match=rf"config file {path}.*{expected}"):
        load_config(path)


def test_string_keys_take_the_text_as_it_is_and_bad_yaml_is_named():
    cfg = load_config(None, ["train.sample_prompt=ROMEO:", "data.tokenizer=1234", "data.url=null"])
    assert cfg.train.sample_prompt == "ROMEO:" and cfg.data.tokenizer == "1234" and cfg.data.url is None
    with pytest.raises(ConfigError, match=r"--config.train.steps=\[1, is not a value gptjax can read"):
        load_config(None, ["train.steps=[1,"])
    with pytest.raises(ConfigError, match=r"train.steps must be an integer, got 'ten'"):
        load_config(None, ["train.steps=ten"])


def test_a_warmup_longer_than_the_run_is_warned_not_refused():
    from gptjax.config import settings_warnings as warnings

    assert warnings(load_config(None, ["train.steps=1000", "optim.warmup_steps=100"])) == []
    found = warnings(load_config(None, ["train.steps=3", "optim.warmup_steps=1000"]))
    assert len(found) == 1 and "optim.warmup_steps=1000 is more than train.steps=3" in found[0]
    found = warnings(load_config(None, ["optim.decay_steps=50", "optim.warmup_steps=100"]))
    assert len(found) == 1 and "decays before it has warmed up" in found[0]


def test_a_pinned_decay_longer_than_a_shortened_run_is_warned():
    """The baby recipe pins decay_steps=2000: cut to 40 steps, its learning rate barely starts to fall."""
    from gptjax.config import settings_warnings as warnings

    found = warnings(load_config(str(REPO / "configs/shakespeare_char_cpu.py"), ["train.steps=200"]))
    assert found == ["optim.decay_steps=2000 is more than train.steps=200: the run ends at lr 0.000994, before the "
                     "cosine reaches optim.min_lr=0.0001; set optim.decay_steps=0 to decay over train.steps"]
    assert warnings(load_config(str(REPO / "configs/shakespeare_char_cpu.py"), [])) == []
    assert warnings(load_config(str(REPO / "configs/shakespeare_char_cpu.py"),
                                ["train.steps=200", "optim.decay_steps=0"])) == []
