"""Wrong BPO combinations are refused with one clear line, before any model is loaded."""

import pytest
from bpo_helpers import bpo_args


@pytest.mark.parametrize("kw,msg", [
    (dict(train_mode_token=True, importance_sampling_level="sequence"), "importance_sampling_level='token'"),
    (dict(train_mode_token=True, loss_type="vespo"), "does not support loss_type='vespo'"),
    (dict(train_mode_token=True, force_modes=False), "needs force_modes=true"),
    (dict(num_generations_eval=1), r"num_generations_eval=1 = 0.5 is not a whole number"),  # all eval rollouts in one mode
    (dict(num_generations_eval=3), r"num_generations_eval=3 = 1.5 is not a whole number"),
    (dict(mode_credit="decision_token"), "needs train_mode_token=true"),
    (dict(advantage_grouping="per_prompt"), "advantage_grouping='per_prompt'"),
    (dict(thinking_margin=-0.1), "thinking_margin=-0.1 must be >= 0"),
    (dict(thinking_margin=0.1, force_modes=False), "need force_modes=true"),
    (dict(thinking_margin=0.1, multi_objective_aggregation="normalize_then_sum"), "sum_then_normalize"),
    (dict(forced_schedule="0:1.0,50"), "is not 'step:fraction'"),
    (dict(forced_schedule="10:1.0"), "must start at step 0"),
])
def test_bad_combinations(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        bpo_args(tmp_path, **kw)


def test_defaults_are_the_papers_objective(tmp_path):
    from trl import GRPOConfig

    from r4b_trl.bpo import BPOConfig

    kw = dict(use_cpu=True, bf16=False)
    bpo, trl = BPOConfig(output_dir=str(tmp_path / "a"), **kw), GRPOConfig(output_dir=str(tmp_path / "b"), **kw)
    assert (bpo.loss_type, bpo.scale_rewards, bpo.mask_truncated_completions) == ("grpo", "group", True)
    assert bpo.beta > 0 and trl.beta == 0.0 and trl.loss_type == "dapo" and not trl.mask_truncated_completions
    assert (bpo.advantage_grouping, bpo.mode_credit, bpo.thinking_margin, bpo.train_mode_token,
            bpo.forced_schedule) == ("mixed", "sequence", 0.0, False, None)


def test_string_prompts_refused_with_train_mode_token_before_model_load(tmp_path, text_tokenizer):
    from datasets import Dataset

    from r4b_trl.bpo import BPOTrainer
    from r4b_trl.data.io import DataError

    rows = Dataset.from_list([{"prompt": "What is 1+1?", "solution": "2"}] * 4)
    args = bpo_args(tmp_path, train_mode_token=True)
    # The model id does not exist: a DataError (not a loading error) proves the check runs first.
    with pytest.raises(DataError, match="train_mode_token needs conversational prompts"):
        BPOTrainer(model=str(tmp_path / "no-such-model"), args=args, train_dataset=rows,
                   processing_class=text_tokenizer)


def test_one_sided_decision_token_refused_with_train_mode_token(tmp_path, text_tokenizer):
    from r4b_trl.bpo import validate_processing_class
    from r4b_trl.modes import ModeError, get_prefixes
    from r4b_trl.tiny_models import build_char_tokenizer

    tok = build_char_tokenizer(pair_newlines=False)  # "<think>\n" is a token prefix of the non-thinking pre-fill
    tok.chat_template = text_tokenizer.chat_template
    validate_processing_class(tok, get_prefixes("qwen3"))  # fine for paper-faithful BPO
    with pytest.raises(ModeError, match="generates it on one side"):
        validate_processing_class(tok, get_prefixes("qwen3"), train_mode_token=True)
