r"""The tensor stage of the code generator: batched programs over indexed arrays.

A :class:`TensorProgram` is the indexed-array counterpart of :class:`~derive.codegen.Program`:
ordered assignments ``name[indices] <- expr`` over arrays (``sympy.Indexed``), with named array
inputs and outputs. It states, for example, the self-attention velocity
$\dot x_i=\mathbf P_{x_i}\sum_j\operatorname{softmax}_j(\beta\langle Qx_i,Kx_j\rangle)Vx_j$
(token dynamics) once, in SymPy, for every batch size, token count and dimension.

:func:`generate_tensor` lowers it to Python source over ``xp`` (NumPy or CuPy), returning the
same :class:`~derive.codegen.Kernel` type as :func:`~derive.codegen.generate`:

* a one-index contraction becomes ``matmul`` where the index pattern allows (BLAS), else
  ``einsum``;
* :class:`Softmax` is lowered to the max-shifted form
  $e^{L_j-m}/\sum_k e^{L_k-m}$, $m=\max_kL_k$ (masked entries set to $-\infty$ first);
* elementwise formulas are printed by the project's :class:`~derive.codegen.XpPrinter`.

**Buffer reuse (fusion).** A liveness pass knows, for every statement, which temporaries are
read for the last time. When a statement is elementwise in one such temporary ``T`` with the
statement's own index order (``L = beta*S``, ``W = exp(L - s)/n``, ``v = U - R*X``) or is a
softmax of it, it is computed *in place* in ``T``'s buffer (``T *= ...``, ``xp.exp(T, out=T)``)
and ``name`` becomes an alias of it. The softmax over a row is then max-shifted and normalised
in place: the self-attention velocity holds one $B\times n\times n$ array, not four. Inputs are
never written to.

:func:`unroll` writes the same program at fixed small shapes as scalar SymPy expressions
(softmax by its definition, no shift; sums explicit): :func:`unrolled_program` turns that into
an ordinary :class:`~derive.codegen.Program`, printed for mpmath -- the 50-digit check of a tensor
kernel (:meth:`derive.model.Model.verify_kernels`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import sympy as sp

from .kernel import CODEGEN_VERSION, Kernel, Program
from .printer import XpPrinter, xp_imports

__all__ = ["TensorProgram", "Softmax", "generate_tensor", "unroll", "unrolled_program",
           "tensor_sum", "TENSOR_VERSION", "verify_tensor_kernel", "small_shapes"]

#: Bump when the tensor lowering changes the source it produces (part of every key).
TENSOR_VERSION = "3"


class Softmax(sp.Function):
    r"""$\operatorname{softmax}_j(L)=e^{L_j}/\sum_k e^{L_k}$, unevaluated; args ``(L, j)`` or
    ``(L, j, mask)`` (mask $\in\{0,1\}$ multiplies numerator and denominator terms).

    :func:`generate_tensor` lowers it to $e^{L_j-m}/\sum_k e^{L_k-m}$, $m=\max_kL_k$ (masked
    entries set to $-\infty$ first), in place; :func:`unroll` uses the definition itself.
    """

    @classmethod
    def eval(cls, *args):  # noqa: D102 - stays unevaluated
        return None

    def _latex(self, printer) -> str:
        return r"\operatorname{softmax}_{%s}\left(%s\right)" % (
            printer._print(self.args[1]), printer._print(self.args[0]))


def tensor_sum(expr: sp.Expr, k: sp.Symbol, size: sp.Symbol) -> sp.Sum:
    """$\\sum_{k=0}^{size-1}$ expr (the only reduction a statement may contain)."""
    return sp.Sum(expr, (k, 0, size - 1))


@dataclass(frozen=True)
class TensorProgram:
    """Ordered assignments ``name[indices] <- expr`` over indexed arrays.

    ``inputs``: (name, rank); ``sizes``: (size symbol, input name, axis) bound from shapes;
    ``statements``: (name, index symbols, expr). An expr is one of: a ``Sum`` over one index
    whose summand is a product of ``Indexed`` factors and index-free scalars (-> matmul or
    einsum); a :class:`Softmax` over one index; or an elementwise expression of ``Indexed``
    factors, broadcast by index name.
    """

    name: str
    inputs: tuple[tuple[str, int], ...]
    sizes: tuple[tuple[sp.Symbol, str, int], ...]
    statements: tuple[tuple[str, tuple[sp.Symbol, ...], sp.Expr], ...]
    outputs: tuple[str, ...]
    doc: str = ""
    #: how :func:`verify_tensor_kernel` draws an input: (name, kind), kind "unit_rows" (rows of
    #: unit norm along the last axis) or "causal_mask" (lower-triangular ones); else uniform
    input_kinds: tuple[tuple[str, str], ...] = ()

    def key(self) -> str:
        """SHA-256 of the code-generator versions, the signature and every statement's ``srepr``."""
        h = hashlib.sha256()
        h.update(f"tensor {CODEGEN_VERSION} {TENSOR_VERSION} xp\0".encode())
        h.update(repr((self.name, self.inputs, [(s.name, n, a) for s, n, a in self.sizes],
                       self.outputs)).encode())
        for name, idx, expr in self.statements:
            h.update(f"{name}{[s.name for s in idx]}={sp.srepr(expr)}".encode())
        return h.hexdigest()


