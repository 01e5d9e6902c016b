"""gptjax: train, sample and evaluate GPT-style language models with JAX and Flax NNX.

    from gptjax.config import load_config
    from gptjax.train import train
    train(load_config("configs/shakespeare_char_cpu.py", ["data.path=input.txt"]), "runs/baby")
"""

__version__ = "0.1.0"
