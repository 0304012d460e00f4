"""A compiler for integer convolution kernels on the SCAMP-5 array (the AUKE / Cain problem,
``../shared/reference/scamp5.md`` §3): each kernel as sums of shifted, negated and halved
copies of the input image, in as few SCAMP-5d macros as possible, several kernels sharing
intermediate values, within the analog registers A..F (the input in A).

A value is a polynomial in the shifts: ``{(dy, dx): c}`` means ``sum c * x(p + (dy, dx))``;
``movx(y, x, east)`` moves every term by (0, +1) (``y(p) = x(p + east)``). A kernel ``K``
(a correlation, centred) is the polynomial ``{(i - ci, j - cj): K[i][j]}``; fractional weights
``m / 2**d`` are computed as ``m`` and halved ``d`` times (``divq``).

Strategies, the shortest program kept (each one a straight-line program of new values):

* exact search (3x3 kernels): iterative deepening over every macro and direction from the
  values at hand, the last instruction found by solving for its operands, within a budget of
  states (so "shortest" means shortest found);
* separable kernels (rank 1 over the integers): a row program, then a column program on its
  result, each found by the exact search on its axis;
* sums of separable terms (a Laplacian: two);
* Horner rows: any kernel of -1, 0, +1 weights row by row, ``q <- S(q) +- x`` per tap with
  ``subx`` and ``addx`` on a copy of the input shifted once (each register keeps its sign), the
  rows joined the same way vertically, one final move to the centre;
* several kernels: compiled one after another in every order (a small beam of the shortest
  partial programs), a value computed for an earlier kernel never computed again.

Every program is checked by the simulator (:mod:`.simulator`, exact mode) on random images
before it is returned, then given registers by linear scan (at most ``registers``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ...errors import BitgenError
from . import isa
from .program import Program
from .simulator import Simulator

Poly = tuple  # sorted ((dy, dx), c) pairs, c != 0


class KernelError(BitgenError):
    """A kernel the compiler cannot take (one-line message)."""


DIR_VEC = isa.DIRS
ONE = {d: v for d, v in DIR_VEC.items()}
TWO = {}
for d1, d2 in itertools.combinations_with_replacement(("north", "south", "east", "west"), 2):
    v = (DIR_VEC[d1][0] + DIR_VEC[d2][0], DIR_VEC[d1][1] + DIR_VEC[d2][1])
    if v != (0, 0):
        TWO.setdefault(v, (d1, d2))
SHIFTS = [((v,), (d,)) for d, v in ONE.items()] + [((v,), dd) for v, dd in TWO.items()]


def poly(d: dict) -> Poly:
    return tuple(sorted((k, c) for k, c in d.items() if c))


def shift(p: Poly, v: tuple[int, int]) -> Poly:
    """S_v, a neighbour read: y(p) = x(p + v), so a term x(p + o) becomes x(p + o + v)."""
    return tuple(((k[0] + v[0], k[1] + v[1]), c) for k, c in p)


def add(*ps: Poly, signs: tuple[int, ...] | None = None) -> Poly:
    acc: dict = {}
    for p, s in zip(ps, signs or (1,) * len(ps)):
        for k, c in p:
            acc[k] = acc.get(k, 0) + s * c
    return poly(acc)


def scale(p: Poly, s) -> Poly:
    return tuple((k, c * s) for k, c in p)


X = poly({(0, 0): 1})


@dataclass
class Step:
    op: str
    args: tuple  # value ids and directions, in the macro's argument order (without the destination)
    value: Poly


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    values: list[Poly] = field(default_factory=lambda: [X])
    outputs: list[int] = field(default_factory=list)

    def copy(self) -> "Plan":
        return Plan(list(self.steps), list(self.values), list(self.outputs))

    def push(self, op: str, args: tuple, value: Poly) -> int:
        self.steps.append(Step(op, args, value))
        self.values.append(value)
        return len(self.values) - 1

    def find(self, value: Poly) -> int | None:
        try:
            return self.values.index(value)
        except ValueError:
            return None


# ---------------------------------------------------------------- one instruction, solved
def last_step(plan: Plan, target: Poly, shifts=SHIFTS) -> tuple[str, tuple, Poly] | None:
    """An instruction that makes `target` from the plan's values, if there is one."""
    index = {v: i for i, v in enumerate(plan.values)}
    vals = list(index.items())
    if target in index:
        return None
    neg = scale(target, -1)
    if neg in index:
        return "neg", (index[neg],), target
    dbl = scale(target, 2)
    if dbl in index:
        return "divq", (index[dbl],), target
    for (vec,), dirs in shifts:
        back = shift(target, (-vec[0], -vec[1]))
        if back in index:
            return ("movx" if len(dirs) == 1 else "mov2x"), (index[back], *dirs), target
    for a, ia in vals:
        rest = add(target, a, signs=(1, -1))
        if rest in index:
            return "add", (ia, index[rest]), target
        more = add(target, a, signs=(1, 1))  # target = more - a
        if more in index:
            return "sub", (index[more], ia), target
    for (vec,), dirs in shifts:
        back = shift(target, (-vec[0], -vec[1]))
        for a, ia in vals:
            rest = add(back, a, signs=(1, -1))  # back = a + rest
            if rest in index:
                return ("addx" if len(dirs) == 1 else "add2x"), (ia, index[rest], *dirs), target
            # target = S(a0) - a  ->  a0 = S^-1(target + a)
            a0 = shift(add(target, a), (-vec[0], -vec[1]))
            if a0 in index:
                return ("subx" if len(dirs) == 1 else "sub2x"), (index[a0], *dirs, ia), target
    for (a, ia), (b, ib) in itertools.combinations_with_replacement(vals, 2):
        rest = add(target, a, b, signs=(1, -1, -1))
        if rest in index:
            return "add", (ia, ib, index[rest]), target
    return None


