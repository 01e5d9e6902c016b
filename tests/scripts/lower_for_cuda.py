"""Lowers the train step for CUDA for each case given as JSON on the command line ({id: [overrides]}) over 8
simulated CPU devices, and prints one line `RESULT {id: {...}}`: the kernels, matmul dtypes, donation and score
tensors of each lowered program, the promises it breaks, and, for cases whose id starts with 'collectives:', the
collectives of the same step compiled for the CPU devices. Run by tests/test_lowering.py in a fresh process (the
device count must be set before JAX starts).

cuDNN's attention checks for an installed cuDNN before it traces; here that detection is stubbed (an H100 with
cuDNN 9.10), which is only ever done in this test script: the lowering itself is jax's own."""

import json
import sys
from unittest import mock

import jax
from jax._src.cudnn import fused_attention_stablehlo as cudnn_attention

from gptjax.config import load_config
from gptjax.lowering import broken_promises, collectives, lower_train_step


def main() -> None:
    cases = json.loads(sys.argv[1])
    results = {}
    with mock.patch.object(cudnn_attention, "check_cudnn_version", lambda: 91000), \
            mock.patch.object(cudnn_attention, "check_compute_capability", lambda capability: True), \
            mock.patch.object(cudnn_attention, "is_cuda_compute_capability_equal", lambda capability: False):
        for case, overrides in cases.items():
            cfg = load_config(None, overrides)
            one_device = all(f"mesh.{axis}=1" in overrides for axis in ("data", "fsdp", "tensor"))
            try:
                lowered = lower_train_step(cfg, devices=jax.devices()[:1] if one_device else None)
            except Exception as e:  # noqa: BLE001  (reported per case, so that one failure names its config)
                results[case] = {"error": f"{type(e).__name__}: {e}"}
                continue
            results[case] = {"attention": lowered.attention, "kernels": dict(lowered.kernels()),
                             "dots": {"/".join(k): n for k, n in lowered.dots().items()},
                             "donated": lowered.donated(), "state_arrays": lowered.state_arrays,
                             "score_matrices": lowered.score_matrices(), "broken": broken_promises(lowered)}
            if case.startswith("collectives:"):
                results[case]["collectives"] = dict(collectives(lowered))
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
