"""Read the release's own modeling code as text: the open fields it settles, never running it.

A hub snapshot of HumanAesExpert carries ``modeling_internvl_chat.py`` and friends, the only place the
heads' definitions and the prompts ``score()``, ``run_metavoter()`` and ``expert_score()`` build are
written down. `read_modeling` parses them with `ast` (no import, no exec, no eval: a payload in them
never runs) and extracts what it recognises:

* head definitions: ``self.<name> = nn.Linear(...)``/``nn.Sequential(...)``/a class of the file, for
  attributes named like the released tensors (``*regression*``, ``*expert*``, ``*voter*``);
* what feeds each head: ``hidden_states[-1]``/``last_hidden_state``/an explicit ``.norm(...)`` (the
  final norm), a pre-hook on the final norm (the last layer before it), the sequence index ``-1`` on
  a query that ends in the answer prefix or not, or a position found from ``<|im_end|>``;
* activations around a head call (``torch.sigmoid(head(h))``, ``.sigmoid()``, a trailing
  ``nn.Sigmoid()``), the regression width (its Linear's outputs), the expert head's dataflow (which
  leaf slice feeds which FFN, the order its root reads, the official-order output), the MetaVoter's
  input order and the LM score's normalisation;
* strings: the system message, the questions, the answer prefix, the newline after ``</img>``, the
  level words (with or without their space), and where the MetaVoter's weights are loaded from.

Whatever it does not understand is named in `ModelingEvidence.not_understood` and the field keeps its
default; evidence beats defaults only where it is unambiguous.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from humanaes_core.importer.modeling_flow import (
    ExpertFlow,
    as_int,
    assignments,
    dotted,
    is_sigmoid,
    resolve,
    returned,
    unpacked_from,
)
from humanaes_core.model import OpenFields, PromptConfig
from humanaes_core.schema import LEVELS

MAX_FILE_BYTES = 4 << 20
MAX_FILES = 32
_ACTIVATIONS = {"GELU": "gelu", "ReLU": "relu", "SiLU": "silu", "Tanh": "tanh"}
_HEAD_KINDS = (("voter", "metavoter"), ("regression", "regression"), ("expert", "expert"))
_PROMPT_METHODS = ("score", "run_metavoter", "expert_score")
_OPEN = set(OpenFields.names())


def _templates() -> dict[str, tuple[str, int]]:
    """Each known chat template's system message and newlines after ``</img>`` (from PromptConfig)."""
    out = {}
    for name in OpenFields.alternatives("template"):
        prompt = PromptConfig(template=name)
        out[name] = (str(prompt.system_message), int(prompt.query_newlines or 1))
    return out


@dataclass
class ModelingEvidence:
    """What the modeling files settle: per field its value and where it was read."""

    files: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)  # attribute -> what it is
    metavoter: list[str] = field(default_factory=list)  # where its weights live, how it is built
    not_understood: list[str] = field(default_factory=list)
    _seen: dict[str, list[tuple[Any, str]]] = field(default_factory=dict, repr=False)

    def found(self, name: str, value: Any, where: str) -> None:
        self._seen.setdefault(name, []).append((value, where))

    def puzzle(self, what: str, where: str) -> None:
        line = f"{where}: {what}"
        if line not in self.not_understood:
            self.not_understood.append(line)

    def settle(self) -> None:
        """One value per field; disagreeing findings are named and the default kept."""
        for name, seen in self._seen.items():
            values = {repr(v) for v, _ in seen}
            if len(values) == 1:
                self.values[name], self.where[name] = seen[0][0], seen[0][1]
            else:
                found = "; ".join(f"{v!r} at {w}" for v, w in seen)
                self.puzzle(f"conflicting evidence for {name} ({found}); the default is kept", seen[0][1])

    def open_fields(self, base: OpenFields | None = None) -> OpenFields:
        """`base` (default: the defaults) with every field the code settles, its evidence recorded."""
        base = base or OpenFields()
        changes = {k: v for k, v in self.values.items() if k in _OPEN}
        evidence = dict(base.evidence) | {k: self.where[k] for k in changes}
        if "template" in self.values:
            evidence["template"] = self.where["template"]
        return replace(base, **changes, evidence=evidence)

    def prompt(self, base: PromptConfig) -> PromptConfig:
        """`base` with the template, question and answer prefix the code builds."""
        changes: dict[str, Any] = {}
        if "template" in self.values:
            changes |= {"template": self.values["template"], "system_message": None, "query_newlines": None}
        if "answer_prefix" in self.values:
            changes["overall_answer_prefix"] = self.values["answer_prefix"]
        question = self.values.get("question")
        if question in base.overall_questions:
            changes["question_index"] = base.overall_questions.index(question)
        elif question is not None:
            self.puzzle(
                f"score() asks {question!r}, not one of the checkpoint's questions", self.where["question"]
            )
        return replace(base, **changes)

    def summary(self) -> dict:
        return {
            "files": self.files,
            "read": {k: {"value": self.values[k], "where": self.where[k]} for k in sorted(self.values)},
            "heads": self.heads,
            "metavoter": self.metavoter,
            "not_understood": self.not_understood,
        }


