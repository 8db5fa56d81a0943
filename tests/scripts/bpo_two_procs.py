"""Run under `torchrun --nproc_per_node 2`: 2 BPO steps on 2 CPU processes; each rank writes the forced mode of
every prompt it sent to `generate`, in order, to rank<R>.json."""

import json
import sys

import torch

from bpo_helpers import GenerateRecorder, bpo_args, length_reward, text_rows
from test_bpo import _mode_of_prompt

torch.set_num_threads(1)


def main(model_path, out_dir):
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r4b_trl.bpo import BPOTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    args = bpo_args(Path(out_dir), per_device_train_batch_size=2, num_generations=4, max_steps=2)
    trainer = BPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), reward_funcs=[length_reward],
                         args=args, train_dataset=text_rows(), processing_class=tok)
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    rec = GenerateRecorder(trainer.model, tok.pad_token_id)
    trainer.train()
    modes = [[_mode_of_prompt(p, tok) for p in prompts] for prompts, _ in rec.calls]
    Path(out_dir, f"rank{trainer.accelerator.process_index}.json").write_text(json.dumps(modes))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
