"""AST helpers of the modeling reader: names, constants and the expert head's dataflow, all read-only.

Nothing here evaluates code: expressions are followed through local assignments (`resolve`) and
matched against a few shapes; `ExpertFlow` maps the expert head's leaf slices and FFN outputs onto the
official-order output it returns (leaf order, which sub-module computes which parent, the root's
input order).
"""

from __future__ import annotations

import ast
import copy
from typing import Any

from humanaes_core.schema import BY_KEY, LEAF_KEYS, OFFICIAL_ORDER


def dotted(node: ast.AST) -> str:
    """`a.b.c` for an attribute chain (subscripts and calls shown as [] and ())."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Subscript):
        return f"{dotted(node.value)}[]"
    if isinstance(node, ast.Call):
        return f"{dotted(node.func)}()"
    return "?"


def as_int(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = as_int(node.operand)
        return None if inner is None else -inner
    return None


def is_sigmoid(call: ast.AST) -> bool:
    return isinstance(call, ast.Call) and dotted(call.func).rpartition(".")[2] == "sigmoid"


class ExpertFlow:
    """The expert head's dataflow: leaves → FFNs → the official-order output (leaf order, roles)."""

    def __init__(self, reader: Any, file: str, fn: ast.FunctionDef, env: dict) -> None:
        self.r, self.file, self.fn, self.env = reader, file, fn, env
        self.where = reader.at(file, fn)

    def sub_calls(self) -> dict[str, str]:
        """Local name -> sub-module attribute for `name = self.<sub>(...)` with an expert sub-module."""
        out = {}
        for node in ast.walk(self.fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                t, call = node.targets[0], strip_sigmoid(node.value)
                if (
                    isinstance(t, ast.Name)
                    and isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and dotted(call.func).startswith("self.")
                ):
                    out[t.id] = call.func.attr
        return out

    def read(self) -> None:
        subs = self.sub_calls()
        leaf = next((n for n, a in subs.items() if self._is_leaf_linear(a)), None)
        ret = next((n.value for n in ast.walk(self.fn) if isinstance(n, ast.Return) and n.value), None)
        if leaf is None or ret is None:
            return
        slots = self.slots(resolve(ret, self.env), leaf, subs)
        if slots is None or len(slots) != len(OFFICIAL_ORDER):
            self.r.ev.puzzle("expert head output is not a cat/stack of 12 official-order scores", self.where)
            return
        order: dict[int, str] = {}
        role: dict[str, str] = {}
        for key, slot in zip(OFFICIAL_ORDER, slots, strict=True):
            if isinstance(slot, int):
                order[slot] = key
            else:
                role[slot] = key
        if sorted(order) != list(range(len(LEAF_KEYS))) or set(order.values()) != set(LEAF_KEYS):
            self.r.ev.puzzle("expert head leaves do not map one to one onto A B C D E G H I K", self.where)
            return
        self.r.ev.found("expert_leaf_order", [order[i] for i in range(len(LEAF_KEYS))], self.where)
        self.r.ev.found("expert_submodules", {role[n]: subs[n] for n in role}, self.where)
        overall = next((n for n, k in role.items() if k == "overall"), None)
        self._l_inputs(overall, leaf, subs, order, role)
        if any(is_sigmoid(n) for n in ast.walk(self.fn)):
            self.r.ev.found("expert_activation", "sigmoid", self.where)

    def _is_leaf_linear(self, attr: str) -> bool:
        defined = self.r.modules.get(attr)
        layers = self.r.layers(defined[1]) if defined is not None else []
        return bool(layers) and layers[0].startswith("Linear(") and layers[0].endswith(f"→{len(LEAF_KEYS)})")

    def slots(self, node: ast.AST, leaf: str, subs: dict[str, str], depth: int = 0) -> list[int | str] | None:
        """Expand an output expression into per-score slots: leaf index (int) or FFN output name."""
        node = strip_sigmoid(node)
        if depth > 8:
            return None
        if isinstance(node, ast.Name) and node.id == leaf:
            return list(range(len(LEAF_KEYS)))
        if isinstance(node, ast.Call) and dotted(node.func).rpartition(".")[2] in ("cat", "stack"):
            node = node.args[0] if node.args else node
        if isinstance(node, ast.List | ast.Tuple):
            out: list[int | str] = []
            for item in node.elts:
                part = self.slots(item, leaf, subs, depth + 1)
                if part is None:
                    return None
                out += part
            return out
        if isinstance(node, ast.Name) and node.id in subs and node.id != leaf:
            return [node.id]
        if isinstance(node, ast.Name) and node.id in self.env:
            return self.slots(self.env[node.id], leaf, subs, depth + 1)
        return leaf_slice(node, leaf)

    def _l_inputs(self, overall: str | None, leaf: str, subs: dict, order: dict, role: dict) -> None:
        call = next(
            (
                n.value
                for n in ast.walk(self.fn)
                if isinstance(n, ast.Assign)
                and isinstance(n.targets[0], ast.Name)
                and n.targets[0].id == overall
                and isinstance(n.value, ast.Call)
            ),
            None,
        )
        call = strip_sigmoid(call) if call is not None else None
        ok = isinstance(call, ast.Call) and call.args
        slots = self.slots(call.args[0], leaf, subs) if ok else None  # type: ignore[union-attr]
        keys = [order[s] if isinstance(s, int) else role.get(s) for s in slots or []]
        if sorted(k or "" for k in keys) != sorted(BY_KEY["overall"].children):
            self.r.ev.puzzle("the expert root's inputs are not F, J and K", self.where)
            return
        self.r.ev.found("expert_l_inputs", keys, self.where)


def strip_sigmoid(node: ast.AST) -> ast.AST:
    while is_sigmoid(node) and node.args:  # type: ignore[union-attr]
        node = node.args[0]  # type: ignore[union-attr]
    return node


def leaf_slice(node: ast.AST, leaf: str) -> list[int | str] | None:
    """`leaf[:, a:b]`, `leaf[:, i]`, `leaf[..., i:i+1]` → leaf indices; anything else None."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == leaf):
        return None
    index = node.slice.elts[-1] if isinstance(node.slice, ast.Tuple) else node.slice
    if isinstance(index, ast.Slice):
        lo = 0 if index.lower is None else as_int(index.lower)
        hi = len(LEAF_KEYS) if index.upper is None else as_int(index.upper)
        return None if lo is None or hi is None or index.step is not None else list(range(lo, hi))
    i = as_int(index)
    return None if i is None else [i % len(LEAF_KEYS)]


def assignments(fn: ast.FunctionDef) -> dict[str, ast.AST]:
    """Local name -> the expression last assigned to it (simple `name = expr` only)."""
    env: dict[str, ast.AST] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            env[node.targets[0].id] = node.value
    return env


def resolve(node: ast.AST, env: dict[str, ast.AST], deep: bool = False, depth: int = 0) -> ast.AST:
    """Follow a name to its assignment (and with `deep`, names inside the expression) a few levels."""
    if depth > 5:
        return node
    if isinstance(node, ast.Name) and node.id in env and env[node.id] is not node:
        return resolve(env[node.id], env, deep, depth + 1)
    if not deep:
        return node

    class _Sub(ast.NodeTransformer):
        def visit_Name(self, n: ast.Name) -> ast.AST:
            return resolve(n, env, True, depth + 1) if n.id in env else n

    return _Sub().visit(copy.deepcopy(node))


def returned(fn: ast.FunctionDef, index: int | None) -> ast.AST | None:
    ret = next((n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None), None)
    if isinstance(ret, ast.Tuple) and index is not None and -len(ret.elts) <= index < len(ret.elts):
        return ret.elts[index]
    return ret if index is None or not isinstance(ret, ast.Tuple) else None


def unpacked_from(node: ast.AST, fn: ast.FunctionDef) -> tuple[ast.Call, int] | None:
    """For a name bound by `a, b = self.method(...)`: the call and the name's position."""
    if not isinstance(node, ast.Name):
        return None
    for n in ast.walk(fn):
        if (
            isinstance(n, ast.Assign)
            and isinstance(n.targets[0], ast.Tuple)
            and isinstance(n.value, ast.Call)
        ):
            names = [e.id if isinstance(e, ast.Name) else None for e in n.targets[0].elts]
            if node.id in names:
                return n.value, names.index(node.id)
    return None
