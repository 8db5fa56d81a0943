"""Offline tiny random-weight models for tests and smoke runs.

    python -m r4b_trl.tiny_models --out DIR --kind text|vision|qwen3_5|demo [--head_dim 32]

* ``text``: a Qwen3 causal LM (2 layers, hidden 64) with a byte-level BPE tokenizer trained here with
  ``tokenizers`` (Qwen2-style pre-tokenisation, so ``\\n`` and ``\\n\\n`` are distinct tokens), ``<think>`` and
  ``</think>`` as single *non-special* tokens, and the official Qwen3 chat template.
* ``demo``: the demo's model (:func:`build_demo_model`): a Qwen3 causal LM (4 layers, hidden 64, ~220k parameters,
  96 positions) with a *character-level* tokenizer (every character one token, except that ``\\n\\n`` is one
  token as in Qwen's BPE; ``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>`` special; ``user``, ``assistant``,
  ``<think>``, ``</think>`` single non-special tokens) and the Qwen3 chat template. As with Qwen3, the mode is
  decided by the token right after ``<think>`` (``\\n`` thinking, ``\\n\\n`` non-thinking) and both forced
  pre-fills contain it (see :func:`r4b_trl.modes.decision_tokens`). With a pure character tokenizer
  (``build_char_tokenizer(pair_newlines=False)``) ``<think>\\n`` would be a prefix of the non-thinking pre-fill
  and would not force thinking at all (measured: docs/demo_feasibility.md).
* ``qwen3_5``: a Qwen3.5 image-text model (:func:`build_qwen3_5_model`: transformers' ``qwen3_5`` architecture,
  hybrid Gated DeltaNet + attention, hidden 64) with Qwen3.5's own chat template (TRL's ``qwen3_5_think``, which
  pre-fills ``<think>\n``) and the same tokenizer.
* ``vision``: a Qwen2.5-VL image-text-to-text model (vision depth 2, hidden 32; text hidden 64) with a PIL image
  processor, the same tokenizer and r4b-trl's default (R-4B-style) chat template.

Everything is built from code: no network, no Hub. Weights are saved as safetensors.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
THINK_TOKENS = ["<think>", "</think>"]
# Qwen2's pre-tokeniser regex: digits are split one by one, runs of newlines are one pre-token.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _corpus() -> list[str]:
    """A small built-in training corpus: chat markup, math words and LaTeX, digits, newlines."""
    import random

    rng = random.Random(0)
    words = (
        "the answer is what how many total sum product of and to a an in on with step first then so therefore "
        "let we need compute find solve equation value image shows question final number each more less than "
        "add subtract multiply divide equals result check think reasoning because since which is are was "
        "Got it let's look at this carefully option choose correct A B C D x y z n k fraction square root"
    ).split()
    latex = ["\\boxed{", "\\frac{", "\\sqrt{", "}", "{", "^2", "\\cdot", "\\times", "$", "(", ")", "=", "+", "-", "*", "/"]
    lines = []
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(3, 12)):
            r = rng.random()
            if r < 0.5:
                parts.append(rng.choice(words))
            elif r < 0.75:
                parts.append(str(rng.randint(0, 999)))
            else:
                parts.append(rng.choice(latex))
        sep = rng.choice(["\n", "\n\n", " ", " ", " "])
        lines.append(" ".join(parts) + sep)
    chat = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nThe answer is 5.<|im_end|>\n"
    return lines + [chat] * 50


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on :func:`_corpus`, wrapped for transformers."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_corpus(), trainer=trainer)
    tk.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=4096,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                               "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    return tokenizer


def _round_up(n: int, k: int = 64) -> int:
    return ((n + k - 1) // k) * k


def _save_qwen3(out: Path, tok, seed: int, vocab_multiple: int, **config) -> object:
    """A random-weight Qwen3ForCausalLM for ``tok`` (chat template already set), saved with it as safetensors."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=_round_up(len(tok), vocab_multiple), tie_word_embeddings=True, bos_token_id=None,
                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id, **config)
    model = Qwen3ForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id, bos_token_id=None, do_sample=True,
        temperature=1.0,
    )
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return model