def successors(plan: Plan, shifts, box: tuple[int, int, int, int], cmax: int):
    """Every new value one instruction makes, inside the box (rows, cols) and |c| <= cmax."""
    vals = list(enumerate(plan.values))
    seen = set(plan.values)
    out = []

    def ok(p: Poly) -> bool:
        if not p or p in seen:
            return False
        return all(box[0] <= k[0] <= box[1] and box[2] <= k[1] <= box[3] and abs(c) <= cmax for k, c in p)

    def put(op, args, v):
        if ok(v):
            seen.add(v)
            out.append((op, args, v))
    for i, a in vals:
        put("neg", (i,), scale(a, -1))
        for (vec,), dirs in shifts:
            put("movx" if len(dirs) == 1 else "mov2x", (i, *dirs), shift(a, vec))
    for (i, a), (j, b) in itertools.combinations_with_replacement(vals, 2):
        put("add", (i, j), add(a, b))
        for (vec,), dirs in shifts:
            put("addx" if len(dirs) == 1 else "add2x", (i, j, *dirs), shift(add(a, b), vec))
    for (i, a), (j, b) in itertools.product(vals, vals):
        if i != j:
            put("sub", (i, j), add(a, b, signs=(1, -1)))
        for (vec,), dirs in shifts:
            put("subx" if len(dirs) == 1 else "sub2x", (i, *dirs, j), add(shift(a, vec), b, signs=(1, -1)))
    return out


def search(plan: Plan, target: Poly, max_steps: int, shifts=SHIFTS, budget: int = 20000) -> Plan | None:
    """The shortest extension of `plan` (at most max_steps instructions) that makes target,
    looking at no more than `budget` intermediate states (None: none found within them)."""
    if plan.find(target) is not None:
        return plan
    ks = [k for k, _ in target] + [k for v in plan.values for k, _ in v]
    box = (min(k[0] for k in ks) - 2, max(k[0] for k in ks) + 2, min(k[1] for k in ks) - 2, max(k[1] for k in ks) + 2)
    cmax = 2 * max(abs(c) for _, c in target) + 1
    left = [budget]
    for depth in range(1, max_steps + 1):
        found = _dfs(plan, target, depth, shifts, box, cmax, set(), left)
        if found is not None or left[0] <= 0:
            return found
    return None


def _dfs(plan, target, depth, shifts, box, cmax, seen, left) -> Plan | None:
    left[0] -= 1
    if left[0] <= 0:
        return None
    if depth == 1:
        step = last_step(plan, target, shifts)
        if step is None:
            return None
        p = plan.copy()
        p.push(*step)
        return p
    key = frozenset(plan.values)
    if (key, depth) in seen:
        return None
    seen.add((key, depth))
    for op, args, v in successors(plan, shifts, box, cmax):
        p = plan.copy()
        p.push(op, args, v)
        found = _dfs(p, target, depth - 1, shifts, box, cmax, seen, left)
        if found is not None or left[0] <= 0:
            return found
    return None


