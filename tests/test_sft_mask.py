"""The SFT loss mask covers the whole assistant turn, think block included, for both modes (TRL's own collation)."""

import pytest
from datasets import Dataset

THINK = "<think>\n2+3=5\n</think>\n\nThe answer is 5."
NO_THINK = "<think>\n\n</think>\n\nThe answer is 5."


def _trained_texts(trainer, tokenizer, n):
    loader = trainer.get_train_dataloader()
    batch = next(iter(loader))
    texts = []
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        keep = [int(i) for i, l in zip(ids, labels) if int(l) != -100]
        texts.append(tokenizer.decode(keep, skip_special_tokens=False))
    return texts[:n]


def _cfg(tmp_path, **kw):
    from trl import SFTConfig

    return SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, use_cpu=True, bf16=False,
                     report_to=[], shuffle_dataset=False, dataloader_drop_last=False, **kw)


def test_messages_assistant_only_loss_covers_think_block(tiny_text_model, text_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    ds = Dataset.from_list([
        {"messages": [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": c}]}
        for c in (THINK, NO_THINK)
    ])
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_text_model), args=_cfg(tmp_path, assistant_only_loss=True),
                         train_dataset=ds, processing_class=text_tokenizer)
    texts = sorted(_trained_texts(trainer, text_tokenizer, 2), key=len, reverse=True)
    assert texts[0] == THINK + "<|im_end|>\n"
    assert texts[1] == NO_THINK + "<|im_end|>\n"


def test_prompt_completion_loss_covers_decision_tokens(tiny_text_model, text_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    ds = Dataset.from_list([
        {"prompt": [{"role": "user", "content": "What is 2+3?"}], "completion": [{"role": "assistant", "content": c}]}
        for c in (THINK, NO_THINK)
    ])
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_text_model), args=_cfg(tmp_path),
                         train_dataset=ds, processing_class=text_tokenizer)
    texts = sorted(_trained_texts(trainer, text_tokenizer, 2), key=len, reverse=True)
    # Both decision points are trained: "<think>" + "\n" (thinking) vs "<think>" + "\n\n" + "</think>".
    assert texts[0].startswith("<think>\n2+3=5") and texts[0].rstrip().endswith("The answer is 5.<|im_end|>")
    assert texts[1].startswith("<think>\n\n</think>\n\nThe answer is 5.")


def test_vision_prompt_completion_loss_covers_think_block(tiny_vision_model, vision_processor, red_image, tmp_path):
    from transformers import AutoModelForImageTextToText
    from trl import SFTTrainer

    ds = Dataset.from_list([
        {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}],
         "completion": [{"role": "assistant", "content": [{"type": "text", "text": c}]}],
         "images": [red_image]}
        for c in (THINK, NO_THINK)
    ])
    trainer = SFTTrainer(model=AutoModelForImageTextToText.from_pretrained(tiny_vision_model),
                         args=_cfg(tmp_path, max_length=None), train_dataset=ds, processing_class=vision_processor)
    texts = sorted(_trained_texts(trainer, vision_processor.tokenizer, 2), key=len, reverse=True)
    assert texts[0].startswith(THINK) and "<|image_pad|>" not in texts[0]
    assert texts[1].startswith(NO_THINK) and "user" not in texts[1]