# ----------------------------------------------------------------------------- printing helpers
def _indexed(expr: sp.Basic) -> list[sp.Indexed]:
    return sorted(expr.atoms(sp.Indexed), key=sp.default_sort_key)


def _view(name: str, usage: tuple[sp.Symbol, ...], out: tuple[sp.Symbol, ...]) -> str:
    """Source of the view of tensor ``name`` (axes labelled ``usage``) broadcast to ``out``."""
    missing = [s for s in usage if s not in out]
    if missing:
        raise ValueError(f"index {missing} of {name} is neither an output index nor summed")
    perm = sorted(range(len(usage)), key=lambda ax: out.index(usage[ax]))
    src = name if perm == list(range(len(usage))) else f"xp.transpose({name}, {tuple(perm)})"
    present = {usage[ax] for ax in perm}
    if len(present) == len(out):
        return src
    sl = ", ".join(":" if s in present else "None" for s in out)
    return f"{src}[{sl}]"


def _elementwise(expr: sp.Expr, out: tuple[sp.Symbol, ...]) -> str:
    names: dict[sp.Symbol, str] = {}
    repl: dict[sp.Basic, sp.Symbol] = {}
    for k, ix in enumerate(_indexed(expr)):
        s = sp.Symbol(f"_ix{k}")
        repl[ix] = s
        names[s] = _view(str(ix.base.label), tuple(ix.indices), out)
    e = expr.xreplace(repl)
    if e.atoms(sp.Indexed):
        raise ValueError(f"could not replace every indexed factor of {expr}")
    return XpPrinter(names).doprint(e)


#: elementwise functions applied in place (``xp.<ufunc>(T, out=T)``)
_UFUNCS = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tanh: "tanh",
           sp.sqrt: "sqrt"}


def _inplace(expr: sp.Expr, tix: sp.Indexed, buf: str, out: tuple[sp.Symbol, ...]) -> list[str] | None:
    """Statements turning buffer ``buf`` (holding ``tix``) into ``expr`` in place, or None when
    ``expr`` is not a chain of ``+``, ``*``, integer powers and unary ufuncs around ``tix``."""
    if expr == tix:
        return []
    if isinstance(expr, (sp.Add, sp.Mul)):
        inner = [a for a in expr.args if a.has(tix)]
        if len(inner) != 1:
            return None
        rest = expr.func(*[a for a in expr.args if a is not inner[0]])
        sub = _inplace(inner[0], tix, buf, out)
        if sub is None:
            return None
        if isinstance(expr, sp.Add):
            return sub + [f"{buf} += {_elementwise(rest, out)}"]
        # one factor at a time: no temporary of the full shape for ``mask/n``
        lines = sub
        others = [a for a in expr.args if a is not inner[0]]
        nums = [a for a in others if not a.atoms(sp.Indexed)]
        arrs = [a for a in others if a.atoms(sp.Indexed)]
        for f in arrs:
            if f.is_Pow and f.exp == -1:
                lines.append(f"{buf} /= {_elementwise(f.base, out)}")
            else:
                lines.append(f"{buf} *= {_elementwise(f, out)}")
        if nums:
            c = sp.Mul(*nums)
            if c.is_Pow and c.exp == -1:
                lines.append(f"{buf} /= {_elementwise(c.base, out)}")
            else:
                lines.append(f"{buf} *= {_elementwise(c, out)}")
        return lines
    if isinstance(expr, sp.Pow) and expr.base.has(tix) and not expr.exp.has(tix):
        sub = _inplace(expr.base, tix, buf, out)
        if sub is None:
            return None
        if expr.exp == -1:
            return sub + [f"xp.reciprocal({buf}, out={buf})"]
        if expr.exp == 2:
            return sub + [f"xp.multiply({buf}, {buf}, out={buf})"]
        if expr.exp == sp.Rational(1, 2):
            return sub + [f"xp.sqrt({buf}, out={buf})"]
        return None
    if type(expr) in _UFUNCS and len(expr.args) == 1:
        sub = _inplace(expr.args[0], tix, buf, out)
        if sub is None:
            return None
        return sub + [f"xp.{_UFUNCS[type(expr)]}({buf}, out={buf})"]
    return None