def read_modeling(source_dir: str | Path) -> ModelingEvidence:
    """Parse the snapshot's ``modeling_*.py`` and ``configuration_*.py`` (never imported) for evidence."""
    root = Path(source_dir)
    ev = ModelingEvidence()
    trees: list[tuple[str, ast.Module]] = []
    paths = sorted(p for pattern in ("modeling_*.py", "configuration_*.py") for p in root.glob(pattern))
    for path in paths[:MAX_FILES]:
        tree = _parse(path, ev)
        if tree is not None:
            ev.files.append(path.name)
            trees.append((path.name, tree))
    if len(paths) > MAX_FILES:
        ev.puzzle(f"{len(paths) - MAX_FILES} more modeling files not read", root.name)
    if not trees:
        ev.puzzle("no readable modeling_*.py: every open field is assumed", root.name)
        return ev
    try:
        _Reader(trees, ev).run()
    except RecursionError:
        ev.puzzle("nested too deeply to follow; the fields not read yet are assumed", ", ".join(ev.files))
    ev.settle()
    return ev


def _parse(path: Path, ev: ModelingEvidence) -> ast.Module | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            ev.puzzle("not a regular file under 4 MB; not read", path.name)
            return None
        return ast.parse(path.read_text(encoding="utf-8"), filename=path.name)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError, MemoryError) as e:
        ev.puzzle(f"cannot be parsed ({e.__class__.__name__}); not read", path.name)
        return None


def _kind(attr: str) -> str | None:
    low = attr.lower()
    return next((kind for word, kind in _HEAD_KINDS if word in low), None)