def axis_shifts(axis: int):
    return [s for s in SHIFTS if s[0][0][1 - axis] == 0]


# ------------------------------------------------------------------------ strategies
def _kernel_poly(k: np.ndarray) -> Poly:
    ci, cj = k.shape[0] // 2, k.shape[1] // 2
    return poly({(i - ci, j - cj): int(k[i, j]) for i in range(k.shape[0]) for j in range(k.shape[1])})


def _separate(k: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(col, row) integer vectors with k = outer(col, row), if k has rank 1 over the integers."""
    rows = [r for r in k if np.any(r)]
    if not rows:
        return None
    base = rows[0]
    g = np.gcd.reduce(np.abs(base[base != 0]).astype(np.int64))
    row = base // g
    col = []
    for r in k:
        nz = np.flatnonzero(row)
        f = Fraction(int(r[nz[0]]), int(row[nz[0]]))
        if f.denominator != 1 or not np.array_equal(r, row * int(f)):
            return None
        col.append(int(f))
    return np.array(col), row


def _stage(plan: Plan, src: int, target: Poly, axis: int | None, max_steps: int,
           budget: int = 3000) -> tuple[Plan, int] | None:
    """Extend plan with a program that makes target (searching from all its values)."""
    shifts = SHIFTS if axis is None else axis_shifts(axis)
    base = [0] if src == 0 else [0, src]  # search from the input and the source only: fewer branches
    sub = Plan(values=[plan.values[i] for i in base])
    found = search(sub, target, max_steps, shifts, budget=budget)
    if found is None:
        return None
    out = plan.copy()
    ids = dict(enumerate(base))
    for n, st in enumerate(found.steps, start=len(base)):
        args = tuple(ids[a] if isinstance(a, int) else a for a in st.args)
        have = out.find(st.value)  # computed before (by another kernel): shared, not repeated
        ids[n] = have if have is not None else out.push(st.op, args, st.value)
    return out, out.find(target)


def horner_1d(plan: Plan, src: int, coeffs: list[int], axis: int) -> tuple[Plan, int] | None:
    """Value `src` convolved with a 1-D kernel of -1, 0, +1 taps along `axis` (0: rows, 1:
    columns), centred: ``q <- S(q) +- src`` from the last tap to the first, the register
    keeping a sign, ``subx`` where the tap's sign is opposite, ``addx`` with a copy of src moved
    back one step where it is the same; then the move to the centre and, if needed, a neg."""
    if not set(coeffs) <= {-1, 0, 1} or not any(coeffs):
        return None
    p = plan.copy()
    fwd, back = ("south", "north") if axis == 0 else ("east", "west")
    unit = (1, 0) if axis == 0 else (0, 1)
    vec = lambda n: (unit[0] * n, unit[1] * n)  # noqa: E731
    sv = p.values[src]
    nz = [j for j, c in enumerate(coeffs) if c]
    last = nz[-1]
    q, sign, pos = src, coeffs[last], last
    srcb = None
    for j in reversed(nz[:-1]):
        c = coeffs[j]
        while pos - j > 1:  # zero taps: moves
            stepn = 2 if pos - j > 2 else 1
            q = p.push("movx" if stepn == 1 else "mov2x", (q, *((fwd,) if stepn == 1 else (fwd, fwd))),
                       shift(p.values[q], vec(stepn)))
            pos -= stepn
        if c == -sign:  # S(sign q) - src = sign (S q + c src)
            q = p.push("subx", (q, fwd, src), add(shift(p.values[q], vec(1)), sv, signs=(1, -1)))
        else:  # S(sign q + S^-1 src) = sign (S q + c src)
            if srcb is None:
                srcb = p.find(shift(sv, vec(-1)))
                if srcb is None:
                    srcb = p.push("movx", (src, back), shift(sv, vec(-1)))
            q = p.push("addx", (q, srcb, fwd), shift(add(p.values[q], p.values[srcb]), vec(1)))
        pos = j
    centre = len(coeffs) // 2
    target = poly({})
    for j, c in enumerate(coeffs):
        if c:
            target = add(target, scale(shift(sv, vec(j - centre)), c))
    want = scale(target, sign)  # what q must become: the kernel, with the register's sign
    moves = pos - centre  # q holds src taps at (j - pos), the kernel at (j - centre)
    d = back if moves < 0 else fwd
    n = abs(moves)
    while n:
        stepn = 2 if n >= 2 else 1
        q = p.push("movx" if stepn == 1 else "mov2x", (q, *((d,) if stepn == 1 else (d, d))),
                   shift(p.values[q], vec(-stepn if moves < 0 else stepn)))
        n -= stepn
    if p.values[q] != want:
        return None
    if sign < 0:
        q = p.push("neg", (q,), target)
    return p, q


def separable(plan: Plan, k: np.ndarray, max_steps: int = 3, budget: int = 3000) -> tuple[Plan, int] | None:
    """A rank-1 kernel: a program along one axis, then one along the other on its result; each
    by the exact search, or by Horner's rule for -1/0/+1 taps."""
    parts = _separate(k)
    if parts is None:
        return None
    col, row = parts
    full = _kernel_poly(k)
    best = None
    for axis in (1, 0):
        vec, other = (row, col) if axis == 1 else (col, row)
        n = len(vec)
        p1 = poly({((0, i - n // 2) if axis == 1 else (i - n // 2, 0)): int(c) for i, c in enumerate(vec)})
        firsts = []
        got = _stage(plan.copy(), 0, p1, axis, max_steps, budget)
        if got is not None:
            firsts.append(got)
        h1 = horner_1d(plan, 0, [int(c) for c in vec], axis)
        if h1 is not None:
            firsts.append(h1)
        for p, i1 in firsts:
            seconds = []
            got2 = _stage(p, i1, full, 1 - axis, max_steps, budget)
            if got2 is not None:
                seconds.append(got2)
            h2 = horner_1d(p, i1, [int(c) for c in other], 1 - axis)
            if h2 is not None:
                seconds.append(h2)
            for cand in seconds:
                if cand[0].values[cand[1]] == full and (best is None or len(cand[0].steps) < len(best[0].steps)):
                    best = cand
    return best


def horner(plan: Plan, k: np.ndarray) -> tuple[Plan, int] | None:
    """Any kernel of -1, 0, +1 weights: each row by Horner's rule (uncentred), the rows joined
    by Horner's rule downward, ``subx`` where the signs allow and a move plus ``addx`` where
    not, then the moves to the centre."""
    if not np.isin(k, (-1, 0, 1)).all() or not np.any(k):
        return None
    p = plan.copy()
    h, w = k.shape
    ch, cw = h // 2, w // 2
    xw = None
    live = [i for i in range(h) if np.any(k[i])]
    first = min(int(np.flatnonzero(k[i])[0]) for i in live)
    acc = sacc = at = None
    for i in reversed(live):  # each row by Horner's rule, then into the accumulator
        taps = [int(v) for v in k[i]]
        nz = [j for j in range(w) if taps[j]]
        q, s, pos = 0, taps[nz[-1]], nz[-1]
        for j in reversed(nz[:-1]):
            c = taps[j]
            while pos - j > 1:
                stepn = 2 if pos - j > 2 else 1
                q = p.push("movx" if stepn == 1 else "mov2x", (q, *(("east",) if stepn == 1 else ("east", "east"))),
                           shift(p.values[q], (0, stepn)))
                pos -= stepn
            if c == -s:
                q = p.push("subx", (q, "east", 0), add(shift(p.values[q], (0, 1)), X, signs=(1, -1)))
            else:
                if xw is None:
                    xw = p.push("movx", (0, "west"), shift(X, (0, -1)))
                q = p.push("addx", (q, xw, "east"), shift(add(p.values[q], p.values[xw]), (0, 1)))
            pos = j
        while pos > first:  # every row starts at the same column
            q = p.push("movx", (q, "west"), shift(p.values[q], (0, -1)))
            pos -= 1
        if acc is None:
            acc, sacc, at = q, s, i
            continue
        while at - i > 1:
            acc = p.push("movx", (acc, "south"), shift(p.values[acc], (1, 0)))
            at -= 1
        if s == -sacc:  # T(sacc Q) - s R = sacc (T Q + R)
            acc = p.push("subx", (acc, "south", q), add(shift(p.values[acc], (1, 0)), p.values[q], signs=(1, -1)))
        else:
            qn = p.push("movx", (q, "north"), shift(p.values[q], (-1, 0)))
            acc = p.push("addx", (acc, qn, "south"), shift(add(p.values[acc], p.values[qn]), (1, 0)))
        at = i
    target = _kernel_poly(k)
    dy, dx = ch - at, cw - first  # acc holds the kernel moved by (at - ch, first - cw)
    for axis, n in ((0, dy), (1, dx)):
        d = ("north" if n > 0 else "south") if axis == 0 else ("west" if n > 0 else "east")
        m = abs(n)
        while m:
            stepn = 2 if m >= 2 else 1
            v = (-stepn if n > 0 else stepn, 0) if axis == 0 else (0, -stepn if n > 0 else stepn)
            acc = p.push("movx" if stepn == 1 else "mov2x", (acc, *((d,) if stepn == 1 else (d, d))),
                         shift(p.values[acc], v))
            m -= stepn
    if p.values[acc] == scale(target, -1):
        acc = p.push("neg", (acc,), target)
    if p.values[acc] != target:
        return None
    return p, acc


def sum_of_separable(plan: Plan, k: np.ndarray) -> tuple[Plan, int] | None:
    """k as the sum of its rank-1 parts along rows and columns that share a centre (a Laplacian:
    a vertical and a horizontal 1-D kernel) when there are two."""
    h, w = k.shape
    ch, cw = h // 2, w // 2
    vert = np.zeros_like(k)
    vert[:, cw] = k[:, cw]
    horiz = k - vert
    if np.count_nonzero(horiz[np.arange(h) != ch]):
        return None
    best = None
    c = int(k[ch, cw])
    for split in sorted({c // 2, c - c // 2, 0, c}):
        v = vert.copy()
        hz = horiz.copy()
        v[ch, cw] = split
        hz[ch, cw] = k[ch, cw] - split
        p = plan.copy()
        got1 = _stage(p, 0, _kernel_poly(v), 0, 3, 2000)
        if got1 is None:
            continue
        got2 = _stage(got1[0], 0, _kernel_poly(hz), 1, 3, 2000)
        if got2 is None:
            continue
        p2, i2 = got2
        fin = search(p2, _kernel_poly(k), 1, budget=10)
        if fin is not None and (best is None or len(fin.steps) < len(best[0].steps)):
            best = (fin, fin.find(_kernel_poly(k)))
    return best


# ------------------------------------------------------------------------------ driver
@dataclass
class Compiled:
    plan: Plan
    strategy: str
    registers: dict[int, str]  # value id -> register
    instructions: list[dict]
    scale_bits: int  # outputs are the kernel times 2**scale_bits before the final halvings


def _targets(kernels: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Integer kernels and the halvings (divq) after them: m / 2**d weights."""
    d = 0
    fr = [np.vectorize(lambda v: Fraction(v).limit_denominator(1 << 12))(np.asarray(k, dtype=object)) for k in kernels]
    while any(v.denominator > 1 << d for k in fr for v in k.ravel()):
        d += 1
    ints = [np.array([[int(v * (1 << d)) for v in row] for row in k], dtype=np.int64) for k in fr]
    return ints, d


def _one(plan: Plan, k: np.ndarray, search_steps: int, budget: int) -> list[tuple[str, Plan, int]]:
    """Programs for kernel k extending plan, the structured strategies first, then the exact
    search for anything shorter than the best of them."""
    target = _kernel_poly(k)
    at = plan.find(target)
    if at is not None:
        return [("shared", plan, at)]
    out = []
    for name, fn in (("separable", separable), ("sum", sum_of_separable), ("horner", horner)):
        got = fn(plan, k)
        if got is not None:
            out.append((name, *got))
    best = min((len(p.steps) - len(plan.steps) for _, p, _ in out), default=search_steps + 1)
    if k.size <= 9:  # the exact search, for 3x3 kernels
        found = search(plan, target, min(search_steps, best - 1), budget=budget)
        if found is not None:
            out.append(("search", found, found.find(target)))
    return out


def compile_kernels(kernels: list, registers: int = 6, search_steps: int = 4, budget: int = 4000) -> Compiled:
    """The shortest program found for all kernels (see the module docstring): for every order
    of the kernels, each kernel's programs extending what the ones before computed."""
    ks, d = _targets(kernels)
    for k in ks:
        if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
            raise KernelError("kernels must be 2-D with odd sizes (a centre tap)")
        if not np.any(k):
            raise KernelError("a kernel of zeros needs no program")
    if not 2 <= registers <= 6:
        raise KernelError("registers must be 2..6 (A..F; the input is in A)")
    candidates = []
    orders = list(itertools.permutations(range(len(ks))))[:6]
    for order in orders:
        partial = [(Plan(), {}, [])]
        for idx in order:
            nxt = []
            for plan, outs, names in partial:
                for name, p, at in _one(plan, ks[idx], search_steps, budget):
                    nxt.append((p, {**outs, idx: at}, names + [name]))
            nxt.sort(key=lambda c: len(c[0].steps))
            partial = nxt[:4]  # a small beam
        for plan, outs, names in partial:
            plan = plan.copy()
            for idx in range(len(ks)):
                for _ in range(d):
                    outs[idx] = plan.push("divq", (outs[idx],), scale(plan.values[outs[idx]], Fraction(1, 2)))
            plan.outputs = [outs[i] for i in range(len(ks))]
            regs = allocate(plan, registers)
            if regs is not None:
                candidates.append((len(plan.steps), "+".join(names), plan, regs))
    if not candidates:
        raise KernelError(f"no program within {registers} registers found")
    candidates.sort(key=lambda c: c[0])
    n, strategy, plan, regs = candidates[0]
    code = instructions(plan, regs)
    verify(code, [_kernel_poly(k) for k in ks], [regs[o] for o in plan.outputs], d)
    return Compiled(plan, strategy, regs, code, d)


def allocate(plan: Plan, registers: int) -> dict[int, str] | None:
    """Registers by linear scan over the values' lifetimes (the input in A); an operand a macro
    must not overwrite in the same bus operation keeps its register until after it; None when
    more than `registers` values are live at once."""
    end = len(plan.steps) + 1
    last = {i: 0 for i in range(len(plan.values))}
    for n, st in enumerate(plan.steps, start=1):
        for a in st.args:
            if isinstance(a, int):
                last[a] = n
    for o in plan.outputs:
        last[o] = end
    where = {0: "A"}
    free = list(isa.AREGS[1:registers])
    for n, st in enumerate(plan.steps, start=1):
        spec = isa.SPECS[st.op]
        ops = [a for a in st.args if isinstance(a, int)]
        keep = {st.args[r - 1] for _, r in spec.no_alias if r - 1 < len(st.args)}
        dying = {a for a in ops if last[a] == n}
        for a in dying - keep:
            free.insert(0, where[a])
        if not free:
            return None
        where[n] = free.pop(0)
        for a in dying & keep:
            free.append(where[a])
        if last[n] == 0 and n not in plan.outputs:  # never read: its register is free at once
            free.append(where[n])
    return where


def instructions(plan: Plan, regs: dict[int, str]) -> list[dict]:
    out = []
    for n, st in enumerate(plan.steps, start=1):
        args = [regs[a] if isinstance(a, int) else a for a in st.args]
        out.append(isa.instruction(st.op, regs[n], *args))
    return out


def verify(code: list[dict], targets: list[Poly], outputs: list[str], halvings: int, trials: int = 4) -> None:
    """Run the program in the exact simulator on random images (scaled by 2**halvings so
    every halving is exact) and compare each output with its kernel's correlation."""
    size = 24
    p = Program((size, size))
    p.sections["frame"] = code
    rng = np.random.default_rng(0)
    s = Simulator(p, trials)
    img = rng.integers(-20, 21, (trials, size, size)) << halvings
    s.a["A"] = img.astype(np.int64)
    for ins in code:
        s.execute(ins)
    m = 8  # compare away from the border (what moves in from outside is 0)
    img = img >> halvings
    for t, reg in zip(targets, outputs):
        want = np.zeros_like(img, dtype=object)
        for (dy, dx), c in t:
            want = want + np.roll(img, (-dy, -dx), axis=(1, 2)).astype(object) * c
        got = s.a[reg]
        inner = (slice(None), slice(m, size - m), slice(m, size - m))
        if not np.array_equal(np.asarray(got[inner], dtype=object), want[inner]):
            raise KernelError("internal: a compiled program does not compute its kernel (please report)")