def _dead_operand(expr: sp.Expr, out: tuple[sp.Symbol, ...], dying: set[str]) -> sp.Indexed | None:
    """An ``Indexed`` of ``expr`` whose buffer can be overwritten by this statement: a temporary
    read here for the last time, used once, with exactly the statement's index order."""
    for ix in _indexed(expr):
        nm = str(ix.base.label)
        if nm in dying and tuple(ix.indices) == tuple(out) and expr.count(ix) == 1:
            return ix
    return None


def _statement(name: str, out: tuple[sp.Symbol, ...], expr: sp.Expr,
               dying: set[str]) -> tuple[list[str], bool]:
    """Source lines of one statement and whether ``name`` then holds a buffer of its own
    (False: a view of an input). ``dying``: owned temporaries read here for the last time."""
    if isinstance(expr, Softmax):
        inner, k = expr.args[0], expr.args[1]
        ax = out.index(k)
        tix = _dead_operand(inner, out, dying)
        steps = _inplace(inner, tix, name, out) if tix is not None else None
        if steps is None:
            lines = [f"{name} = xp.array({_elementwise(inner, out)}, dtype=xp.float64, copy=True)"]
        else:
            lines = [f"{name} = {tix.base.label}"] + steps
        if len(expr.args) > 2:
            lines.append(f"xp.copyto({name}, -xp.inf, where=xp.logical_not("
                         f"{_elementwise(expr.args[2], out)} > 0))")
        lines += [f"{name} -= xp.max({name}, axis={ax}, keepdims=True)",
                  f"xp.exp({name}, out={name})",
                  f"{name} /= xp.sum({name}, axis={ax}, keepdims=True)"]
        return lines, True
    if isinstance(expr, sp.Sum):
        if len(expr.limits) != 1:
            raise ValueError("a Sum must run over one index; split it into statements")
        summand, (k, _lo, _hi) = expr.function, expr.limits[0]
        scal, factors = [], []
        for f in sp.Mul.make_args(summand):
            (factors if isinstance(f, sp.Indexed) else scal).append(f)
        full = tuple(out) + (k,)
        if any(f.atoms(sp.Indexed) for f in scal):  # general summand: elementwise, then sum
            return [f"{name} = xp.sum({_elementwise(summand, full)}, axis={len(out)})"], True
        tix = _dead_operand(summand, full, dying)  # sum_k T[.., k] * rest: multiply T in place
        if tix is not None and len(factors) >= 2:
            steps = _inplace(summand, tix, str(tix.base.label), full)
            if steps is not None:
                return steps + [f"{name} = xp.sum({tix.base.label}, axis={len(out)})"], True
        code = _contraction(factors, k, out)
        if scal:
            code = f"({XpPrinter({}).doprint(sp.Mul(*scal))})*{code}"
        return [f"{name} = {code}"], True
    tix = _dead_operand(expr, out, dying)
    if tix is not None:
        steps = _inplace(expr, tix, name, out)
        if steps is not None:
            return [f"{name} = {tix.base.label}"] + steps, True
    owned = not isinstance(expr, sp.Indexed)
    return [f"{name} = {_elementwise(expr, out)}"], owned


