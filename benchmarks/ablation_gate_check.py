"""Measure a demo model's auto-mode gate independently of the project's own code paths.

    python benchmarks/ablation_gate_check.py MODEL_DIR TEST_JSONL [--samples 4] [--seed 0]

Uses only transformers and torch (no r4b_trl import): for every test item it renders the chat prompt with the model's
own chat template, appends the auto pre-fill ``<think>``, runs one unpadded forward, and reads the next-token
distribution: gate = P("\\n") / (P("\\n") + P("\\n\\n")). Then it samples ``--samples`` full answers per item at
T = 1 with ``generate`` and counts an answer as thinking when it closes a non-empty think block (text after
``<think>`` starts with a single newline, holds something before ``</think>``). Prints, per difficulty, the mean
gate and the sampled think-rate, and writes them as JSON with ``--json``.

Done means for the recommended demo model: gate >= 0.9 on hard and <= 0.1 on easy, and the sampled think-rate too.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def measure(model_dir: str, test_jsonl: str, samples: int = 4, seed: int = 0, max_new_tokens: int = 28) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    nl, nlnl = tok.convert_tokens_to_ids("\n"), tok.convert_tokens_to_ids("\n\n")
    assert tok.decode([nl]) == "\n" and tok.decode([nlnl]) == "\n\n", "the decision tokens are not single tokens"
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    rows = [json.loads(line) for line in open(test_jsonl) if line.strip()]
    gates, thinks = defaultdict(list), defaultdict(list)
    torch.manual_seed(seed)
    for r in rows:
        text = tok.apply_chat_template([{"role": "user", "content": r["question"]}], tokenize=False,
                                       add_generation_prompt=True) + "<think>"
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            p = torch.softmax(model(ids).logits[0, -1].double(), -1)
            gates[r["difficulty"]].append(float(p[nl] / (p[nl] + p[nlnl])))
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                 eos_token_id=eos, pad_token_id=eos)
        for seq in out[:, ids.shape[1]:]:
            said = tok.decode(seq, skip_special_tokens=True)
            body = said.split("</think>")[0]
            thinks[r["difficulty"]].append(float("</think>" in said and said.startswith("\n")
                                                 and not said.startswith("\n\n") and body.strip() != ""))
    return {g: {"n": len(v), "gate": sum(v) / len(v), "sampled_think_rate": sum(thinks[g]) / len(thinks[g])}
            for g, v in sorted(gates.items())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("test_jsonl")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    res = measure(args.model_dir, args.test_jsonl, args.samples, args.seed)
    for g, v in res.items():
        print(f"{g:>6}: n={v['n']:4d}  gate {v['gate']:.3f}  sampled (T=1) think-rate {100 * v['sampled_think_rate']:.1f}%")
    hard, easy = res.get("hard"), res.get("easy")
    if hard and easy:
        ok = hard["gate"] >= 0.9 and easy["gate"] <= 0.1 and hard["sampled_think_rate"] >= 0.9 \
            and easy["sampled_think_rate"] <= 0.1
        print(f"target (gate and sampled think-rate >= 0.9 on hard, <= 0.1 on easy): {'met' if ok else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
