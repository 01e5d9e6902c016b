"""Hugging Face interop: GPT2LMHeadModel / LlamaForCausalLM directories in, gptjax runs out, and back.

    python -m gptjax.hf import /models/gpt2 runs/gpt2              # HF directory -> gptjax run directory
    python -m gptjax.hf export runs/baby hf/baby [--step N]         # gptjax run  -> HF directory

    run = load_hf("/models/gpt2")                     # a Run (as gptjax.run.load_run gives), nothing written
    import_hf("/models/gpt2", "runs/gpt2")            # sample / evaluate / checkpoint.init_from it like any run
    export_hf("runs/baby", "hf/baby")                 # transformers.AutoModelForCausalLM.from_pretrained("hf/baby")

Weights are read and written with safetensors, so neither direction needs torch. gptjax/hf/reading.py holds the
import side, gptjax/hf/writing.py the export side. What maps where:

    gptjax                  GPT2LMHeadModel (Conv1D: [in, out])     LlamaForCausalLM (Linear: [out, in])
    wte.embedding           wte.weight                              model.embed_tokens.weight
    wpe.embedding           wpe.weight                              (rope)
    blocks.ln_1             h.i.ln_1                                model.layers.i.input_layernorm
    blocks.attn.qkv         h.i.attn.c_attn (q|k|v fused already)   self_attn.{q,k,v}_proj (fused here)
    blocks.attn.out         h.i.attn.c_proj                         self_attn.o_proj
    blocks.ln_2             h.i.ln_2                                post_attention_layernorm
    blocks.mlp.up/gate      h.i.mlp.c_fc / -                        mlp.up_proj / mlp.gate_proj
    blocks.mlp.down         h.i.mlp.c_proj                          mlp.down_proj
    ln_f                    ln_f                                    model.norm
    lm_head.kernel          lm_head.weight (untied only)            lm_head.weight (untied only)

gptjax stacks each blocks.* array over a leading [num_layers] axis; HF stores one tensor per layer. Both use the
same head layout (each head's head_dim contiguous, q heads then k then v) and the same rotate-half RoPE, so
conversion is transposes, concatenation and stacking only: logits agree to float32 rounding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

from gptjax.command import ArgumentParser
from gptjax.errors import GptjaxError, report_errors
from gptjax.rundir import check_writable

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SUPPORTED = "GPT2LMHeadModel and LlamaForCausalLM"


# gptjax blocks.* parameter -> GPT-2 per-layer tensor (h.{i}.*), the same in both directions.
GPT2_LAYER = [("ln_1.scale", "ln_1.weight"), ("ln_1.bias", "ln_1.bias"), ("ln_2.scale", "ln_2.weight"),
              ("ln_2.bias", "ln_2.bias"), ("attn.qkv.kernel", "attn.c_attn.weight"),
              ("attn.qkv.bias", "attn.c_attn.bias"), ("attn.out.kernel", "attn.c_proj.weight"),
              ("attn.out.bias", "attn.c_proj.bias"), ("mlp.up.kernel", "mlp.c_fc.weight"),
              ("mlp.up.bias", "mlp.c_fc.bias"), ("mlp.down.kernel", "mlp.c_proj.weight"),
              ("mlp.down.bias", "mlp.c_proj.bias")]


class HFError(GptjaxError, ValueError):
    """A model or directory that cannot be converted; the message names the problem and what to do."""


def dotted(key_path) -> str:
    """'blocks.attn.qkv.kernel' for a parameter's pytree path (dict keys, then the Variable's .value)."""
    parts = []
    for k in key_path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey) and k.name != "value":
            parts.append(k.name)
    return ".".join(parts)


def fresh_directory(path: Path, what: str) -> None:
    """An output directory that is new or empty and can be written (made here, checked before any work)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise HFError(f"{path} already exists and is not empty; choose a new {what}")
    check_writable(path, f"the {what}", f"choose a writable {what}")


# Imported after what they share from here (HFError, the file names, dotted, fresh_directory).
from gptjax.hf.reading import hf_tokenizer, import_hf, load_hf, model_values  # noqa: E402
from gptjax.hf.writing import export_family, export_hf, hf_tokenizer_object  # noqa: E402

__all__ = ["HFError", "export_family", "export_hf", "hf_tokenizer", "hf_tokenizer_object", "import_hf", "load_hf", "main",
           "model_values"]


# ----------------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gptjax.hf", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    imp = commands.add_parser("import", help="a Hugging Face model directory -> a gptjax run directory")
    imp.add_argument("src", help="a local directory with config.json and model.safetensors (or a hub name)")
    imp.add_argument("run_dir", help="the run directory to write (new or empty)")
    imp.add_argument("--block-size", type=int, help="cap the context length (default: the model's)")
    exp = commands.add_parser("export", help="a gptjax run directory -> a Hugging Face model directory")
    exp.add_argument("run_dir", help="a run directory written by gptjax.train or gptjax.hf import")
    exp.add_argument("out_dir", help="the directory to write (new or empty)")
    exp.add_argument("--step", type=int, help="which checkpoint (default: the newest)")
    exp.add_argument("--best", action="store_true", help="the checkpoint with the lowest validation loss")
    args = parser.parse_args(argv)

    def work() -> None:
        if args.command == "import":
            import_hf(args.src, args.run_dir, block_size=args.block_size)
            print(f"imported {args.src} into {args.run_dir}")
        else:
            export_hf(args.run_dir, args.out_dir, args.step, best=args.best)
            print(f"exported {args.run_dir} to {args.out_dir}")

    return report_errors(work)


if __name__ == "__main__":
    sys.exit(main())