def _arranged(f: sp.Indexed, order: list[sp.Symbol]) -> str:
    """Source of tensor ``f`` with its axes permuted into ``order`` (its index symbols)."""
    idx = list(f.indices)
    perm = tuple(idx.index(s) for s in order)
    name = str(f.base.label)
    return name if perm == tuple(range(len(idx))) else f"xp.transpose({name}, {perm})"


def _contraction(factors: list[sp.Indexed], k: sp.Symbol, out: tuple[sp.Symbol, ...]) -> str:
    """A one-index contraction of Indexed factors, lowered to BLAS where the pattern allows:

    * two factors, neither with a free index (``sum_k A[..k] B[..k]``): product, then sum;
    * two factors with shared (batch) indices and at most one free index each: ``matmul``;
    * a matrix ``M[x, k]`` against a tensor without ``x``: ``T @ M.T`` (broadcast);
    * otherwise ``einsum`` (also the one-factor reduction).
    """
    letters = "".join(s.name for s in out)
    spec = ",".join("".join(s.name for s in f.indices) for f in factors) + "->" + letters
    einsum = f"xp.einsum({spec!r}, {', '.join(str(f.base.label) for f in factors)})"
    if len(factors) != 2:
        return einsum
    first = _contraction2(factors[0], factors[1], k, out)
    if first is None:
        return einsum
    if "xp.transpose(xp.matmul" in first:  # try the other operand order
        second = _contraction2(factors[1], factors[0], k, out)
        if second is not None and "xp.transpose(xp.matmul" not in second:
            return second
    return first


def _contraction2(f1: sp.Indexed, f2: sp.Indexed, k: sp.Symbol,
                  out: tuple[sp.Symbol, ...]) -> str | None:
    i1, i2 = list(f1.indices), list(f2.indices)
    if k not in i1 or k not in i2 or len(set(i1)) != len(i1) or len(set(i2)) != len(i2):
        return None
    shared = [s for s in out if s in i1 and s in i2]
    free1 = [s for s in i1 if s not in i2]
    free2 = [s for s in i2 if s not in i1]
    if not free1 and not free2 and len(shared) == len(i1) - 1:
        lhs = _arranged(f1, shared + [k])
        rhs = _arranged(f2, shared + [k])
        res_order = shared
        code = f"xp.sum({lhs}*{rhs}, axis=-1)"
    elif len(free1) <= 1 and len(free2) <= 1 and len(shared) == len(i1) - 1 - len(free1):
        A = _arranged(f1, shared + free1 + [k]) + ("" if free1 else "[..., None, :]")
        B = _arranged(f2, shared + [k] + free2) + ("" if free2 else "[..., :, None]")
        code = f"xp.matmul({A}, {B})"
        if not free1 and not free2:
            code += "[..., 0, 0]"
        elif not free1:
            code += "[..., 0, :]"
        elif not free2:
            code += "[..., 0]"
        res_order = shared + free1 + free2
    else:
        mat, ten = (f1, f2) if len(i1) == 2 and not shared else (f2, f1) if (
            len(i2) == 2 and not shared) else (None, None)
        if mat is None:
            return None
        x = [s for s in mat.indices if s != k][0]
        rest = [s for s in ten.indices if s != k]
        code = f"xp.matmul({_arranged(ten, rest + [k])}, {_arranged(mat, [k, x])})"
        res_order = rest + [x]
    if res_order != list(out):
        code = f"xp.transpose({code}, {tuple(res_order.index(s) for s in out)})"
    return code


def _last_use(tp: TensorProgram) -> dict[str, int]:
    """Index of the last statement reading each temporary (outputs: never dead)."""
    last: dict[str, int] = {}
    for k, (_name, _idx, expr) in enumerate(tp.statements):
        for ix in expr.atoms(sp.Indexed):
            last[str(ix.base.label)] = k
    for o in tp.outputs:
        last[o] = len(tp.statements)
    for name, _idx, expr in tp.statements:  # a bare view keeps its source alive
        if isinstance(expr, sp.Indexed) and str(expr.base.label) != name:
            last[str(expr.base.label)] = len(tp.statements)
    return last


