"""Bi-mode curation (R-4B §2.1): label every query *thinking* or *non-thinking* and build its SFT target.

    python data_prep/curate.py --config data_prep/configs/sample_fake.yaml

* **Performance heuristic** (objective queries, i.e. with a reference answer): an annotator samples
  ``n_samples`` (default 8) non-thinking answers; if all are wrong per the project's verifier the query is hard →
  ``thinking``, otherwise ``non_thinking``. The pass count is recorded.
* **Difficulty heuristic** (subjective queries): a judge is asked, with a prompt we ship
  (``r4b_trl/data/prompts/judge_difficulty.txt``, replaceable), whether the query needs step-by-step reasoning;
  its verdict (``VERDICT: REASONING`` / ``VERDICT: DIRECT``) is parsed robustly. No verdict → ``unparseable``
  (recorded, not guessed, left out of the output).
* **Targets**: thinking rows get a trace from a reasoner in forced thinking mode, kept only if it closes
  ``</think>`` and (with a reference) its answer verifies; non-thinking rows take the annotator's correct answer
  or the reference answer. Texts are built with :class:`~r4b_trl.modes.ModePrefixes`, so they are exactly the
  mode vocabulary's forms. Duplicates (same question + images) are dropped.
* **Resumable and lossless**: rows are processed in fixed chunks of the source; each finished chunk's records are
  appended to ``<output_dir>/curation.jsonl``. A restart with the same configuration skips finished chunks and
  re-runs a chunk it was killed in, so the final ``curated.jsonl`` (rebuilt from the records in source order) is
  the same as an uninterrupted run's — byte for byte when the backends are deterministic for a given batch and
  seed (python callables, greedy or seeded transformers generation).

Backends per role (``annotator``, ``judge``, ``reasoner``): ``transformers``, ``vllm``, ``openai`` (any
OpenAI-compatible endpoint) and ``python`` (a ``module:function`` or ``path/to/file.py:function`` callable that
takes a :class:`Request`; see :mod:`r4b_trl.data.fake_annotators`).

Modules: ``config`` (the YAML keys, per-role settings), ``judge`` (the judge prompt and verdict parsing),
``backends`` (models and callables per role), ``curator`` (the run); rows, images and data cards are written with
:mod:`r4b_trl.data.outputs` and :mod:`r4b_trl.data.cards`, which mixing uses too.
"""

from ..outputs import normalize_rows, store_image, write_outputs  # noqa: F401
from .backends import Request  # noqa: F401
from .config import CurationConfig, RoleSpec, load_config  # noqa: F401
from .curator import OUTCOMES, Curator, curate  # noqa: F401
from .judge import DEFAULT_JUDGE_PROMPT_FILE, load_judge_prompt, parse_verdict  # noqa: F401

__all__ = [
    "CurationConfig",
    "RoleSpec",
    "Request",
    "OUTCOMES",
    "DEFAULT_JUDGE_PROMPT_FILE",
    "load_judge_prompt",
    "parse_verdict",
    "load_config",
    "curate",
    "store_image",
]
