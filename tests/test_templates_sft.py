"""SFT targets on every thinking-capable template TRL ships: decoded from the tokens TRL's own SFT pipeline trains.

For each template, rows (multi-turn prompts whose earlier assistant turn carries reasoning; a thinking and a
non-thinking target) go through ``adapt_sft_templates`` and then TRL's ``SFTTrainer._prepare_dataset`` and data
collator. The trained tokens must decode to the target verbatim (think block, decision token and reasoning
included) followed by the template's own end of turn, and the untrained context must be exactly the tokens the
model sees at inference in that mode (``render_prompt``) minus the mode's pre-fill."""

import copy
import glob
import os

import pytest
from datasets import Dataset

import trl
from r4b_trl.modes import ModeError, ModePrefixes
from r4b_trl.templates import render_prompt

P = ModePrefixes()
TRL_DIR = os.path.join(os.path.dirname(trl.__file__), "chat_templates")
THINKING = sorted(os.path.basename(f)[:-6] for f in glob.glob(os.path.join(TRL_DIR, "*.jinja"))
                  if P.open_tag in open(f, encoding="utf-8").read())
NO_SFT = {"glm4moe"}  # closes assistant turns with nothing: refused for SFT (test_templates.py checks the message)
HISTORY = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>\nTwo plus two is four.\n</think>\n\n4"},
    {"role": "user", "content": "What is 2+3?"},
]
TARGETS = {"thinking": "<think>\n2+3=5\n</think>\n\nThe answer is 5.",
           "non_thinking": "<think>\n\n</think>\n\nThe answer is 5."}


@pytest.fixture(scope="module")
def sft_trainer(tiny_text_model, text_tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("sft")), per_device_train_batch_size=2, max_steps=1,
                     use_cpu=True, bf16=False, report_to=[], shuffle_dataset=False)
    ds = Dataset.from_list([{"prompt": HISTORY, "completion": [{"role": "assistant", "content": TARGETS["thinking"]}]}])
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_text_model), args=args, train_dataset=ds,
                      processing_class=copy.deepcopy(text_tokenizer))


def _template(name):
    with open(os.path.join(TRL_DIR, name + ".jinja"), encoding="utf-8") as f:
        return f.read()


def _end_of_turn(tok, template, target):
    """What the template itself writes after this target's content (from its own rendering of the turn)."""
    text = tok.apply_chat_template(HISTORY + [{"role": "assistant", "content": target}], tokenize=False,
                                   chat_template=template)
    answer = target.split("</think>")[-1].strip()
    return text[text.rindex(answer) + len(answer):]


@pytest.mark.parametrize("name", THINKING)
def test_decoded_sft_targets_per_template(sft_trainer, text_tokenizer, name):
    from r4b_trl.sft import adapt_sft_templates

    template = _template(name)
    tok = copy.deepcopy(text_tokenizer)
    tok.chat_template = template
    ds = Dataset.from_list([{"prompt": HISTORY, "completion": [{"role": "assistant", "content": t}]}
                            for t in TARGETS.values()])
    if name in NO_SFT:
        with pytest.raises(ModeError, match=f"^SFT: The {name} chat template"):
            adapt_sft_templates(tok, P, copy.copy(sft_trainer.args), ds)
        return
    ds, _, saved = adapt_sft_templates(tok, P, copy.copy(sft_trainer.args), ds)
    prepared = sft_trainer._prepare_dataset(ds, tok, sft_trainer.args, False, None, name)
    batch = sft_trainer.data_collator([prepared[i] for i in range(len(prepared))])
    for row, (mode, target) in enumerate(TARGETS.items()):
        ids = [int(i) for i, m in zip(batch["input_ids"][row], batch["attention_mask"][row]) if int(m)]
        labels = [int(x) for x, m in zip(batch["labels"][row], batch["attention_mask"][row]) if int(m)]
        first = next(k for k, x in enumerate(labels) if x != -100)
        assert all(x != -100 for x in labels[first:])
        trained = tok.decode(ids[first:])
        end = _end_of_turn(tok, template, target)
        assert end.strip(), name
        # The whole assistant turn is trained: think block + decision token + reasoning + answer + end of turn.
        assert trained == target + end, (name, mode, trained)
        # The context is exactly what the model sees at inference in this mode, before the mode's pre-fill, and
        # the inference prompt's tokens are a prefix of the training sequence.
        inference = render_prompt(_with(text_tokenizer, template), HISTORY, mode)
        assert tok.decode(ids[:first]) == inference[:len(inference) - len(P.prefix(mode))]
        inf_ids = text_tokenizer(inference, add_special_tokens=False)["input_ids"]
        assert ids[:len(inf_ids)] == inf_ids
    # The model is saved with a template that renders the model's own template unchanged and reaches every mode.
    plain = _with(text_tokenizer, template)
    assert plain.apply_chat_template(HISTORY, tokenize=False, add_generation_prompt=True, chat_template=saved) == \
        plain.apply_chat_template(HISTORY, tokenize=False, add_generation_prompt=True)


def _with(tok, template):
    out = copy.deepcopy(tok)
    out.chat_template = template
    return out


def test_chat_template_path_is_applied_before_the_check(sft_trainer, text_tokenizer, tmp_path):
    """TRL's chat_template_path is applied by r4b-trl first (and cleared so that TRL does not put it back over the
    SFT template): here it swaps R1-distill's template for r4b-trl's ChatML one."""
    from r4b_trl.chat_templates import DEFAULT_CHAT_TEMPLATE
    from r4b_trl.sft import adapt_sft_templates
    from r4b_trl.templates import template_family

    tok = _with(text_tokenizer, _template("deepseek_r1_distill"))
    path = tmp_path / "t.jinja"
    path.write_text(DEFAULT_CHAT_TEMPLATE)
    args = copy.copy(sft_trainer.args)
    args.chat_template_path = str(path)
    ds = Dataset.from_list([{"prompt": HISTORY, "completion": [{"role": "assistant", "content": TARGETS["thinking"]}]}])
    _, _, saved = adapt_sft_templates(tok, P, args, ds)
    assert args.chat_template_path is None
    assert template_family(tok.chat_template) == "r4b_default" and saved == DEFAULT_CHAT_TEMPLATE
    args.chat_template_path = str(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="chat_template_path="):
        adapt_sft_templates(tok, P, args, ds)