def generate_tensor(tp: TensorProgram) -> Kernel:
    """Python source of ``tp`` over ``xp`` (NumPy/CuPy): ``kernel(xp, special, *inputs) -> dict``.

    Statements reuse the buffers of temporaries read for the last time (see the module
    docstring); inputs are never written to."""
    args = ", ".join(n for n, _ in tp.inputs)
    key = tp.key()
    body = [f"def {tp.name}(xp, special, {args}):", f'    """{tp.doc}"""']
    for sym, src, ax in tp.sizes:
        body.append(f"    {sym.name} = {src}.shape[{ax}]")
    last = _last_use(tp)
    owned: set[str] = set()
    for k, (name, idx, expr) in enumerate(tp.statements):
        dying = {nm for nm in owned if last.get(nm, -1) == k}
        body.append(f"    # {name}[{', '.join(s.name for s in idx)}] = {sp.sstr(expr)}")
        lines, own = _statement(name, idx, expr, dying)
        body += ["    " + ln for ln in lines]
        if own:
            owned.add(name)
    body.append("    return {" + ", ".join(f"{o!r}: {o}" for o in tp.outputs) + "}")
    header = ("# Generated by attention-theory (derive.codegen.tensor), target: xp. Do not edit:\n"
              "# regenerate from the SymPy source instead.\n"
              f"# expressions sha256: {key}\n"
              f"# codegen version: {CODEGEN_VERSION}, tensor stage {TENSOR_VERSION}\n\n")
    imports = xp_imports(expr for _, _, expr in tp.statements)
    src = header + "".join(ln + "\n" for ln in imports) + ("\n" if imports else "") + "\n".join(body) + "\n"
    return Kernel(tp.name, "xp", tuple(n for n, _ in tp.inputs), tp.outputs, key, src)


