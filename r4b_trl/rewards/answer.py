"""The answer-extraction rule: which part of an answer (the text after ``</think>``) is *the* stated answer.

Standard library only: the verification worker processes import this file without the ``r4b_trl`` package.

The rule (README, section "Rewards"), in priority order:

1. **Boxes.** Every balanced ``\\boxed{…}`` / ``\\fbox{…}`` (outermost only) is part of the answer; several boxes
   form one set answer, as in math-verify (``\\boxed{1}, \\boxed{2}`` is {1, 2}; a hedge ``\\boxed{5} no, \\boxed{6}``
   is {5, 6}, which matches no single gold). Exception: a valid closing statement (2.) *after* the last box wins.
2. **A closing statement.** The last "The answer is X" / "Answer: X" / "The final answer is X" / "The correct
   option is X", where X (up to the end of its sentence) is one value, and nothing after it offers another value
   (no digit, ``$`` or box). Without boxes, also a last line that ends in ``x = X`` after plain words ("So x = 5").
3. **The whole answer.** The whole answer text is one value (``$\\frac{1}{2}$``, ``0.5``, ``12 cm``, ``(B)``).

Otherwise there is no answer. What "one value" means depends on the kind: one expression (no prose words, optional
trailing unit words) for ``math``, one letter A–J for ``choice``, any text for ``exact``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: Longest single value handed to the LaTeX parser (longer → no answer).
MAX_EXPR_CHARS = 1000
#: Only the last this-many characters of an answer are searched for a closing statement.
MAX_PROSE_CHARS = 4000


class Answer(NamedTuple):
    parts: tuple[str, ...]  # one value, or several boxes (a set)
    source: str  # "box" | "statement" | "equation" | "whole"


# --------------------------------------------------------------------------------------------------------------
# Text preparation
# --------------------------------------------------------------------------------------------------------------

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-",  # minus signs (and the en dash models use as one)
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ", "\u2002": " ", "\u2003": " ",
    "\u00d7": "\\times ", "\u00f7": "\\div ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ", "\u03c0": "\\pi ",
    "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u2260": "\\ne ", "\u00b1": "\\pm ",
    "\u221a": "\\sqrt", "\u00b2": "^2", "\u00b3": "^3",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))


def normalize_text(text: str) -> str:
    """Unicode minus/spaces/operators to ASCII LaTeX, markdown bold removed."""
    return _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], text).replace("**", "")


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"\\[\\{}]|[{}]")  # \{ and \} are literal braces, \\ a line break


def boxes(text: str) -> list[tuple[int, int, str | None]]:
    """``(start, end, content)`` of every outermost box, in order; content None for a box that never closes.
    Linear time."""
    starts = [(m.start(), m.end() - 1) for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    partner, stack = {}, []
    for m in _BRACE_RE.finditer(text, starts[0][1]):
        if m.group()[0] == "\\":
            continue
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            partner[stack.pop()] = m.start()
    out, last_end = [], -1
    for start, brace in starts:
        if start < last_end:
            continue
        close = partner.get(brace)
        if close is None:
            out.append((start, len(text), None))
            break
        out.append((start, close + 1, text[brace + 1:close].strip()))
        last_end = close + 1
    return out


_PERCENT_AFTER = re.compile(r"(\$+)([^$]+)\1\s*(?:\\?%|percent)", re.I)


def strip_delimiters(s: str) -> str:
    """``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]`` around the whole string removed, with trailing periods
    (``$28$ %`` → ``28\\%``)."""
    for _ in range(3):
        s = s.strip().rstrip(".,;").strip()
        if m := _PERCENT_AFTER.fullmatch(s):
            s = m.group(2).strip() + "\\%"
        if len(_DOLLAR.findall(s)) == 1 and re.fullmatch(r"\$\s*[\d.,]+|[\d.,]+\s*\$", s):
            s = s.replace("$", "").strip()  # a currency sign: $1,000.99
        for a, b in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
            inner = s[len(a):-len(b)] if len(s) > len(a) + len(b) and s.startswith(a) and s.endswith(b) else None
            if inner is not None and (not _DOLLAR.search(inner) if a[0] == "$" else a not in inner and b not in inner):
                s = inner
                break
        else:
            return s
    return s.strip()


# --------------------------------------------------------------------------------------------------------------
# What counts as one value
# --------------------------------------------------------------------------------------------------------------

_ASCII_OK = set(map(chr, range(32, 127))) | set("\n\t\r")
_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_CMD_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_SETS = frozenset({"and"})  # "1, 2 and 3" is a set (math-verify reads it so); "1 or 2" offers candidates
_FUNCS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp sqrt max min gcd lcm mod deg det dx "
    "dy dz dt pi inf infty".split())
#: Short tokens that are English words, not products of variables (``ab``, ``xyz`` are fine).
_STOP = frozenset(
    "an as at be by do go he if in is it me my no of on or so to up us we am are and any but can did for few get got "
    "had has her him his how its let may nor not now off one our out per say see she six the too two try use via was "
    "who why yes yet you all ten".split())
_UNIT_TOKEN = r"(?:\\(?:text|textbf|textit|textrm|mathrm|mbox)\s*\{\s*[A-Za-z][A-Za-z ]{0,20}\}|[A-Za-z]{1,15})(?:\s*\^\s*\{?-?\d\}?)?"
_UNITS_TAIL = re.compile(rf"(?:\s+|(?<=[\d}}])(?=\\))(?:{_UNIT_TOKEN})(?:\s*(?:/|\\cdot|per)?\s*(?:{_UNIT_TOKEN})){{0,3}}\s*$")


_ENV_RE = re.compile(r"\\(?:begin|end)\s*\{[A-Za-z*]*\}")


def _letters(s: str) -> str:
    """``s`` with LaTeX text wrappers opened and other commands removed (what a reader sees as words)."""
    return _CMD_RE.sub(" ", _WRAP_RE.sub(r" \1 ", _ENV_RE.sub(" ", s)))


_UNITS = frozenset(
    "m cm mm km g kg mg s ms sec secs second seconds min mins minute minutes h hr hrs hour hours day days week weeks "
    "month months year years dollar dollars cent cents euro euros degree degrees deg rad radians unit units meter "
    "meters metre metres inch inches ft foot feet mile miles yd yard yards l ml liter liters litre litres mph kmh "
    "percent sq square cubic people persons students ways times pounds lb lbs oz ounce ounces n j w v a k".split())


def split_units(s: str, units_only: bool = False) -> str:
    """``s`` without a trailing unit (``12 cm^2``, ``3\\text{ m}``; in a box any words: ``5 apples``) after a
    numeric value. ``units_only``: only known unit words count (unboxed text)."""
    m = _UNITS_TAIL.search(s)
    if not m:
        return s
    core, unit = s[:m.start()].rstrip(), _letters(m.group()).lower()
    if not re.search(r"[\d}%]$", core) or not re.search(r"\d", core) or re.search(r"[A-Za-z]", _letters(core)):
        return s  # units only follow a number: 2 x is an algebraic product
    if any(w in _STOP for w in _WORD_RE.findall(unit)):
        return s  # "5 or so"
    if units_only and any(w not in _UNITS for w in re.findall(r"[a-z]+", unit)):
        return s
    return core


_NOT_ONE_VALUE = re.compile(r"[#@?`\"]|(?<!\\)\$|\\[()\[\]]|```|<[A-Za-z/!|]|\|>")


def well_formed(s: str, boxed: bool = False) -> bool:
    """Could ``s`` be one LaTeX value: printable ASCII (and °), no maths delimiters or tags inside, braces
    balanced, as many closing as opening brackets (``[0, 1)`` is an interval). In a box, pairs of ``$`` pass."""
    if not s or len(s) > MAX_EXPR_CHARS or any(c not in _ASCII_OK and c not in "°′″" for c in s):
        return False
    if boxed and len(_DOLLAR.findall(s)) % 2 == 0:
        s = _DOLLAR.sub(" ", s)
    if _NOT_ONE_VALUE.search(s):
        return False
    depth = 0
    for m in _BRACE_RE.finditer(s):
        if m.group()[0] != "\\":
            depth += 1 if m.group() == "{" else -1
            if depth < 0:
                return False
    return (depth == 0 and s.count("(") + s.count("[") == s.count(")") + s.count("]")
            and s.count("\\begin") == s.count("\\end"))


_DANGLING = re.compile(r"(?:[+\-*/=^_,&]|\\\\|\\(?:cdot|times|div|le|ge|leq|geq|in|pm|left[(\[]?))\s*$"
                       r"|^\s*(?:[*/=^_,&]|\\(?:cdot|times|div|le|ge|leq|geq|in|pm)(?![A-Za-z]))")
_DOLLAR = re.compile(r"(?<!\\)\$")


def is_expression(s: str) -> bool:
    """Is ``s`` one mathematical value: LaTeX or plain maths, no prose words, at most a trailing unit."""
    if not well_formed(s) or not re.match(r"[\w(\[{\\|.+-]", s.lstrip()) or _DANGLING.search(s):
        return False
    core = _letters(split_units(s, units_only=True))
    spaced = _CMD_RE.sub("#", _WRAP_RE.sub(r" \1 ", _ENV_RE.sub("#", split_units(s, units_only=True))))
    spaced = _MIXED.sub("M", _NUM_SPACES.sub(lambda m: m.group().replace(" ", ""), spaced))
    if re.search(r"\d\s+\d", spaced):
        return False  # "11 0", "17 7 7": numbers side by side are not one value
    for w in _WORD_RE.findall(core):
        w = w.lower()
        if (w in _STOP and w not in _SETS) or (len(w) > 3 and w not in _FUNCS):
            return False
    return bool(re.search(r"[0-9A-Za-z]", core) or "\\" in s)


_NUM_SPACES = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_DEC_COMMA = re.compile(r"(-?\d+),(\d{1,2}|\d{4,})")
_MIXED = re.compile(r"(-?)(\d+)\s+(\d+)\s*/\s*(\d+)")  # 2 1/2


def prepare_expression(s: str, bare: bool = False) -> str:
    """A single value ready for math-verify: delimiters and units off, ``1 000`` → ``1000``, ``2 1/2`` →
    ``\\frac{5}{2}``, newlines → spaces; for a ``bare`` value (plain text: not boxed, no ``$``), ``1000,99`` →
    ``1000.99`` (a decimal comma: not 3 digits after it), as math-verify reads plain numbers."""
    s = split_units(strip_delimiters(s)).replace("{,}", ",").replace("\n", " ").strip()
    if _NUM_SPACES.fullmatch(s):
        return s.replace(" ", "")
    if bare and (m := _DEC_COMMA.fullmatch(s)):
        return f"{m.group(1)}.{m.group(2)}"
    if (m := _MIXED.fullmatch(s)) and int(m.group(4)) != 0:
        sign, whole, num, den = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        return f"{sign}\\frac{{{whole * den + num}}}{{{den}}}"
    return s


# --------------------------------------------------------------------------------------------------------------
# Letters (multiple choice)
# --------------------------------------------------------------------------------------------------------------

_LETTER_ONLY = re.compile(r"\(?\s*([A-Ja-j])\s*\)?\s*[.:]?")
_LETTER_LEAD = re.compile(r"(?:\(([A-J])\)|([A-J])[).:])(?:\s+(.*))?", re.S)
_LETTER_STATED = re.compile(r"(?i:option\s+|choice\s+)?(?:\(([A-J])\)|([A-J])(?![A-Za-z0-9]))[).:,]?(?:\s+(.*))?", re.S)
_OTHER_LETTER = re.compile(r"\([A-J]\)|(?:\bor\b|\band\b|/|,)\s*\(?[A-J]\)?(?![A-Za-z0-9])|(?<![A-Za-z])[A-J][).](?:\s|$)")
_ANY_LETTER = re.compile(r"(?<![A-Za-z\\])[A-J](?![A-Za-z])")


def letter_of(value: str, whole: bool = False) -> str | None:
    """The option letter ``value`` states: ``B``, ``(B)``, ``B.``, ``\\text{B}``, ``option B``; a whole answer may
    also lead with its letter (``(B) 42 apples``, ``B. 42``). None for anything offering two letters (``A or B``)."""
    v = strip_delimiters(_WRAP_RE.sub(r"\1", value)).strip()
    if m := _LETTER_ONLY.fullmatch(v):
        return m.group(1).upper()
    m = (_LETTER_LEAD if whole else _LETTER_STATED).fullmatch(v)
    if not m:
        return None
    rest = m.group(3) or ""
    if _OTHER_LETTER.search(rest) or (not whole and _ANY_LETTER.search(rest)):
        return None
    return m.group(1) or m.group(2)


# --------------------------------------------------------------------------------------------------------------
# Closing statements
# --------------------------------------------------------------------------------------------------------------

_ANCHOR = re.compile(
    r"(?i)(?<![a-z])(?:final\s+answer|answer|(?:correct|right|best)\s+(?:option|choice)|the\s+(?:option|choice))"
    r"(?:[ \t]*(?:is[ \t]*:?|:|=|would[ \t]+be|should[ \t]+be|must[ \t]+be)\s*|[ \t]+(?=\$|\\[(\[]))")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n|;|!|\?(?=\s|$)")
_CLOSERS = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_OFFERS_VALUE = re.compile(r"\d|\$|\\boxed|\\fbox|\\\(|\\\[")


def _value_after(text: str, start: int) -> tuple[str, int]:
    """The value a statement gives from ``start``: a delimited maths span (plus what follows it up to the end of
    the sentence), else the text up to the end of the sentence. Returns (value, end index)."""
    pos = start
    for a, b in _CLOSERS.items():
        if text.startswith(a, start):
            close = text.find(b, start + len(a))
            if close != -1:
                pos = close + len(b)
            break
    m = _SENTENCE_END.search(text, pos)
    end = m.start() if m else len(text)
    return text[start:end].strip(), end


def _one_number(value: str) -> str | None:
    """The number of a plain-words value with exactly one number ("Jane started 3 hours ago")."""
    if len(value) > 300 or not _PROSE_NUM.fullmatch(value) or _NEGATION.search(value):
        return None
    nums = _NUMBER.findall(value)
    return nums[0] if len(nums) == 1 else None


def _statement(text: str, kind: str) -> tuple[int, str | None] | None:
    """(start, value) of the last closing statement: value None when the statement gives no single value.

    Answer statements ("The answer is", "Answer:", "The final answer is", "The correct option is") give the rest
    of their sentence, which must be one value; for maths also "<plain words> is V" or plain words with exactly
    one number. Conclusions ("Therefore/Thus/Hence/So, <plain words> is V.", or with one number) count only in
    that form. Nothing after the statement may offer another value."""
    offset = max(0, len(text) - MAX_PROSE_CHARS)
    last = None
    for m in _ANCHOR.finditer(text, offset):
        last = m
    conclusion = None
    if kind == "math":
        for m in _CONCLUSION.finditer(text, last.end() if last else offset):
            conclusion = m
    anchor = conclusion or last
    if anchor is None and kind == "math":
        anchor = _LABEL.match(text)  # "Result: 5", "Total : 12 apples" opening the answer
    if anchor is None:
        return None
    value, end = _value_after(text, anchor.end())
    if kind == "math" and not _valid(value, kind):
        if m := _IS_TAIL.fullmatch(value):
            value = m.group(2)  # "The largest $n$ is 34": the value after the last "is", after plain words
        elif (num := _one_number(value)) is not None:
            value = num
    ok = _valid(value, kind) and not (kind == "math" and _OFFERS_VALUE.search(text, end))
    if anchor is conclusion and not ok:
        return None if last is None else _statement(text[:conclusion.start()], kind)
    return anchor.start(), (value if ok else None)


_LABEL = re.compile(r"\s*[A-Za-z]{2,20}[ \t]*:[ \t]*")
_CONCLUSION = re.compile(r"(?i)(?:^|(?<=[\s.,;:!?]))(?:therefore|thus|hence|so)\b,?\s*")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)*(?:\s*%)?(?![\w])")
_PROSE_NUM = re.compile(r"[A-Za-z0-9\s,.;:!?'\u2019\"()%$-]*")
_NEGATION = re.compile(r"(?i)\b(?:not|no|never|except|isn't|aren't|neither|nor|or)\b")


_IS_TAIL = re.compile(r"((?:[A-Za-z ,'\u2019()-]|\$[^$\d]{1,40}\$)*)\bis\s+(.+)", re.S)
_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_PROSE = re.compile(r"[A-Za-z\s,.;:!?'\u2019\"()-]*")


def _single_span(text: str) -> str | None:
    """The one delimited maths value of a plain-words sentence ("Therefore $x \\geq 5$ is the solution.")."""
    if len(text) > 400:
        return None
    spans = list(_SPAN.finditer(text))
    if len(spans) != 1:
        return None
    m = spans[0]
    if not _PROSE.fullmatch(text[:m.start()] + " " + text[m.end():]):
        return None
    value = next(g for g in m.groups() if g is not None)
    return value if is_expression(value) else None


_EQ_TAIL = re.compile(r"(?<![A-Za-z\\])((?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*=\s*([^=]*?))\s*$")
_PLAIN_LEAD = re.compile(r"[A-Za-z ,'\u2019:-]*")


def _equation_line(text: str) -> str | None:
    """``x = 5`` from a last line such as "So $x = 5$." (the words before it are plain: no numbers or maths)."""
    line = text.rstrip().rsplit("\n", 1)[-1].strip().rstrip(".").strip()
    if len(line) > 500:
        return None
    lead, body = line, line
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if line.endswith(b) and (i := line.rfind(a, 0, len(line) - len(b))) != -1:
            lead, body = line[:i], line[i + len(a):-len(b)]
            break
    m = _EQ_TAIL.search(body)
    if not m:
        return None
    lead = lead if lead is not line else line[:m.start()]
    if body is not line and body[:m.start()].strip():
        return None
    if not _PLAIN_LEAD.fullmatch(lead) or not is_expression(m.group(2)):
        return None
    return m.group(1)


# --------------------------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------------------------


def _valid(value: str, kind: str) -> bool:
    if kind == "choice":
        return letter_of(value) is not None
    if kind == "exact":
        return bool(value.strip())
    return is_expression(strip_delimiters(value))


def final_answer(answer_text: str, kind: str = "math") -> Answer | None:
    """The stated answer of ``answer_text`` for ``kind`` (``math``, ``choice`` or ``exact``), or None."""
    text = normalize_text(answer_text or "")
    if not text.strip():
        return None
    found = boxes(text)
    stmt = _statement(text, kind)
    if found:
        if stmt is not None and stmt[1] is not None and stmt[0] >= found[-1][1]:
            return Answer((stmt[1],), "statement")
        parts = tuple(c for _, _, c in found)
        if not all(parts) or any(_BOX_RE.search(p) for p in parts):
            return None  # a box never closed, an empty one, or boxes in a box: no answer
        if kind == "math" and not all(well_formed(p, boxed=True) and not _DANGLING.search(_DOLLAR.sub(" ", p))
                                      for p in parts):
            return None  # junk in a box
        return Answer(parts, "box")
    if stmt is not None:
        return None if stmt[1] is None else Answer((stmt[1],), "statement")
    whole = text.strip()
    if kind == "choice":
        return Answer((whole,), "whole") if letter_of(whole, whole=True) else None
    if kind != "math" or is_expression(strip_delimiters(whole)):
        return Answer((whole,), "whole")
    if (eq := _equation_line(whole)) is not None and "\n" in whole:
        return Answer((eq,), "equation")
    if (span := _single_span(whole)) is not None:
        return Answer((span,), "span")
    return None


def extract_answer(answer_text: str, kind: str = "math") -> str:
    """The stated answer as one string (several boxes joined by ``", "``), ``""`` when there is none."""
    found = final_answer(answer_text if isinstance(answer_text, str) else "" if answer_text is None
                         else str(answer_text), kind)
    return "" if found is None else ", ".join(strip_delimiters(p) for p in found.parts)