class _Reader:
    """One pass over the parsed files; every method reads, none evaluates."""

    def __init__(self, trees: list[tuple[str, ast.Module]], ev: ModelingEvidence) -> None:
        self.trees, self.ev = trees, ev
        self.consts: dict[str, Any] = {}
        self.classes: dict[str, tuple[str, ast.ClassDef]] = {}
        self.methods: dict[str, tuple[str, ast.FunctionDef]] = {}
        self.modules: dict[str, tuple[str, ast.Call]] = {}  # self.<attr> = <call>
        for name, tree in trees:
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                    if isinstance(target, ast.Name):
                        value = self.const(node.value)
                        if value is not None:
                            self.consts[target.id] = value
                elif isinstance(node, ast.ClassDef):
                    self.classes[node.name] = (name, node)

    def at(self, file: str, node: ast.AST) -> str:
        return f"{file}:{getattr(node, 'lineno', 0)}"

    def const(self, node: ast.AST) -> Any:
        """A string, number or list/tuple of them, from literals, names and `+` only; None otherwise."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float):
            return node.value
        if isinstance(node, ast.Name):
            return self.consts.get(node.id)
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.const(e) for e in node.elts]
            return None if any(i is None for i in items) else items
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = self.const(node.left), self.const(node.right)
            if isinstance(a, str) and isinstance(b, str):
                return a + b
        return None

    def run(self) -> None:
        functions = []
        for file, cls in self.classes.values():
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef):
                    functions.append((file, fn, cls.name))
                    self.methods.setdefault(fn.name, (file, fn))
                    for node in ast.walk(fn):
                        self._module_def(file, node)
        head_classes = {
            dotted(call.func).rpartition(".")[2] for attr, (_, call) in self.modules.items() if _kind(attr)
        }
        for attr, (file, call) in self.modules.items():
            self._describe_head(attr, file, call)
        for file, fn, cls_name in functions:
            self._function(file, fn, inside_head=cls_name in head_classes)
        self._prompts()

    # --- definitions ------------------------------------------------------------------------------
    def _module_def(self, file: str, node: ast.AST) -> None:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.Call)):
            return
        target = node.targets[0]
        if isinstance(target, ast.Attribute) and dotted(target).startswith("self."):
            self.modules.setdefault(target.attr, (file, node.value))

    def layers(self, call: ast.Call) -> list[str]:
        """A module's layers as short names: Linear(a→b), GELU, Sigmoid, BatchNorm1d(h), Class(...)."""
        name = dotted(call.func).rpartition(".")[2]
        if name in ("Sequential", "ModuleList"):
            items = (
                call.args[0].elts
                if name == "ModuleList" and call.args and isinstance(call.args[0], ast.List)
                else call.args
            )
            return [x for item in items if isinstance(item, ast.Call) for x in self.layers(item)]
        if name == "Linear" and len(call.args) >= 2:
            outs = as_int(call.args[1])
            return [f"Linear({ast.unparse(call.args[0])}→{outs if outs is not None else '?'})"]
        if name in self.classes:
            inner = [k + ": " + " → ".join(v) for k, v in self._class_modules(name).items()]
            return [f"{name}({', '.join(inner)})"]
        return [name if not call.args else f"{name}({', '.join(ast.unparse(a) for a in call.args)})"]

    def _class_modules(self, cls: str) -> dict[str, list[str]]:
        _, node = self.classes[cls]
        found: dict[str, list[str]] = {}
        for fn in node.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                for stmt in ast.walk(fn):
                    if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
                        t = stmt.targets[0]
                        if isinstance(t, ast.Attribute) and dotted(t).startswith("self."):
                            found[t.attr] = self.layers(stmt.value)
        return found

    def _describe_head(self, attr: str, file: str, call: ast.Call) -> None:
        kind = _kind(attr)
        if kind is None:
            return
        layers = self.layers(call)
        self.ev.heads[attr] = " → ".join(layers)
        where = self.at(file, call)
        if kind == "regression":
            linears = [x for x in layers if x.startswith("Linear(")]
            width = linears[-1].rpartition("→")[2].rstrip(")") if linears else "?"
            if width in ("1", "12"):
                self.ev.found("regression_width", int(width), where)
            else:
                self.ev.puzzle(f"regression head {attr} = {self.ev.heads[attr]}: width not 1 or 12", where)
            if layers and layers[-1] == "Sigmoid":
                self.ev.found("regression_activation", "sigmoid", where)
        elif kind == "expert":
            self._expert_definition(attr, layers, where)
        elif kind == "metavoter":
            self.ev.metavoter.append(f"built at {where}: {self.ev.heads[attr]}")

    def _expert_definition(self, attr: str, layers: list[str], where: str) -> None:
        text = " ".join(layers)
        acts = {v for k, v in _ACTIVATIONS.items() if k in text.replace("Sigmoid", "")}
        if len(acts) == 1:
            self.ev.found("expert_ffn_activation", acts.pop(), where)
        elif acts:
            self.ev.puzzle(f"expert head {attr} mixes activations {sorted(acts)}", where)
        if "Sigmoid" in text:
            self.ev.found("expert_activation", "sigmoid", where)

    # --- uses -------------------------------------------------------------------------------------
    def head_calls(self, fn: ast.FunctionDef) -> Iterator[tuple[str, ast.Call]]:
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                attr = node.func.attr
                if attr in self.modules and _kind(attr) and dotted(node.func).startswith("self."):
                    yield attr, node

    def _function(self, file: str, fn: ast.FunctionDef, inside_head: bool) -> None:
        env = assignments(fn)
        parents = {child: node for node in ast.walk(fn) for child in ast.iter_child_nodes(node)}
        calls = list(self.head_calls(fn))
        for attr, call in calls:
            kind, where = _kind(attr), self.at(file, call)
            if kind in ("regression", "expert") and call.args and not inside_head:
                self._reading(fn, file, env, call.args[0], where)
            if kind == "regression" and self._sigmoid_around(call, parents, env, fn):
                self.ev.found("regression_activation", "sigmoid", where)
            if kind == "metavoter" and call.args:
                self._metavoter_inputs(file, fn, env, call.args[0], where)
        if fn.name == "forward" or len({a for a, _ in calls if _kind(a) == "expert"}) > 1:
            ExpertFlow(self, file, fn, env).read()
        for node in ast.walk(fn):
            self._loads(file, node, env)

    def _sigmoid_around(self, call: ast.Call, parents: dict, env: dict, fn: ast.FunctionDef) -> bool:
        up = parents.get(call)
        if is_sigmoid(up) or (isinstance(up, ast.Attribute) and up.attr == "sigmoid"):
            return True
        while isinstance(up, ast.Subscript):
            up = parents.get(up)
        if isinstance(up, ast.Assign) and isinstance(up.targets[0], ast.Name):
            name = up.targets[0].id
            return any(
                is_sigmoid(n) and any(isinstance(a, ast.Name) and a.id == name for a in n.args)
                for n in ast.walk(fn)
            )
        return False

    def _reading(self, fn: ast.FunctionDef, file: str, env: dict, arg: ast.AST, where: str) -> None:
        """Which hidden state and which position feed a head (its argument, through local names)."""
        expr = resolve(arg, env)
        if isinstance(expr, ast.Name) and expr.id in {a.arg for a in fn.args.args}:
            return  # a sub-module fed its caller's input (inside a head's own forward)
        text = ast.unparse(expr)
        hooks = [
            n
            for n in ast.walk(fn)
            if isinstance(n, ast.Call) and "norm.register_forward_pre_hook" in dotted(n.func)
        ]
        if hooks:
            self.ev.found("head_hidden", "last_layer", self.at(file, hooks[0]))
        elif "hidden_states[-1]" in text or "last_hidden_state" in text or ".norm(" in text:
            self.ev.found("head_hidden", "final_norm", where)
        else:
            self.ev.puzzle(f"head input {text!r}: which hidden state is not recognised", where)
        position = self._position(fn, env, expr)
        if position is None:
            self.ev.puzzle(f"head input {text!r}: which token is not recognised", where)
        elif position != "last_or_prefix":
            self.ev.found("head_position", position, where)
        elif fn.name != "expert_score":  # the 12-dimension question has no answer prefix
            prefixed = self._fed_prefix(fn, env, expr)
            self.ev.found("head_position", "answer_start" if prefixed else "last_prompt_token", where)

    def _position(self, fn: ast.FunctionDef, env: dict, expr: ast.AST) -> str | None:
        while isinstance(expr, ast.Call) and dotted(expr.func).endswith("norm"):
            expr = resolve(expr.args[0], env) if expr.args else expr
        if not isinstance(expr, ast.Subscript) or not isinstance(expr.slice, ast.Tuple):
            return None
        index = expr.slice.elts[1] if len(expr.slice.elts) >= 2 else None
        if index is None:
            return None
        if as_int(index) == -1:
            return "last_or_prefix"
        resolved = resolve(index, env, deep=True)
        names = [self.consts.get(n.id) for n in ast.walk(resolved) if isinstance(n, ast.Name)]
        if "<|im_end|>" in ast.unparse(resolved) or "<|im_end|>" in names:
            return "im_end"
        return None

    def _is_prefix(self, node: ast.AST) -> bool:
        value = self.const(node)
        return isinstance(value, str) and value.strip().startswith("The aesthetics")

    def _fed_prefix(self, fn: ast.FunctionDef, env: dict, expr: ast.AST) -> bool:
        """Whether the pass whose states feed `expr` ran a query ending in the answer prefix."""
        root = expr
        while isinstance(root, ast.Subscript | ast.Attribute | ast.Call):
            root = root.func if isinstance(root, ast.Call) else root.value
        call = env.get(root.id) if isinstance(root, ast.Name) else None
        if not isinstance(call, ast.Call):  # states captured otherwise: any pass with the prefix
            call = fn
        queries = {a.id for a in ast.walk(call) if isinstance(a, ast.Name)}
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id in queries
                and self._is_prefix(node.value)
            ):
                return True
        deep = call if isinstance(call, ast.FunctionDef) else resolve(call, env, deep=True)
        return any(
            isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add) and self._is_prefix(n.right)
            for n in ast.walk(deep)
        )

    def _metavoter_inputs(self, file: str, fn: ast.FunctionDef, env: dict, arg: ast.AST, where: str) -> None:
        stacked = resolve(arg, env)
        if not (
            isinstance(stacked, ast.Call) and dotted(stacked.func).rpartition(".")[2] in ("stack", "cat")
        ):
            self.ev.puzzle(f"MetaVoter input {ast.unparse(stacked)!r} is not a torch.stack/cat", where)
            return
        items = (
            stacked.args[0].elts if stacked.args and isinstance(stacked.args[0], ast.List | ast.Tuple) else []
        )
        origins = [self.origin(item, env, fn) for item in items]
        if sorted(o or "?" for o in origins) != sorted(("lm", "regression", "expert")):
            self.ev.puzzle(f"MetaVoter inputs {ast.unparse(stacked)!r} traced to {origins}", where)
            return
        self.ev.found("metavoter_inputs", origins, where)
        lm = items[origins.index("lm")]
        self.ev.found("lm_normalisation", "linear" if self._normalised(lm, env, fn) else "none", where)

    def origin(self, node: ast.AST, env: dict, fn: ast.FunctionDef, depth: int = 0) -> str | None:
        """Which head a value comes from: a head call, or the LM's logits, through names and methods."""
        expr = resolve(node, env, deep=True)
        text = ast.unparse(expr)
        for attr in self.modules:
            if _kind(attr) in ("regression", "expert") and f".{attr}(" in text:
                return _kind(attr)
        if "logits" in text or "softmax" in text:
            return "lm"
        call, index = expr, None
        if isinstance(expr, ast.Subscript):
            call, index = expr.value, expr.slice
        if isinstance(call, ast.Call) and dotted(call.func).startswith("self.") and depth < 3:
            method = self.methods.get(call.func.attr) if isinstance(call.func, ast.Attribute) else None
            if method is not None:
                ret = returned(method[1], as_int(index) if index is not None else None)
                if ret is not None:
                    return self.origin(ret, assignments(method[1]), method[1], depth + 1)
        unpacked = unpacked_from(node, fn)
        if unpacked is not None and depth < 3:
            call, i = unpacked
            method = self.methods.get(call.func.attr) if isinstance(call.func, ast.Attribute) else None
            if method is not None:
                ret = returned(method[1], i)
                if ret is not None:
                    return self.origin(ret, assignments(method[1]), method[1], depth + 1)
        return None

    def _normalised(self, node: ast.AST, env: dict, fn: ast.FunctionDef) -> bool:
        text = ast.unparse(resolve(node, env, deep=True))
        unpacked = unpacked_from(node, fn)
        if unpacked is not None and isinstance(unpacked[0].func, ast.Attribute):
            method = self.methods.get(unpacked[0].func.attr)
            if method is not None:
                ret = returned(method[1], unpacked[1])
                text += (
                    ast.unparse(resolve(ret, assignments(method[1]), deep=True)) if ret is not None else ""
                )
        compact = text.replace(" ", "")
        return "-1)/4" in compact or "-1.0)/4" in compact

    def _loads(self, file: str, node: ast.AST, env: dict) -> None:
        if not isinstance(node, ast.Call):
            return
        name = dotted(node.func)
        if name.rpartition(".")[2] in ("load", "load_file", "hf_hub_download", "from_pretrained"):
            text = ast.unparse(resolve(node, env, deep=True))
            if "voter" in text.lower():
                how = "a pickle, never opened by the importer" if name.endswith("torch.load") else name
                self.ev.metavoter.append(f"weights loaded at {self.at(file, node)} ({how}): {text[:200]}")

    # --- prompts ----------------------------------------------------------------------------------
    def _prompts(self) -> None:
        strings: list[tuple[str, str]] = []  # (value, where) in the methods that build prompts
        for name in (*_PROMPT_METHODS, *self._helpers()):
            if name in self.methods:
                file, fn = self.methods[name]
                for node in ast.walk(fn):
                    value = self.const(node) if isinstance(node, ast.expr) else None
                    if isinstance(value, str):
                        strings.append((value, self.at(file, node)))
                    elif isinstance(value, list) and [str(v).strip(" Ġ▁") for v in value] == list(LEVELS):
                        spaced = all(str(v)[:1] in (" ", "Ġ", "▁") for v in value)
                        self.ev.found("lm_level_space", spaced, self.at(file, node))
        newline_after_image = max((self._img_newlines(fn) for _, fn in self.methods.values()), default=0)
        for value, where in strings:
            if value.startswith("<image>") and "aesthetics" in value:
                question = value.removeprefix("<image>").lstrip("\n")
                key = "dims_question" if "12 different dimensions" in question else "question"
                self.ev.found(key, question, where)
                newlines = len(value.removeprefix("<image>")) - len(question) + newline_after_image
                self.ev.found("query_newlines", newlines, where)
            elif value.strip().startswith("The aesthetics of") and value == value.rstrip():
                self.ev.found("answer_prefix", value.strip(), where)
            for template, (system, _) in _templates().items():
                if value == system:
                    self.ev.found("template", template, where)
        self.ev.settle()
        values, where = self.ev.values, self.ev.where
        newlines, template = values.get("query_newlines"), values.get("template")
        if newlines is not None and template is not None and _templates()[template][1] != newlines:
            self.ev.puzzle(
                f"the {template} system message with {newlines} newline(s) after </img> is neither template",
                where["query_newlines"],
            )
            self.ev._seen.pop("template")
            values.pop("template")
        elif newlines is not None and template is None:
            by_newlines = [t for t, (_, n) in _templates().items() if n == newlines]
            if len(by_newlines) == 1:
                self.ev.found(
                    "template", by_newlines[0], where["query_newlines"] + " (newlines after </img>)"
                )
        prefix = PromptConfig().overall_answer_prefix
        if values.get("answer_prefix", prefix) != prefix:
            self.ev.puzzle("the answer prefix differs from the training answers'", where["answer_prefix"])
        if "score" in self.methods and "lm_level_space" not in self._seen_names():
            self.ev.puzzle(
                "the level words score() reads are not a literal list", self.at(*self.methods["score"])
            )

    def _seen_names(self) -> set[str]:
        return set(self.ev._seen)

    def _img_newlines(self, fn: ast.FunctionDef) -> int:
        """Newlines right after ``</img>`` where a method builds the image block (`+` or an f-string)."""
        for node in ast.walk(fn):
            tail = None
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                left = node.left.right if isinstance(node.left, ast.BinOp) else node.left
                if self.const(left) == "</img>":
                    tail = self.const(node.right)
            elif isinstance(node, ast.JoinedStr):
                for a, b in zip(node.values, node.values[1:], strict=False):
                    if isinstance(a, ast.FormattedValue) and self.const(a.value) == "</img>":
                        tail = self.const(b)
            if isinstance(tail, str) and tail.startswith("\n"):
                return len(tail) - len(tail.lstrip("\n"))
        return 0

    def _helpers(self) -> list[str]:
        """Methods of self that the prompt-building methods call (one level deep)."""
        found = []
        for name in _PROMPT_METHODS:
            if name in self.methods:
                for node in ast.walk(self.methods[name][1]):
                    if isinstance(node, ast.Call) and dotted(node.func).startswith("self."):
                        attr = dotted(node.func).rpartition(".")[2]
                        if attr in self.methods and attr not in _PROMPT_METHODS:
                            found.append(attr)
        return found
