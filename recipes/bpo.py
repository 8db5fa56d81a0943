"""BPO (Bi-mode Policy Optimization, R-4B): GRPO with forced half-thinking / half-non-thinking rollout groups.

Tested launch commands:

    # CPU smoke run on the tiny offline model (seconds):
    python -m r4b_trl.tiny_models --out .tiny_models/text --kind text
    python recipes/bpo.py --config recipes/tiny/bpo/tiny.yaml
    accelerate launch --cpu --num_processes 1 recipes/bpo.py --config recipes/tiny/bpo/tiny.yaml

    # Two CPU processes (accelerate --cpu starts one process; torchrun gives two):
    torchrun --nproc_per_node 2 recipes/bpo.py --config recipes/tiny/bpo/tiny.yaml

    # GPU (see README "Scaling"):
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/bpo.py \
        --config recipes/qwen2.5-vl-3b/bpo/lora_24gb.yaml
    accelerate launch --config_file accelerate_configs/zero3.yaml recipes/bpo.py \
        --config recipes/qwen3-vl-8b/bpo/full_zero3_colocate.yaml

Any config field can be overridden on the command line (e.g. ``--max_steps 5``). A run whose output_dir holds a
checkpoint resumes from the last one; ``--resume_from_checkpoint PATH`` picks one. Bad options, paths or data
rows stop the run with one ``error:`` line (exit 2) before the model loads; ``--debug`` shows the traceback.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from r4b_trl.errors import cli, config_errors  # noqa: E402


def make_parser():
    from trl import ModelConfig, TrlParser

    from r4b_trl.bpo import BPOConfig
    from r4b_trl.bpo.recipe import BPOScriptArguments

    return TrlParser((BPOScriptArguments, BPOConfig, ModelConfig))


def main(argv=None):
    from r4b_trl.bpo.recipe import main as run

    with config_errors():
        script_args, training_args, model_args = make_parser().parse_args_and_config(args=argv)
    return run(script_args, training_args, model_args)


if __name__ == "__main__":
    sys.exit(cli(main))
