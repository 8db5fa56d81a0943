"""Tests for r4b_trl.rewards: answer extraction, verification kinds, mode rules, the TRL reward, robustness."""

import faulthandler
import threading
import time
from pathlib import Path

import pytest

from r4b_trl import rewards
from r4b_trl.rewards import accuracy_reward, extract_answer, score_response, verify

THINK, NO_THINK = "<think>\n", "<think>\n\n</think>\n\n"


def conv(text):
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------- extract_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{5}", "5"),
        (r"\boxed{1} no wait \boxed{2}", "1, 2"),  # several boxes: one set answer
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\fbox{7}", "7"),
        (r"\boxed {x}", "x"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{a \\ b}", r"a \\ b"),  # \\ is a line break, not an escaped brace
        (r"\boxed{3} then \boxed{4", ""),  # a box that never closes: no answer
        ("  The answer is 5.  ", "5"),
        ("Answer: $x = 2$", "x = 2"),
        ("We add them.\nSo $x = 5$.", "x = 5"),
        ("Therefore, the probability that Alice wins is 2/3.", "2/3"),
        (r"Step one gives \boxed{3}. The final answer is 7.", "7"),  # a closing statement after the boxes wins
        ("0.5", "0.5"),
        ("maybe 7 or 1", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_by_kind():
    assert extract_answer("The answer is (B).", "choice") == "(B)"
    assert extract_answer("The capital is Paris", "exact") == "The capital is Paris"
    assert extract_answer("The capital is Paris", "math") == ""


# ---------------------------------------------------------------- verify: math


@pytest.mark.parametrize(
    "answer, gold",
    [
        (r"\boxed{0.5}", r"\frac{1}{2}"),
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
        (r"\boxed{\sqrt{8}}", r"2\sqrt{2}"),
        (r"\boxed{x^2+2x+1}", "(x+1)^2"),
        (r"\boxed{(x+1)^2}", "x^2+2x+1"),
        ("$5$", "5"),
        ("5", "$5$"),
        (r"\boxed{5}", r"\boxed{5}"),
        (r"\boxed{\dfrac{1}{2}}", r"$\frac{1}{2}$"),
        ("0.5", r"\frac{1}{2}"),  # bare expressions on both sides
        (r"x^2+2x+1", "(x+1)^2"),
        ("The answer is 5.", "5"),
        (r"The answer is $\frac{1}{2}$.", "0.5"),
        (r"Adding up, the total is 12, so the answer is \boxed{17}.", "17"),
        (r"\boxed{1, 2}", r"\{2, 1\}"),
        (r"\boxed{(1, 2)}, \boxed{(2, 1)}", "(2, 1), (1, 2)"),  # a multi-part answer boxed part by part
        (r"\boxed{1} and \boxed{-2}", r"\{-2, 1\}"),
        ("1 000", "1000"),  # thousands separated by a space (not 1·0)
        ("1000,99", "1000.99"),  # a decimal comma
        ("The answer is 1,000,000.", "1000000"),
        ("\u22123", "-3"),  # Unicode minus
        ("The answer is \u22123.", "-3"),
        ("2 1/2", r"\frac{5}{2}"),  # a mixed number
        (r"\boxed{2\frac{1}{2}}", "2.5"),
        (r"\boxed{12 cm^2}", "12"),  # a unit outside \text{}
        (r"\boxed{12\text{ cm}^2}", "12"),
        ("12 cm", "12"),
        (r"We try \boxed{3}, which fails. The final answer is 7.", "7"),
        ("So $x = 5$.", "5"),
        (r"Therefore $x \geq 5$ is the solution.", r"x \ge 5"),
        ("Final Answer: The largest $n$ is 34.", "34"),
        (r"\boxed{x = 5}", "5"),
        (r"\boxed{5\text{ cm}}", "5"),
        ("We have a solution of 2+3=5 so the answer is $\\boxed{5}$", r"We find \boxed{5}."),
    ],
)
def test_math_equivalent(answer, gold):
    assert verify(answer, gold, "math") is True
    assert verify(answer, gold) is True  # auto


@pytest.mark.parametrize(
    "answer, gold",
    [
        (r"\boxed{3}", "4"),
        (r"\boxed{\frac{1}{3}}", "0.5"),
        (r"\boxed{x^2}", "y^2"),
        (r"\boxed{(x+1)^2}", "x^2+1"),
        (r"\boxed{5} Hmm, no. \boxed{6}", "5"),  # a hedge across boxes is the set {5, 6}
        (r"\boxed{1} Hmm, no. \boxed{2}", "2"),
        (r"\boxed{2}", r"\boxed{1} \boxed{2} \boxed{3}"),  # several boxes in the gold: a set
        (r"\boxed{(1, 2)}", "(2, 1), (1, 2)"),
        ("1 000", "0"),
        ("1000,99", "1000"),
        ("I don't know.", "5"),
        ("", "5"),
    ],
)
def test_math_different(answer, gold):
    assert verify(answer, gold, "math") is False
    assert verify(answer, gold) is False


def test_several_boxes_are_one_set():
    text = r"First guess \boxed{4}. Checking again, \boxed{5}."
    assert verify(text, "5") is False
    assert verify(text, "4") is False
    assert verify(text, r"\{4, 5\}") is True


# ---------------------------------------------------------------- adversarial: one stated answer or nothing

ADVERSARIAL = [  # (answer, gold, kind, expected) — a policy must not be paid for any of these
    # hedging
    ("maybe 7 or 1", "1", "math", False),
    ("It is 1 or 7.", "1", "math", False),
    ("The answer is 1 or 7.", "1", "math", False),
    ("The answer is either 1 or 2", "2", "math", False),
    (r"\boxed{1} or \boxed{7}", "1", "math", False),
    (r"\boxed{1 \text{ or } 7}", "1", "math", False),
    (r"The answer is \boxed{1}. Or maybe 7.", "1", "math", True),  # the box is the stated answer
    (r"The answer is 1. Or maybe 7.", "1", "math", False),  # a value after the statement: no answer
    # candidate lists
    ("1, 2, 3, 4, 5", "3", "math", False),
    (r"\boxed{1, 2, 3}", "2", "math", False),
    ("Possible answers: 3, 4, 5", "4", "math", False),
    ("x = 1\nx = 2\nx = 3", "1", "math", False),
    # the gold only mentioned
    ("$x^2$ where x = 1", "1", "math", False),
    ("The answer is between 1 and 10.", "1", "math", False),
    ("The answer is not 1.", "1", "math", False),
    ("I considered 5 but the answer is 6.", "5", "math", False),
    ("The answer is 6, not 5.", "5", "math", False),
    ("\u2603 1 \u2211 \ud83d\ude00", "1", "math", False),
    ("}{1$^ \\frac 1 <br> 1", "1", "math", False),
    (r"\boxed{1} \boxed{\sqrt{}", "1", "math", False),  # a box that never closes
    (r"\boxed{\boxed{\le 8 $7$ !}}", "7", "math", False),  # boxes in a box, junk in it
    ("17 7 7 7", "7", "math", False),  # numbers side by side are not one value
    (r"11 0 \pi", "0", "math", False),
    # prose with numbers
    ("There are 3 apples and 2 oranges, so 5 fruits in all and 7 plates.", "5", "math", False),
    ("We need 12 eggs for 3 cakes.", "12", "math", False),
    ("Adding 2 and 3 gives 5.", "5", "math", False),
    # the same for choices
    ("A or B", "B", "choice", False),
    ("The answer is A or B.", "B", "choice", False),
    ("(A) (B) (C) (D)", "B", "choice", False),
    (r"\boxed{A} \boxed{B}", "B", "choice", False),
    ("I would pick B, since A and C fail.", "B", "choice", False),
    ("Both A and B are plausible.", "B", "choice", False),
    ("The answer is B.", "B", "choice", True),
    # and for exact answers
    ("Paris or Lyon", "Paris", "exact", False),
    ("The answer is Paris, or maybe Lyon.", "Paris", "exact", False),
    ("It's not Paris.", "Paris", "exact", False),
    (r"\boxed{Paris} \boxed{Lyon}", "Paris", "exact", False),
    ("The answer is Paris.", "Paris", "exact", True),
    (r"\boxed{Paris}", "Paris", "exact", True),
]


@pytest.mark.parametrize("answer, gold, kind, expected", ADVERSARIAL)
def test_adversarial(answer, gold, kind, expected):
    assert verify(answer, gold, kind) is expected
    assert score_response(THINK + "work\n</think>\n\n" + answer, gold, kind) == float(expected)


# ---------------------------------------------------------------- verify: choice


@pytest.mark.parametrize(
    "answer",
    ["B", "(B)", "B.", "b", "The answer is B", "The answer is (B).", r"\boxed{B}", r"\boxed{(B)}", r"$\boxed{\text{B}}$",
     "**Answer:** B", "Answer: (B)", "(B) 42 apples", "B. 42", "The correct option is B."],
)
@pytest.mark.parametrize("gold", ["B", "(B)"])
def test_choice_accepts_spellings(answer, gold):
    assert verify(answer, gold, "choice") is True
    assert verify(answer, gold) is True  # auto detects a letter gold


@pytest.mark.parametrize(
    "answer", ["C", "(A)", "The answer is D", r"\boxed{C}", "", "I am not sure", r"\boxed{42}",
               r"The answer is A. \boxed{C}"],
)
def test_choice_rejects_wrong_letters(answer):
    assert verify(answer, "B", "choice") is False
    assert verify(answer, "B") is False


def test_choice_letters_up_to_j():
    assert verify("The answer is J", "J") is True
    assert verify("The answer is J", "I") is False


# ---------------------------------------------------------------- verify: exact / auto


def test_exact():
    assert verify("  Paris. ", "paris", "exact") is True
    assert verify(r"\boxed{New   York}", "new york", "exact") is True
    assert verify("Lyon", "Paris", "exact") is False


def test_auto_words_are_not_math():
    # sympy would read "no" and "on" as the same product n*o.
    assert verify("no", "on") is False
    assert verify("Yes", "yes") is True
    assert verify(r"\boxed{\text{Paris}}", "Paris") is True


@pytest.mark.parametrize("kind", ["auto", "math", "choice", "exact"])
@pytest.mark.parametrize("gold", [None, "", "   ", r"\boxed{}"])
def test_unparseable_gold_is_none(kind, gold):
    assert verify(r"\boxed{5}", gold, kind) is None
    assert score_response(NO_THINK + r"\boxed{5}", gold, kind) is None


def test_unparseable_gold_per_kind():
    assert verify("B", "hello world", "choice") is None
    assert verify("5", r"\text{}", "math") is None


def test_unknown_kind_raises():
    with pytest.raises(ValueError):
        verify("5", "5", "fuzzy")


# ---------------------------------------------------------------- score_response: mode rules


def test_score_thinking_proper():
    assert score_response(THINK + "2+3=5\n</think>\n\n" + r"\boxed{5}", "5", forced_mode="thinking") == 1.0
    assert score_response(THINK + "2+3=6\n</think>\n\n" + r"\boxed{6}", "5", forced_mode="long") == 0.0


def test_score_only_the_answer_counts():
    # A right answer inside the reasoning does not count; the text after </think> does.
    assert score_response(THINK + r"maybe \boxed{5}" + "\n</think>\n\n" + r"\boxed{6}", "5") == 0.0
    assert score_response(THINK + r"maybe \boxed{6}" + "\n</think>\n\n" + r"\boxed{5}", "5") == 1.0


def test_score_unclosed_think_is_zero():
    assert score_response(THINK + r"2+3=5, \boxed{5}", "5") == 0.0
    assert score_response(THINK + r"2+3=5, \boxed{5}", "5", forced_mode="thinking") == 0.0


def test_score_forced_non_thinking():
    assert score_response(NO_THINK + r"\boxed{5}", "5", forced_mode="non_thinking") == 1.0
    assert score_response(NO_THINK + r"\boxed{5}", "5", forced_mode="short") == 1.0
    # The model opened a second round of thinking after the empty think block.
    thought = NO_THINK + "let me think: 2+3=5\n</think>\n\n" + r"\boxed{5}"
    assert score_response(thought, "5", forced_mode="non_thinking") == 0.0
    assert score_response(thought, "5", forced_mode="no_think") == 0.0
    assert score_response(thought, "5") == 1.0  # not forced: it may think
    assert score_response(thought, "5", forced_mode="auto") == 1.0


def test_score_plain_text_without_think_block():
    assert score_response("The answer is 5.", "5") == 1.0
    assert score_response("The answer is 5.", "5", forced_mode="non_thinking") == 1.0


def test_score_custom_prefixes():
    from r4b_trl.modes import ModePrefixes

    p = ModePrefixes(open_tag="<reason>", close_tag="</reason>", auto="<reason>", thinking="<reason>\n",
                     non_thinking="<reason>\n\n</reason>\n\n")
    assert score_response("<reason>\n2+3\n</reason>\n\n" + r"\boxed{5}", "5", prefixes=p) == 1.0
    assert score_response("<reason>\n2+3 " + r"\boxed{5}", "5", prefixes=p) == 0.0


# ---------------------------------------------------------------- accuracy_reward (TRL signature)


def test_reward_name():
    assert accuracy_reward.__name__ == "accuracy_reward"


def test_reward_with_forced_prefix_column():
    completions = [
        "2+3=5\n</think>\n\n" + r"\boxed{5}",  # thinking, right
        r"\boxed{5}",  # non-thinking, right
        "2+3=6\n</think>\n\n" + r"\boxed{6}",  # thinking, wrong
        r"2+3=5 \boxed{5}",  # thinking never closed
        "hmm 2+3=5\n</think>\n\n" + r"\boxed{5}",  # forced non-thinking but thought
    ]
    prefixes = [THINK, NO_THINK, THINK, THINK, NO_THINK]
    modes = ["thinking", "non_thinking", "thinking", "thinking", "non_thinking"]
    sol = ["5"] * 5
    assert accuracy_reward(completions, sol, forced_prefix=prefixes, forced_mode=modes) == [1.0, 1.0, 0.0, 0.0, 0.0]
    # A pre-fill that closes the think block implies non-thinking even without the forced_mode column.
    assert accuracy_reward(completions, sol, forced_prefix=prefixes) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_reward_without_prefix_scores_texts_as_they_are():
    texts = [THINK + "2+3=5\n</think>\n\n" + r"\boxed{5}", NO_THINK + r"\boxed{5}", r"\boxed{5}", THINK + "still going"]
    assert accuracy_reward(texts, ["5"] * 4) == [1.0, 1.0, 1.0, 0.0]


def test_reward_conversational_and_blocks():
    completions = [
        conv("2+3=5\n</think>\n\n" + r"\boxed{5}"),
        conv([{"type": "text", "text": r"\boxed{"}, {"type": "text", "text": "5}"}]),
        [{"role": "assistant", "content": r"\boxed{4}"}],
        conv("The answer is (C)."),
    ]
    out = accuracy_reward(completions, ["5", "5", "5", "C"], forced_prefix=[THINK, NO_THINK, NO_THINK, NO_THINK],
                          prompts=[[{"role": "user", "content": "q"}]] * 4, trainer_state=None,
                          completion_ids=[[1]] * 4, log_extra=lambda *a: None, log_metric=lambda *a: None)
    assert out == [1.0, 1.0, 0.0, 1.0]


def test_reward_kind_columns():
    comps = ["Paris.", "paris", r"\boxed{B}"]
    assert accuracy_reward(comps, ["paris", "Paris", "B"], answer_kind=["exact", "exact", "choice"]) == [1.0, 1.0, 1.0]
    assert accuracy_reward(comps, ["paris", "Paris", "B"], kind=["exact", "exact", "choice"]) == [1.0, 1.0, 1.0]
    assert accuracy_reward(["B"], ["(B)"], answer_kind=[None]) == [1.0]


def test_reward_unparseable_gold_is_none():
    assert accuracy_reward([r"\boxed{5}", r"\boxed{5}"], ["", "5"]) == [None, 1.0]


def test_in_process_checks_agree_with_the_pool(monkeypatch):
    comps = [r"\boxed{5}", "The answer is 5.", "maybe 5 or 6", r"\boxed{(B)}", "Paris."]
    sols = ["5", "5", "5", "B", "paris"]
    pooled = accuracy_reward(comps, sols)
    monkeypatch.setattr(rewards, "WORKERS", 0)
    monkeypatch.setattr(rewards, "_pool", None)
    assert accuracy_reward(comps, sols) == pooled == [1.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "completions, solution",
    [
        ([None], ["5"]),
        ([123], ["123"]),
        ([[]], ["5"]),
        ([[{"role": "assistant", "content": None}]], ["5"]),
        ([[{"role": "assistant"}]], ["5"]),
        ([{"content": [{"type": "image"}, {"type": "text", "text": None}]}], ["5"]),
        ([object()], ["5"]),
        (["x" * 1_000_000], ["5"]),
        ([r"\boxed{" * 50_000], ["5"]),
        (["$" * 100_000], ["5"]),
        (["\x00\ud800\uffff" * 1000], ["5"]),
        ([r"\boxed{5}"], [None]),
        ([r"\boxed{5}"], [5]),
        ([r"\boxed{5}", r"\boxed{5}"], ["5"]),  # solution column shorter than the completions
    ],
)
def test_reward_never_raises_on_junk(completions, solution):
    out = accuracy_reward(completions, solution)
    assert len(out) == len(completions)
    assert all(r is None or r in (0.0, 1.0) for r in out)


def test_reward_junk_columns_never_raise():
    assert accuracy_reward([r"\boxed{5}"], ["5"], forced_mode=["sideways"]) == [0.0]
    assert accuracy_reward([r"\boxed{5}"], ["5"], kind=["fuzzy"]) == [0.0]
    assert accuracy_reward(None, None) == []
    assert accuracy_reward([r"\boxed{5}"], [r"\boxed{5}"], forced_prefix=[None]) == [1.0]


def test_reward_matches_trl_on_plain_cases():
    trl_rewards = pytest.importorskip("trl.rewards")
    completions = [conv(r"\boxed{5}"), conv(r"The answer is \boxed{\frac{1}{3}}"), conv(r"\boxed{0.5}"),
                   conv(r"\boxed{6}"), conv(r"So $\boxed{2\sqrt{2}}$")]
    solution = ["5", r"\frac{1}{3}", r"$\frac{1}{2}$", "5", r"$\sqrt{8}$"]
    expected = trl_rewards.accuracy_reward(completions, solution)
    assert expected == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert accuracy_reward(completions, solution) == expected


# ---------------------------------------------------------------- time bounds, in and out of the main thread

PATHOLOGICAL = [
    r"\boxed{9^9^9^9^9}",
    r"\boxed{9^{9^{9^{9}}}}",
    r"\boxed{10^{10^{10}}}",  # one C-level integer power
    r"\boxed{(10^{9})!}",
    r"\boxed{\binom{1000000000}{500000000}}",  # evaluated while parsing
    r"\boxed{(x+1)^{1000}}",  # a long simplify
    r"\boxed{\prod_{k=1}^{10^{10}} k}",
    r"\boxed{e^{e^{e^{e^{e}}}}}",
    "{" * 900,
    r"\boxed{" + "{" * 100_000,
    "(" * 100_000,
]


def _timed_scores(texts, gold):
    # A regression here could hang the caller; faulthandler's C watchdog then ends the run with a traceback.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        start = time.monotonic()
        out = [accuracy_reward([t], [gold])[0] for t in texts]
        return out, time.monotonic() - start
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("text", PATHOLOGICAL)
def test_pathological_answer_is_bounded(text, monkeypatch):
    """Either the size checks reject the input at once, or its worker is killed at the deadline."""
    monkeypatch.setattr(rewards, "TIMEOUT_S", 1.0)
    out, elapsed = _timed_scores([text], "5")
    assert out == [0.0]
    assert elapsed < 1.0 + 1.5, elapsed  # the deadline plus a process round trip on a loaded machine


def test_pathological_gold_is_unscorable(monkeypatch):
    monkeypatch.setattr(rewards, "TIMEOUT_S", 1.0)
    start = time.monotonic()
    assert verify(r"\boxed{5}", r"\boxed{\binom{1000000001}{500000000}}", "math") is None
    assert time.monotonic() - start < 1.0 + 1.5


def test_default_timeout():
    assert 0 < rewards.TIMEOUT_S <= 1.0


def test_bounded_in_a_worker_thread_and_later_calls_are_right(monkeypatch):
    """TRL runs async reward functions off the main thread, where signal alarms cannot work."""
    monkeypatch.setattr(rewards, "TIMEOUT_S", 0.5)
    result = {}

    def work():
        try:
            result["out"] = _timed_scores([r"\boxed{(x+1)^{1000}}", "{" * 900, r"\boxed{5}"], "5")
        except BaseException as e:  # noqa: BLE001 - the test reports any escape
            result["error"] = repr(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert "error" not in result, result
    out, elapsed = result["out"]
    assert out == [0.0, 0.0, 1.0]
    assert elapsed < 3 * (0.5 + 1.5)


FAKE_CHECK = """
import re


def warm_up():
    pass


def verify_text(answer, solution, kind, on_gold=None):
    if on_gold is not None:
        on_gold(True)
    if answer == "hang":
        re.match(r"(a+)+$", "a" * 60 + "b")  # catastrophic backtracking: minutes inside one C call
    return answer == solution
"""


def test_a_check_stuck_in_c_code_is_killed_and_replaced(tmp_path, monkeypatch):
    """The deadline holds inside a single C call (a regex that backtracks for minutes, holding the GIL): the
    worker is killed, a new one takes its place, and the other checks of the batch are answered."""
    from r4b_trl.rewards import pool as pool_mod

    (tmp_path / "check.py").write_text(FAKE_CHECK)  # the real worker and zygote, with a check that hangs in C
    script = tmp_path / "_worker.py"
    script.write_text(Path(pool_mod.WORKER).read_text())
    monkeypatch.setattr(pool_mod, "WORKER", str(script))
    p = pool_mod.WorkerPool(2)
    try:
        out = {}

        def work():
            start = time.monotonic()
            out["first"] = p.run([["hang", "x", "math"], ["5", "5", "math"], ["6", "5", "math"]], 0.5)
            out["elapsed"] = time.monotonic() - start

        thread = threading.Thread(target=work)  # not the main thread
        thread.start()
        thread.join(60)
        assert out["first"] == [(pool_mod.TIMEOUT, True), True, False]
        assert out["elapsed"] < 0.5 + 5.0  # generous: includes starting the zygote on a loaded machine
        assert p.kills == 1
        pids = p.pids()
        assert all(pid > 0 for pid in pids) and len(set(pids)) == p.size + p.spare
        assert p.run([["7", "7", "math"], ["hang", "x", "math"]], 0.3) == [True, (pool_mod.TIMEOUT, True)]
        assert p.kills == 2 and p.pids() != pids
    finally:
        p.close()


def test_deadlines_around_the_check_time_never_mix_answers(monkeypatch):
    """Deadlines close to how long a check takes kill workers mid-answer; no answer may land on the wrong row,
    then or later (replaces a flaky test of the old in-thread watchdog)."""
    pool = rewards.get_pool()
    batch = [rf"\boxed{{x^2+{2 * i}x+{i * i}}}" for i in range(8)]
    golds = [f"(x+{i})^2" for i in range(8)]
    wrong = [f"(x+{i + 1})^2" for i in range(8)]
    for seconds in (0.002, 0.01, 0.05):
        monkeypatch.setattr(rewards, "TIMEOUT_S", seconds)
        out = accuracy_reward(batch + batch, golds + wrong)
        assert all(r in (None, 0.0, 1.0) for r in out)
        assert all(r != 1.0 for r in out[8:])  # a cut answer never turns into a pass
    monkeypatch.setattr(rewards, "TIMEOUT_S", 20.0)
    assert accuracy_reward(batch + batch, golds + wrong) == [1.0] * 8 + [0.0] * 8
    assert pool is rewards.get_pool() and pool.kills > 0