def build_text_model(out: str | os.PathLike, hidden_size: int = 64, num_layers: int = 2, seed: int = 0,
                     head_dim: int | None = None) -> Path:
    """The tiny Qwen3 text model. ``head_dim`` defaults to ``hidden_size // 4`` (16); vLLM's CPU attention needs
    ``head_dim >= 32`` (``make test-vllm`` builds it with ``head_dim=32``: 4 heads of 32 on a 64-wide residual)."""
    from r4b_trl.chat_templates import qwen3_chat_template

    out = Path(out)
    tok = build_tokenizer()
    tok.chat_template = qwen3_chat_template()
    model = _save_qwen3(out, tok, seed, 64, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=head_dim or hidden_size // 4, max_position_embeddings=4096)
    _write_readme(out, "text", model)
    return out


def _image_only_processor_classes():
    """Processor subclasses that need no video processor (and so no torchvision)."""
    from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor

    class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL's processor without its video half. transformers 5 builds every video processor with
        torchvision; r4b-trl's CPU environment has none (PyPI's torchvision wheels are CUDA builds)."""

        @classmethod
        def get_attributes(cls):
            return ["image_processor", "tokenizer"]

        def __init__(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kw):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kw)

    class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
        """Qwen3-VL's processor (Qwen3.5 uses it) without its video half, for the same reason."""

        @classmethod
        def get_attributes(cls):
            return ["image_processor", "tokenizer"]

        def __init__(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kw):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kw)

    return {"Qwen2_5_VLImageOnlyProcessor": Qwen2_5_VLImageOnlyProcessor,
            "Qwen3VLImageOnlyProcessor": Qwen3VLImageOnlyProcessor}


_REGISTERED: dict = {}


def register_image_only_processors() -> dict:
    """Register the image-only processor classes with ``AutoProcessor`` (idempotent)."""
    if _REGISTERED:
        return _REGISTERED
    from transformers import AutoProcessor, Qwen2_5_VLConfig

    classes = _image_only_processor_classes()
    AutoProcessor.register(Qwen2_5_VLConfig, classes["Qwen2_5_VLImageOnlyProcessor"], exist_ok=True)
    import transformers

    # AutoProcessor resolves `processor_class` from processor_config.json by name through the transformers module.
    for name, cls in classes.items():
        setattr(transformers, name, cls)
    _REGISTERED.update(classes)
    return _REGISTERED


def _save_image_text(out: Path, model, tok, image_processor, processor_name: str, chat_template: str) -> None:
    """Save a random-weight image-text model (safetensors, sampling generation config) with its image-only
    processor (:func:`register_image_only_processors`) and tokenizer, both carrying ``chat_template``."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None, do_sample=True, temperature=1.0,
    )
    model.save_pretrained(out, safe_serialization=True)
    processor_cls = register_image_only_processors()[processor_name]
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, chat_template=chat_template)
    processor.save_pretrained(out)
    tok.chat_template = chat_template
    tok.save_pretrained(out)


def build_vision_model(out: str | os.PathLike, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from r4b_trl.chat_templates import DEFAULT_CHAT_TEMPLATE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    torch.manual_seed(seed)
    hidden = 64
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=_round_up(len(tok)),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=hidden,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    # A tiny pixel budget: small images become 1-4 image tokens.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=28 * 28 * 4, patch_size=14,
                                               temporal_patch_size=2, merge_size=2)
    _save_image_text(out, model, tok, image_processor, "Qwen2_5_VLImageOnlyProcessor", DEFAULT_CHAT_TEMPLATE)
    _write_readme(out, "vision", model)
    return out


# --------------------------------------------------------------------------------------------------------------
# Qwen3.5: the hybrid (Gated DeltaNet + attention) image-text model, with Qwen3.5's own chat template
# --------------------------------------------------------------------------------------------------------------


def build_qwen3_5_model(out: str | os.PathLike, seed: int = 0, template: str = "qwen3_5_think") -> Path:
    """A tiny random Qwen3.5 image-text model from transformers' ``qwen3_5`` architecture
    (``Qwen3_5ForConditionalGeneration``: one Gated DeltaNet layer and one full-attention layer, hidden 64; a
    2-block vision tower with patch 16), the Qwen-style tokenizer of :func:`build_tokenizer`, a PIL image processor
    (``Qwen3VLImageOnlyProcessor``) and Qwen3.5's chat template as TRL ships it (``qwen3_5_think``, which
    pre-fills ``<think>\n``; ``qwen3_5_nothink`` is the 2B's)."""
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from r4b_trl.chat_templates import _trl_template

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    chat_template = _trl_template(template + ".jinja")
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    torch.manual_seed(seed)
    hidden = 64
    cfg = Qwen3_5Config(
        text_config=dict(
            vocab_size=_round_up(len(tok)), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
            layer_types=["linear_attention", "full_attention"], num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
            linear_num_value_heads=4, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                             "mrope_section": [1, 1, 0], "mrope_interleaved": True},
            bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True,
        ),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden,
                           num_position_embeddings=64),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    model = Qwen3_5ForConditionalGeneration(cfg)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=32 * 32, max_pixels=32 * 32 * 4, patch_size=16,
                                               temporal_patch_size=2, merge_size=2)
    _save_image_text(out, model, tok, image_processor, "Qwen3VLImageOnlyProcessor", chat_template)
    _write_readme(out, "qwen3_5", model, extra={"chat_template": template})
    return out


# --------------------------------------------------------------------------------------------------------------
# The demo model: character-level tokenizer, from-scratch Qwen3
# --------------------------------------------------------------------------------------------------------------

#: Special tokens of the demo tokenizer (ids 0..3): padding, turn markers, unknown character.
DEMO_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]
#: Whole words the chat template emits, kept as single non-special tokens so prompts stay short.
DEMO_WORD_TOKENS = ["user", "assistant", "system"]


