"""Run under `accelerate launch` (FSDP2, 2 CPU processes, gloo): the SFT or BPO recipe, unchanged, with a probe
callback that writes, per rank, what the parameters look like from inside training (DTensor or not, global and
local shapes) and a fingerprint of the full parameters at the start and end of training.

    accelerate launch --config_file CFG tests/scripts/fsdp_probe.py sft|bpo PROBE_DIR -- RECIPE ARGS...
"""

import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

torch.set_num_threads(1)


def _describe(model):
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        is_d = isinstance(p, DTensor)
        out[name] = {"dtensor": is_d, "shape": list(p.shape),
                     "local_shape": list(p.to_local().shape if is_d else p.shape),
                     "placements": [str(x) for x in p.placements] if is_d else None}
    return out


def _fingerprint(model):
    """Sum and sum of squares of every full parameter (all-gathers DTensors: every rank must call this)."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        full = p.full_tensor() if isinstance(p, DTensor) else p.data
        full = full.detach().double()
        out[name] = [full.sum().item(), (full * full).sum().item()]
    return out


class Probe(TrainerCallback):
    def __init__(self, out: Path):
        self.out = out

    def _write(self, state, what, data):
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_initialized() else 0
        self.out.mkdir(parents=True, exist_ok=True)
        Path(self.out, f"{what}_rank{rank}.json").write_text(json.dumps(
            {"global_step": state.global_step, "world_size": dist.get_world_size() if dist.is_initialized() else 1,
             "data": data}))

    def on_train_begin(self, args, state, control, model=None, **kw):
        self._write(state, "begin_params", _describe(model))
        self._write(state, "begin_fingerprint", _fingerprint(model))

    def on_train_end(self, args, state, control, model=None, **kw):
        self._write(state, "end_fingerprint", _fingerprint(model))


def _probed(cls, out, record_prompts=False):
    class Probed(cls):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.callback_handler.callbacks.insert(0, Probe(out))  # before BPO's probe generates
            if record_prompts:  # the prompt ids that reach generate on this rank, per call
                from bpo_helpers import GenerateRecorder

                tok = getattr(self.processing_class, "tokenizer", self.processing_class)
                self._r4b_recorder = GenerateRecorder(self.model, tok.pad_token_id)

        def train(self, *a, **k):
            result = super().train(*a, **k)
            rec = getattr(self, "_r4b_recorder", None)
            if rec is not None:
                Path(out, f"prompts_rank{self.accelerator.process_index}.json").write_text(
                    json.dumps([prompts for prompts, _ in rec.calls]))
            return result

    return Probed


def install_fsdp_on_cpu_shim():
    """TEST-SIDE SHIM (R4B_FSDP_CPU_SHIM=1): Accelerate 1.15 sets DistributedType.FSDP only on accelerator devices
    (state.py: the FSDP branch sits under MULTI_GPU/.../MULTI_NEURON); on 2 CPU processes it silently runs
    MULTI_CPU data parallel with full replicas, whatever the FSDP config says. The shim applies the FSDP plugin
    Accelerate built from the config to the MULTI_CPU state, so prepare() calls fully_shard on the gloo group."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def __init__(self, *a, fsdp_plugin=None, **k):
        original(self, *a, fsdp_plugin=fsdp_plugin, **k)
        # every later AcceleratorState() (set_seed, AcceleratedOptimizer, ...) copies PartialState's MULTI_CPU back
        plugin = fsdp_plugin or getattr(self, "fsdp_plugin", None)
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin

    AcceleratorState.__init__ = __init__


def main():
    import os

    if os.environ.get("R4B_FSDP_CPU_SHIM") == "1":
        install_fsdp_on_cpu_shim()
    kind, out = sys.argv[1], Path(sys.argv[2])
    if kind == "state":  # what Accelerate makes of the launch config, nothing else
        from accelerate import Accelerator

        acc = Accelerator(cpu=True)
        out.mkdir(parents=True, exist_ok=True)
        Path(out, f"state_rank{acc.process_index}.json").write_text(json.dumps(
            {"distributed_type": str(acc.state.distributed_type), "num_processes": acc.num_processes}))
        return
    argv = sys.argv[sys.argv.index("--") + 1:]
    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root), str(root / "tests")]
    if kind == "sft":
        import r4b_trl.sft as sft
        import importlib

        sft_run = importlib.import_module("r4b_trl.sft.run")  # where run() looks the trainer class up (the package's
        # own `run` attribute is the function, which shadows the submodule)

        original = sft_run._trainer_cls
        sft_run._trainer_cls = lambda: _probed(original(), out)
        from trl import ModelConfig, SFTConfig, TrlParser

        parser = TrlParser((sft.SFTScriptArguments, SFTConfig, ModelConfig))
        sft.run(*parser.parse_args_and_config(args=argv))
    else:
        import r4b_trl.bpo.trainer as bt
        from trl import ModelConfig, TrlParser

        from r4b_trl.bpo import BPOConfig
        from r4b_trl.bpo.recipe import BPOScriptArguments, main as bpo_main

        bt.BPOTrainer = _probed(bt.BPOTrainer, out, record_prompts=True)
        parser = TrlParser((BPOScriptArguments, BPOConfig, ModelConfig))
        bpo_main(*parser.parse_args_and_config(args=argv))


if __name__ == "__main__":
    main()
