"""A small grammar for phasing recipes, e.g. ``"(180HIO, 20ER)*2, 210ER"``; never ``eval``.

    recipe := item ("," item)*
    item   := [COUNT] NAME  |  "(" recipe ")" ["*" COUNT]
    NAME   := ER | HIO | RAAR
"""

from __future__ import annotations

import re

from streamer.phasing.operators import ER, HIO, RAAR, Operator, Repeat, Sequence

# 610 iterations, as the reference analysis; the last third error reduction (as PyNX ends on ER**200): at a low dose
# HIO drifts off the truth, and a long ER tail brings the members back nearer it (BENCHMARKS.md, "A long ER tail")
DEFAULT_RECIPE = "(180HIO, 20ER)*2, 210ER"

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z]+)|(.))")


class RecipeError(ValueError):
    """A recipe string that does not parse, with the position of the problem."""


def _tokens(text: str):
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        number, name, sym = m.groups()
        if number is not None:
            yield ("int", int(number), m.start(1))
        elif name is not None:
            yield ("name", name.upper(), m.start(2))
        else:
            yield ("sym", sym, m.start(3))
        pos = m.end()
    yield ("end", None, len(text))


def parse_recipe(text: str, *, beta: float = 0.9) -> Operator:
    """Parse ``text`` into an operator; HIO and RAAR use ``beta``."""
    toks = list(_tokens(text))
    i = 0

    def peek():
        return toks[i]

    def take(kind, value=None):
        nonlocal i
        k, v, p = toks[i]
        if k != kind or (value is not None and v != value):
            want = value if value is not None else kind
            raise RecipeError(f"recipe {text!r}: expected {want!r} at position {p}, found {v!r}")
        i += 1
        return v

    names = {"ER": lambda: ER(), "HIO": lambda: HIO(beta), "RAAR": lambda: RAAR(beta)}

    def item() -> Operator:
        k, v, p = peek()
        if k == "sym" and v == "(":
            take("sym", "(")
            inner = recipe()
            take("sym", ")")
            if peek()[:2] == ("sym", "*"):
                take("sym", "*")
                n = take("int")
                return Repeat(inner, _count(n, p))
            return inner
        count = 1
        if k == "int":
            count = _count(take("int"), p)
        name = take("name")
        if name not in names:
            raise RecipeError(f"recipe {text!r}: unknown operator {name!r}; use ER, HIO or RAAR")
        op = names[name]()
        return op if count == 1 else Repeat(op, count)

    def _count(n, p):
        if n < 1:
            raise RecipeError(f"recipe {text!r}: count at position {p} must be >= 1")
        return n

    def recipe() -> Operator:
        ops = [item()]
        while peek()[:2] == ("sym", ","):
            take("sym", ",")
            ops.append(item())
        return ops[0] if len(ops) == 1 else Sequence(ops)

    if not text.strip():
        raise RecipeError("recipe is empty")
    op = recipe()
    take("end")
    return op
