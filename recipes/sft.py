"""Bi-mode annealing: SFT on a curated mix of thinking and non-thinking targets (R-4B stage 1).

Tested launch commands (CPU, tiny offline models; build them once):

    python -m r4b_trl.tiny_models --out .tiny_models/text --kind text
    python -m r4b_trl.tiny_models --out .tiny_models/vision --kind vision
    accelerate launch --cpu --num_processes 1 recipes/sft.py --config recipes/tiny/sft/tiny.yaml
    python recipes/sft.py --config recipes/tiny/sft/tiny_vision.yaml --max_steps 1 --output_dir outputs/sft/v

GPU configs (not run in CI; see README "Annealing"):

    accelerate launch recipes/sft.py --config recipes/qwen2.5-vl-3b/sft/lora_24gb.yaml
    accelerate launch --config_file accelerate_configs/zero3.yaml recipes/sft.py \
        --config recipes/qwen3-vl-8b/sft/full_zero3.yaml
    accelerate launch recipes/sft.py --config recipes/qwen3-4b/sft/full.yaml

Any config key can be overridden on the command line (``--learning_rate 1e-5``). A run whose ``output_dir``
already holds ``checkpoint-*`` folders resumes from the last one (``--auto_resume false`` to disable);
``--resume_from_checkpoint PATH`` resumes from a given checkpoint. The data is validated before the model is
loaded: rows whose target is not a valid thinking / non-thinking answer are refused, by name. Bad options, paths
or rows stop the run with one ``error:`` line (exit 2); ``--debug`` shows the traceback.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from r4b_trl.errors import cli, config_errors  # noqa: E402


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    from r4b_trl.sft import SFTScriptArguments

    return TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))


def main(argv=None):
    from r4b_trl.sft import run

    with config_errors():
        script_args, training_args, model_args = make_parser().parse_args_and_config(args=argv)
    return run(script_args, training_args, model_args)


if __name__ == "__main__":
    sys.exit(cli(main))