# ----------------------------------------------------------------------------- the 50-digit check
def unroll(tp: TensorProgram, shapes: Mapping[str, tuple[int, ...]]) -> tuple[
        dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Scalar SymPy expressions of ``tp`` at fixed shapes: inputs become arrays of symbols
    ``name_i_j..``, ``Softmax`` its definition (no shift), sums explicit. Returns
    (input symbols, output expressions), each a dict of object arrays."""
    sizes = {sym: shapes[src][ax] for sym, src, ax in tp.sizes}
    tens: dict[str, np.ndarray] = {}
    ins: dict[str, np.ndarray] = {}
    for name, _rank in tp.inputs:
        arr = np.empty(shapes[name], dtype=object)
        for idx in np.ndindex(*shapes[name]):
            arr[idx] = sp.Symbol(name + "".join(f"_{k}" for k in idx), real=True)
        tens[name] = ins[name] = arr

    def ev(e: sp.Basic, env: dict) -> sp.Basic:
        if isinstance(e, sp.Indexed):
            return tens[str(e.base.label)][tuple(int(env[s]) for s in e.indices)]
        if isinstance(e, sp.Sum):
            summand, (k, _lo, _hi) = e.function, e.limits[0]
            return sp.Add(*[ev(summand, {**env, k: v}) for v in range(dims[k])])
        if isinstance(e, Softmax):
            L, k = e.args[0], e.args[1]
            mask = e.args[2] if len(e.args) > 2 else sp.Integer(1)
            terms = [sp.exp(ev(L, {**env, k: v})) * ev(mask, {**env, k: v})
                     for v in range(dims[k])]
            return terms[int(env[k])] / sp.Add(*terms)
        if e in sizes:
            return sp.Integer(sizes[e])
        if not e.args or isinstance(e, (sp.Symbol, sp.Number)):
            return e
        return e.func(*[ev(a, env) for a in e.args])

    dims: dict[sp.Symbol, int] = {}
    for name, idx, expr in tp.statements:
        for ix in _indexed(expr):  # index ranges: from the first usage of each index letter
            arr = tens[str(ix.base.label)]
            for ax, s in enumerate(ix.indices):
                dims.setdefault(s, arr.shape[ax])
        for s in idx:
            dims.setdefault(s, 1)
        shape = tuple(dims[s] for s in idx)
        arr = np.empty(shape, dtype=object)
        for pos in np.ndindex(*shape):
            arr[pos] = ev(expr, dict(zip(idx, pos)))
        tens[name] = arr
    return ins, {o: tens[o] for o in tp.outputs}


def unrolled_program(tp: TensorProgram, shapes: Mapping[str, tuple[int, ...]]) -> Program:
    """:func:`unroll` as an ordinary :class:`Program` (inputs: every input entry, row-major in
    the order of ``tp.inputs``; outputs ``<out>_<flat index>``), for the mpmath printer."""
    ins, outs = unroll(tp, shapes)
    syms = [s for nm, _ in tp.inputs for s in ins[nm].ravel()]
    assigns, osyms = [], []
    for o in tp.outputs:
        for k, e in enumerate(np.asarray(outs[o]).ravel()):
            s = sp.Symbol(f"{o}_{k}")
            assigns.append((s, e))
            osyms.append(s)
    return Program(f"{tp.name}_unrolled", tuple(syms), tuple(assigns), tuple(osyms),
                   doc=f"{tp.name} unrolled at shapes {dict(shapes)} (softmax by its definition)")


def small_shapes(tp: TensorProgram, batch: int = 2, size: int = 3) -> dict[str, tuple[int, ...]]:
    """Input shapes for the 50-digit check: every size symbol ``size`` (the token count one
    more than the others), every other index (batch) ``batch``."""
    bound: dict[sp.Symbol, sp.Symbol] = {}  # index symbol -> size symbol
    axes = {(src, ax): sym for sym, src, ax in tp.sizes}
    usage: dict[str, tuple[sp.Symbol, ...]] = {}
    for _name, _idx, expr in tp.statements:
        for ix in expr.atoms(sp.Indexed):
            nm = str(ix.base.label)
            usage.setdefault(nm, tuple(ix.indices))
            for ax, s in enumerate(ix.indices):
                if (nm, ax) in axes:
                    bound.setdefault(s, axes[(nm, ax)])
        for e in expr.atoms(sp.Sum):
            for k, _lo, hi in e.limits:
                for sym in hi.free_symbols:
                    bound.setdefault(k, sym)
    values = {sym: size + k for k, sym in enumerate(dict.fromkeys(s for s, _, _ in tp.sizes))}
    return {nm: tuple(values[bound[s]] if s in bound else batch for s in usage[nm])
            for nm, _rank in tp.inputs}


def verify_tensor_kernel(tp: TensorProgram, kernel: Kernel, rng: np.random.Generator, dps: int = 50,
                         ranges: Mapping[str, tuple[float, float]] = {}) -> float:
    """Fewest agreeing significant digits of the generated float64 ``kernel`` of ``tp`` against
    its :func:`unrolled_program` (softmax by its definition) printed for mpmath at ``dps``
    digits, at random inputs of :func:`small_shapes` (outputs below 1e-12 skipped)."""
    import mpmath
    import scipy.special

    from numerics.highprec import agreeing_digits

    from .kernel import generate

    shapes = small_shapes(tp)
    kinds = dict(tp.input_kinds)
    vals: dict[str, np.ndarray] = {}
    for nm, _rank in tp.inputs:
        shp = shapes[nm]
        if kinds.get(nm) == "causal_mask":
            vals[nm] = np.tril(np.ones(shp))
            continue
        v = rng.uniform(*ranges.get(nm, (-1.0, 1.0)), size=shp)
        if kinds.get(nm) == "unit_rows":
            v /= np.linalg.norm(v, axis=-1, keepdims=True)
        vals[nm] = v
    got = kernel(np, scipy.special, *vals.values())
    km = generate(unrolled_program(tp, shapes), "mpmath")
    worst = 17.0
    with mpmath.workdps(dps):
        ref = km(mpmath.mp, *(mpmath.mpf(float(x)) for nm, _ in tp.inputs for x in vals[nm].ravel()))
        for o in tp.outputs:
            flat = np.asarray(got[o], dtype=float).ravel()
            for k, g in enumerate(flat):
                r = ref[f"{o}_{k}"]
                if abs(r) > 1e-12:
                    worst = min(worst, float(agreeing_digits(g, r)))
    return worst
