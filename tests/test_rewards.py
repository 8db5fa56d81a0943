"""Tests for r4b_trl.rewards: answer extraction, verification kinds, mode rules, the TRL reward, robustness."""

import faulthandler
import threading
import time

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
        (r"\boxed{1} no wait \boxed{2}", "2"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\fbox{7}", "7"),
        (r"\boxed {x}", "x"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{3} then \boxed{4", "3"),  # the last box never closes: the last complete one counts
        ("  The answer is 5.  ", "The answer is 5."),
        ("", ""),
        (None, ""),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


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
        (r"\boxed{1} Hmm, no. \boxed{2}", "2"),
        (r"\boxed{1, 2}", r"\{2, 1\}"),
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
        (r"\boxed{5} Hmm, no. \boxed{6}", "5"),  # the last box wins
        (r"\boxed{2}", r"\boxed{1} \boxed{2} \boxed{3}"),  # several boxes in the gold: its last one counts
        ("I don't know.", "5"),
        ("", "5"),
    ],
)
def test_math_different(answer, gold):
    assert verify(answer, gold, "math") is False
    assert verify(answer, gold) is False


def test_several_boxes_take_the_last():
    text = r"First guess \boxed{4}. Checking again, \boxed{5}."
    assert verify(text, "5") is True
    assert verify(text, "4") is False


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


def test_reward_gold_parsed_once_per_solution(monkeypatch):
    import math_verify

    calls = []
    real_parse = math_verify.parse

    def counting_parse(text, *args, **kwargs):
        calls.append(text)
        return real_parse(text, *args, **kwargs)

    monkeypatch.setattr(math_verify, "parse", counting_parse)
    gold = r"\frac{1234}{4321}"
    out = accuracy_reward([rf"\boxed{{{i}}}" for i in range(8)], [gold] * 8)
    assert out == [0.0] * 8
    assert sum(gold in c for c in calls) == 1


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
    r"\boxed{10^{10^{10}}}",  # one C-level integer power: only the size check can stop it
    r"\boxed{(10^{9})!}",
    r"\boxed{\binom{1000000000}{500000000}}",  # evaluated while parsing
    r"\boxed{(x+1)^{1000}}",  # a long simplify
    "{" * 900,  # the LaTeX parser is quadratic on nesting
    r"\boxed{" + "{" * 100_000,
    "(" * 100_000,
]


def _timed_scores(texts, gold):
    # A regression here can hang inside one C call that holds the GIL; faulthandler's C watchdog then ends the
    # test run with a traceback instead of hanging it.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        start = time.monotonic()
        out = [accuracy_reward([t], [gold])[0] for t in texts]
        return out, time.monotonic() - start
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("text", PATHOLOGICAL)
def test_pathological_answer_is_bounded(text, monkeypatch):
    """Either a size check rejects the input at once, or the time bound cuts the check short. Wall-clock bounds
    are only a hang guard here: on a loaded 2-core machine seconds are not a reliable measure (unbounded,
    (x+1)^1000 vs 5 takes about 5 s; bounded, about 1 s)."""
    monkeypatch.setattr(rewards, "TIMEOUT_S", 1.0)
    before = rewards.TIMEOUTS
    out, elapsed = _timed_scores([text], "5")
    assert out == [0.0]
    assert elapsed < 1.0 or rewards.TIMEOUTS > before, f"took {elapsed:.1f} s and the time bound never fired"
    assert elapsed < 30.0


def test_pathological_gold_is_bounded(monkeypatch):
    monkeypatch.setattr(rewards, "TIMEOUT_S", 1.0)
    gold = r"\boxed{\binom{1000000001}{500000000}}"
    start = time.monotonic()
    assert verify(r"\boxed{5}", gold, "math") is None  # parsing the gold timed out: unscorable
    assert time.monotonic() - start < 5.0


def test_default_timeout_is_a_few_seconds():
    assert 0 < rewards.TIMEOUT_S <= 3.0


def test_bounded_in_a_worker_thread_and_nothing_leaks(monkeypatch):
    """TRL runs async reward functions off the main thread, where math-verify's signal alarms cannot work."""
    monkeypatch.setattr(rewards, "TIMEOUT_S", 1.0)
    result = {}

    def work():
        try:
            out, elapsed = _timed_scores([r"\boxed{(x+1)^{1000}}", "{" * 900, r"\boxed{5}"], "5")
            busy_until = time.monotonic() + 1.5  # plain Python work after the guarded calls must not be interrupted
            n = 0
            while time.monotonic() < busy_until:
                n += 1
            result.update(out=out, elapsed=elapsed)
        except BaseException as e:  # noqa: BLE001 - the test reports any escape
            result["error"] = repr(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert "error" not in result, result
    assert result["out"] == [0.0, 0.0, 1.0]
    assert result["elapsed"] < 8.0


def test_calls_ending_near_the_deadline_leave_no_pending_interrupt(monkeypatch):
    # Deadlines around the time a comparison takes: the interrupt must never fire outside the guarded call.
    for seconds in (0.001, 0.003, 0.01, 0.03):
        monkeypatch.setattr(rewards, "TIMEOUT_S", seconds)
        for i in range(10):
            out = accuracy_reward([rf"\boxed{{x^2+{2 * i}x+{i * i}}}"], [f"(x+{i})^2"])
            assert out[0] in (None, 0.0, 1.0)
            n, deadline = 0, time.monotonic() + 0.02
            while time.monotonic() < deadline:
                n += 1