def build_char_tokenizer(pair_newlines: bool = True):
    """A character-level tokenizer: ``\\n`` and printable ASCII are one token each; the special tokens
    (:data:`DEMO_SPECIAL_TOKENS`) and ``user``/``assistant``/``system``/``<think>``/``</think>`` are single tokens,
    the latter five *non-special* (they survive ``decode(skip_special_tokens=True)``). Other characters map to
    ``<|unk|>``. Pad is ``<|endoftext|>``, EOS is ``<|im_end|>``, padding on the left.

    ``pair_newlines`` (default): ``\\n\\n`` is a single token, as in Qwen's BPE, so the thinking pre-fill
    ``<think>\\n`` and the non-thinking pre-fill ``<think>\\n\\n</think>\\n\\n`` differ at the token right after
    ``<think>`` and each *forces* its mode. Without it, ``<think>\\n`` is a token prefix of the non-thinking pre-fill:
    after a "forced thinking" pre-fill the model can still emit ``\\n`` and answer without thinking."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(DEMO_SPECIAL_TOKENS)}
    for c in ["\n", "\n\n"] + [chr(i) for i in range(32, 127)]:
        vocab[c] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<|unk|>"))
    # Every character is a pre-token (and so a token); with pair_newlines a "\n\n" pair is one.
    pattern = r"\n\n|[\s\S]" if pair_newlines else r"[\s\S]"
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tk.decoder = decoders.Fuse()  # concatenate, no spaces
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in DEMO_SPECIAL_TOKENS])
    tk.add_tokens([AddedToken(t, special=False, normalized=False) for t in DEMO_WORD_TOKENS + THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|unk|>",
        padding_side="left",
        model_max_length=96,
    )


def build_demo_model(out: str | os.PathLike, hidden_size: int = 64, num_layers: int = 4, num_heads: int = 4,
                     intermediate_size: int | None = None, max_position_embeddings: int = 96, seed: int = 0,
                     pair_newlines: bool = True) -> Path:
    """The demo's from-scratch model: Qwen3ForCausalLM (default 4 layers, hidden 64, MLP 3x hidden, 4 heads, full
    multi-head attention, tied embeddings, ~220k parameters) with :func:`build_char_tokenizer` and the Qwen3 chat
    template. Saved as safetensors with a ``r4b_tiny.json`` that records the mode-decision tokens."""
    from r4b_trl.chat_templates import qwen3_chat_template

    out = Path(out)
    tok = build_char_tokenizer(pair_newlines)
    tok.chat_template = qwen3_chat_template()
    model = _save_qwen3(out, tok, seed, 8, hidden_size=hidden_size,
                        intermediate_size=intermediate_size or 3 * hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, num_key_value_heads=num_heads, head_dim=hidden_size // num_heads,
                        max_position_embeddings=max_position_embeddings)
    from .modes import decision_tokens

    d = decision_tokens(tok)
    _write_readme(out, "demo", model, extra={"decision_tokens": {
        "position": d.position, "thinking": d.thinking_token, "non_thinking": d.non_thinking_token,
        "in_prefix": {"thinking": d.thinking_in_prefix, "non_thinking": d.non_thinking_in_prefix}}})
    return out


def _write_readme(out: Path, kind: str, model, extra: dict | None = None) -> None:
    n = sum(p.numel() for p in model.parameters())
    (out / "README.md").write_text(
        f"# tiny r4b-trl {kind} model\n\nRandom weights ({n:,} parameters), built offline by "
        f"`python -m r4b_trl.tiny_models --kind {kind}`. For tests and smoke runs only.\n"
    )
    (out / "r4b_tiny.json").write_text(json.dumps({"kind": kind, "parameters": n, **(extra or {})}))


def build(out: str | os.PathLike, kind: str = "text", head_dim: int | None = None) -> Path:
    if head_dim is not None and kind != "text":
        raise ValueError(f"--head_dim applies to --kind text only, not {kind!r}")
    if kind == "text":
        return build_text_model(out, head_dim=head_dim)
    if kind == "vision":
        return build_vision_model(out)
    if kind == "demo":
        return build_demo_model(out)
    if kind == "qwen3_5":
        return build_qwen3_5_model(out)
    raise ValueError(f"--kind must be 'text', 'vision', 'qwen3_5' or 'demo', not {kind!r}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the model to")
    parser.add_argument("--kind", choices=["text", "vision", "qwen3_5", "demo"], default="text")
    parser.add_argument("--head_dim", type=int, default=None,
                        help="text kind: attention head size (default 16); vLLM on a CPU needs >= 32")
    args = parser.parse_args(argv)
    path = build(args.out, args.kind, head_dim=args.head_dim)
    print(f"wrote a tiny {args.kind} model to {path}")


if __name__ == "__main__":
    from .errors import cli

    raise SystemExit(cli(main))
