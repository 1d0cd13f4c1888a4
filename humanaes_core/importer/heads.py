"""The released heads, recognised by name *and* shape and mapped onto `humanaes_core.model.heads`.

The released module names are not published, so a small explicit set of layouts is accepted (see
EXPERT_STRUCTURE, METAVOTER_STRUCTURE) and anything else fails listing what was found. No head is ever
initialised at random and passed off as imported: without a MetaVoter the import fails unless the user
asks for the documented mean (`--metavoter mean`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from humanaes_core.importer.source import (
    SourceFiles,
    SourceTensor,
    TensorPlacement,
    describe,
    listing,
    pickle_files,
)
from humanaes_core.model import HeadsConfig
from humanaes_core.schema import BY_KEY, LEAF_KEYS, PARENT_KEYS

if TYPE_CHECKING:
    import torch

    from humanaes_core.model import Heads, OpenFields

METAVOTER_MODES = ("auto", "mean")

_EXPERT_NAME = re.compile(
    r"(?:language_model\.)?expert_head"
    r"(?:(?P<digit>[1-4])|\.(?:layers\.)?(?P<index>[0-3]))?"
    r"\.(?:(?:(?:net|layers|ffn|mlp)\.)?(?P<layer>0|2|fc1|fc2)\.)?(?P<param>weight|bias)"
)
_EXPERT_ANY = re.compile(r"(?:language_model\.)?expert_head")
_REGRESSION_NAME = re.compile(r"(?:language_model\.)?(?:lm_)?regression_head\.(?P<param>weight|bias)")
EXPERT_STRUCTURE = (
    "a Linear(hidden → 9) for the leaves A B C D E G H I K and three FFNs Linear(n → h) → act → "
    "Linear(h → 1) "
    "for facial aesthetic (5 inputs), general appearance (3) and overall (3), in that order; named "
    "expert_head.{0..3}, expert_head.layers.{0..3}, expert_head (leaves) + expert_head{1..3}, or "
    "expert_head{1..4}, optionally under language_model.; FFN layers named 0/2 or fc1/fc2, optionally "
    "under net./layers./ffn./mlp."
)
METAVOTER_STRUCTURE = (
    "Linear(3 → h) + BatchNorm1d(h) (weight, bias, running_mean, running_var[, num_batches_tracked]) + "
    "Linear(h → 1), as sibling modules under one prefix (e.g. metavoter.0/1/3), in any *.safetensors in SRC"
)
_EXPERT_LAYOUTS = {
    "expert_head.{N}": [(i, "expert_head.{N}") for i in range(4)],
    "expert_head{N}": [(i, "expert_head{N}") for i in range(1, 5)],
    "expert_head + expert_head{N}": [(-1, "expert_head")] + [(i, "expert_head{N}") for i in range(1, 4)],
}
_BN_PARAMS = {"weight", "bias", "running_mean", "running_var"}

Unit = tuple[int, str]  # (index, naming style) of one expert sub-module; index -1 for bare expert_head
Linear = tuple[tuple[int, ...], tuple[int, ...]]  # (weight shape, bias shape)


@dataclass
class HeadsPlan:
    """Which source tensor fills each parameter of `Heads` (keys are `Heads.state_dict()` names)."""

    regression: dict[str, str]
    expert: dict[str, str]
    metavoter: dict[str, str]  # empty: the mean replaces the MetaVoter (--metavoter mean)
    config: HeadsConfig
    expert_layout: str
    metavoter_prefix: str | None
    regression_width: int = 1  # read from the weight's shape (1, or 12 in the official order)
    ffn_order: str = "facial aesthetic, general appearance, overall, in that order (assumed)"

    @property
    def tensors(self) -> dict[str, str]:
        return {**self.regression, **self.expert, **self.metavoter}

    def placements(self, source: SourceFiles) -> list[TensorPlacement]:
        placements = []
        for target, name in self.tensors.items():
            st = source.tensors[name]
            placements.append(TensorPlacement(name, st.shape, st.file, (f"heads.{target}",), "head, copied"))
        return placements

    def assumptions(self, activation_given: bool) -> list[str]:
        """What the import assumed about the heads, recorded in the report and the checkpoint."""
        activation = self.config.expert_activation
        found = [
            f"expert head layout {self.expert_layout}: the leaf Linear's 9 outputs are in the official label "
            "order without the parents (A B C D E G H I K) unless the modeling file says otherwise; the "
            f"FFNs are {self.ffn_order}",
            f"expert FFN activation {activation!r} "
            + ("(from --expert-activation)" if activation_given else "(default: not stored in the weights)"),
        ]
        if self.metavoter:
            return [
                *found,
                f"MetaVoter found under {self.metavoter_prefix or '(top level)'!r}: Linear → "
                "BatchNorm1d(eps 1e-5) → ReLU → Linear, inputs in the order (normalised LM score, "
                "regression, expert overall)",
            ]
        return [*found, "MetaVoter replaced by the mean of its three inputs (--metavoter mean), not trained"]


def plan_heads(
    rest: dict[str, SourceTensor],
    hidden: int,
    expert_activation: str,
    metavoter_mode: str,
    source: SourceFiles,
    problems: list[str],
    ffn_roles: dict[str, str] | None = None,
) -> tuple[HeadsPlan, dict[str, SourceTensor]]:
    """The heads among the tensors the backbone left (`rest`), and what is left after them.

    `ffn_roles` (parent key -> sub-module name, from the modeling file) says which FFN computes which
    parent when the code says so; otherwise they are assumed to be F, J, L in order.
    """
    regression, width = _plan_regression(rest, hidden, problems)
    rest = {n: t for n, t in rest.items() if n not in regression.values()}
    expert, ffn_hidden, layout, ffn_order = _plan_expert(rest, hidden, problems, ffn_roles or {})
    rest = {n: t for n, t in rest.items() if not _EXPERT_ANY.match(n)}
    voter, voter_hidden, voter_prefix = _plan_metavoter(rest, problems)
    if metavoter_mode == "mean" and voter:
        problems.append(
            f"a MetaVoter is stored in the source (under {voter_prefix or '(top level)'!r}); "
            "drop --metavoter mean so that it is imported instead of replaced"
        )
    if metavoter_mode == "auto" and not voter:
        pickles = pickle_files(source.root)
        hint = (
            f" SRC also holds {', '.join(pickles)}, which is never opened (pickle); if the MetaVoter is in "
            "there, save it as safetensors in SRC."
            if pickles
            else ""
        )
        problems.append(
            f"no MetaVoter found: expected {METAVOTER_STRUCTURE}.{hint} To import without it, pass "
            "--metavoter mean: the final score is then the mean of the LM, regression and expert scores "
            "(recorded in the checkpoint's provenance)."
        )
    rest = {n: t for n, t in rest.items() if n not in voter.values()}
    config = HeadsConfig(
        hidden_size=hidden,
        expert_ffn_hidden=ffn_hidden,
        expert_activation=expert_activation,
        metavoter_hidden=voter_hidden if voter else 2,
    )
    plan = HeadsPlan(regression, expert, voter, config, layout, voter_prefix, width, ffn_order)
    return plan, rest


def _plan_regression(
    names: dict[str, SourceTensor], hidden: int, problems: list[str]
) -> tuple[dict[str, str], int]:
    """The regression Linear (1 output, or 12 in the official order) and its width."""
    found = {m.group("param"): n for n in names if (m := _REGRESSION_NAME.fullmatch(n))}
    if set(found) != {"weight", "bias"} or len({n.rsplit(".", 1)[0] for n in found.values()}) != 1:
        listed = [describe(n, names[n].shape) for n in found.values()]
        problems.append(
            "regression head: expected language_model.lm_regression_head.weight "
            f"[1, {hidden}] and .bias [1]; found" + (listing(listed) if listed else " nothing")
        )
        return {}, 1
    width = names[found["weight"]].shape[0] if names[found["weight"]].shape else 0
    expected = {"weight": (width, hidden), "bias": (width,)}
    bad = [
        describe(found[p], names[found[p]].shape)
        for p, shape in expected.items()
        if names[found[p]].shape != shape
    ]
    if bad or width not in (1, 12):
        problems.append(
            f"regression head has the wrong shape (expected weight [1 or 12, {hidden}], bias [1 or 12]):"
            + listing(bad or [describe(found["weight"], names[found["weight"]].shape)])
        )
        return {}, 1
    return {f"regression.linear.{p}": n for p, n in found.items()}, width


class _NotRecognised(Exception):
    """The expert head does not match EXPERT_STRUCTURE; the message says where it differs."""


def _plan_expert(
    names: dict[str, SourceTensor], hidden: int, problems: list[str], roles: dict[str, str]
) -> tuple[dict[str, str], int, str, str]:
    """Recognise the expert head by names and shapes (see EXPERT_STRUCTURE); anything else fails.

    The released names are not public, so this accepts a small explicit set of layouts and assumes,
    as the paper describes the head: the first sub-module is the leaf Linear whose 9 outputs are in the
    official label order without the parents (A B C D E G H I K = LEAF_KEYS), and the three FFNs follow
    in the order facial aesthetic (F), general appearance (J), overall (L). The shapes confirm what they
    can (9 outputs; 5, 3 and 3 inputs); the order of J and L, both with 3 inputs, is the assumption
    unless `roles` (from the modeling file) names the sub-module of each parent.
    """
    candidates = sorted(n for n in names if _EXPERT_ANY.match(n))
    try:
        units = _expert_units(candidates)
        layout = _expert_layout(units)
        leaves_unit, *ffn_units = _EXPERT_LAYOUTS[layout]
        leaves = units[leaves_unit]
        if set(leaves) != {""} or _linear(names, leaves[""]) != ((len(LEAF_KEYS), hidden), (len(LEAF_KEYS),)):
            raise _NotRecognised(
                f"the first sub-module must be a Linear({hidden} → {len(LEAF_KEYS)}) with bias"
            )
        mapping = {"expert.leaves.weight": leaves[""]["weight"], "expert.leaves.bias": leaves[""]["bias"]}
        hiddens = set()
        ffn_units, order = _ffn_roles(ffn_units, roles)
        for key, unit in zip(PARENT_KEYS, ffn_units, strict=True):
            ffn, h = _expert_ffn(names, key, unit, units[unit])
            mapping |= ffn
            hiddens.add(h)
        if len(hiddens) != 1:
            raise _NotRecognised(f"the three FFNs have different hidden sizes {sorted(hiddens)}")
    except _NotRecognised as why:
        found = listing([describe(n, names[n].shape) for n in candidates]) if candidates else " nothing"
        problems.append(f"expert head not recognised ({why}); expected {EXPERT_STRUCTURE}; found{found}")
        return {}, 0, "", ""
    return mapping, hiddens.pop(), layout, order


def _ffn_roles(units: list[Unit], roles: dict[str, str]) -> tuple[list[Unit], str]:
    """The FFN units in the order F, J, L: as the modeling file names them, else as stored."""
    named = {style.replace("{N}", str(i)).replace(".", ""): (i, style) for i, style in units}
    if set(roles) == set(PARENT_KEYS):
        picked = [named.get(roles[k].rpartition(".")[2].replace(".", "")) for k in PARENT_KEYS]
        if all(picked) and len(set(picked)) == len(PARENT_KEYS):
            names = ", ".join(f"{k} = {roles[k]}" for k in PARENT_KEYS)
            return [u for u in picked if u is not None], f"{names} (from the modeling file)"
    return units, "facial aesthetic, general appearance, overall, in that order (assumed)"


def _expert_units(candidates: list[str]) -> dict[Unit, dict[str, dict[str, str]]]:
    """Expert tensors grouped: sub-module → layer ("" for a plain Linear) → weight/bias → name."""
    if not candidates:
        raise _NotRecognised("no expert_head tensors")
    units: dict[Unit, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    unparsed = []
    for n in candidates:
        m = _EXPERT_NAME.fullmatch(n)
        if not m:
            unparsed.append(n)
        elif m.group("digit"):
            units[(int(m.group("digit")), "expert_head{N}")][m.group("layer") or ""][m.group("param")] = n
        elif m.group("index"):
            units[(int(m.group("index")), "expert_head.{N}")][m.group("layer") or ""][m.group("param")] = n
        else:
            units[(-1, "expert_head")][m.group("layer") or ""][m.group("param")] = n
    if unparsed:
        raise _NotRecognised(f"names outside the accepted patterns: {', '.join(unparsed)}")
    return units


def _expert_layout(units: dict[Unit, dict]) -> str:
    order = sorted(units)
    layout = next((k for k, v in _EXPERT_LAYOUTS.items() if v == order), None)
    if layout is None:
        got = ", ".join(style.replace("{N}", str(i)) for i, style in order)
        raise _NotRecognised(f"sub-modules {got} do not form one of the accepted layouts")
    return layout


def _linear(names: dict[str, SourceTensor], parts: dict[str, str]) -> Linear | None:
    if set(parts) != {"weight", "bias"}:
        return None
    return names[parts["weight"]].shape, names[parts["bias"]].shape


def _expert_ffn(
    names: dict[str, SourceTensor], key: str, unit: Unit, layers: dict[str, dict[str, str]]
) -> tuple[dict[str, str], int]:
    """One parent's FFN, Linear(n → h) → act → Linear(h → 1): its mapping and its hidden size h."""
    pair = next((p for p in (("0", "2"), ("fc1", "fc2")) if set(layers) == set(p)), None)
    if pair is None:
        raise _NotRecognised(f"sub-module {unit[0]} is not a two-layer FFN (layers {sorted(layers)})")
    first, second = _linear(names, layers[pair[0]]), _linear(names, layers[pair[1]])
    n_in = len(BY_KEY[key].children)
    if first is None or second is None:
        raise _NotRecognised(f"sub-module {unit[0]} needs weight and bias in both layers")
    h = first[0][0]
    if first != ((h, n_in), (h,)) or second != ((1, h), (1,)):
        raise _NotRecognised(
            f"sub-module {unit[0]} ({key}) must be Linear({n_in} → h) → Linear(h → 1); "
            f"got weights {list(first[0])} and {list(second[0])}"
        )
    mapping = {
        f"expert.parents.{key}.{dst_layer}.{param}": layers[src_layer][param]
        for src_layer, dst_layer in zip(pair, ("fc1", "fc2"), strict=True)
        for param in ("weight", "bias")
    }
    return mapping, h


def _metavoter_in(
    names: dict[str, SourceTensor], modules: dict[str, dict[str, str]], mods: list[str]
) -> tuple[str, str, str, int] | None:
    """(Linear(3,h), BatchNorm1d(h), Linear(h,1), h) when three sibling modules form a MetaVoter."""
    shapes = {m: {p: names[n].shape for p, n in modules[m].items()} for m in mods}
    bns = [
        m
        for m in mods
        if set(shapes[m]) in (_BN_PARAMS, _BN_PARAMS | {"num_batches_tracked"})
        and len(shapes[m]["weight"]) == 1
        and all(shapes[m][p] == shapes[m]["weight"] for p in _BN_PARAMS)
    ]
    if len(bns) != 1:
        return None
    bn = bns[0]
    h = shapes[bn]["weight"][0]
    linears = {m: shapes[m] for m in mods if m != bn and set(shapes[m]) == {"weight", "bias"}}
    lin_in = [m for m, s in linears.items() if s == {"weight": (h, 3), "bias": (h,)}]
    lin_out = [m for m, s in linears.items() if s == {"weight": (1, h), "bias": (1,)}]
    if len(lin_in) != 1 or len(lin_out) != 1:
        return None
    tails = [m.rpartition(".")[2] for m in (lin_in[0], bn, lin_out[0])]
    if all(t.isdigit() for t in tails) and not int(tails[0]) < int(tails[1]) < int(tails[2]):
        return None  # numbered, but not Linear → BatchNorm → Linear
    return lin_in[0], bn, lin_out[0], h


def _plan_metavoter(
    names: dict[str, SourceTensor], problems: list[str]
) -> tuple[dict[str, str], int, str | None]:
    """Find Linear(3,h)+BatchNorm1d(h)+Linear(h,1) among sibling modules under any one prefix."""
    modules: dict[str, dict[str, str]] = defaultdict(dict)
    for n in names:
        mod, _, param = n.rpartition(".")
        modules[mod][param] = n
    children: dict[str, list[str]] = defaultdict(list)
    for mod in modules:
        children[mod.rpartition(".")[0]].append(mod)
    found = [
        (parent, voter)
        for parent, mods in children.items()
        if len(mods) == 3 and (voter := _metavoter_in(names, modules, mods)) is not None
    ]
    if not found:
        return {}, 0, None
    if len(found) > 1:
        problems.append(
            "more than one MetaVoter-shaped set of tensors: "
            + ", ".join(repr(parent or "(top level)") for parent, _ in found)
        )
        return {}, 0, None
    parent, (lin_in, bn, lin_out, h) = found[0]
    mapping = {f"metavoter.net.0.{p}": modules[lin_in][p] for p in ("weight", "bias")}
    mapping |= {f"metavoter.net.1.{p}": n for p, n in modules[bn].items()}
    mapping |= {f"metavoter.net.3.{p}": modules[lin_out][p] for p in ("weight", "bias")}
    return mapping, h, parent


def mean_metavoter_state(eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """MetaVoter weights (hidden 2) whose output is the mean of its three inputs, for any real inputs.

    Hidden unit 0 is the mean, unit 1 its negative; ReLU(u0) − ReLU(u1) = mean. The BatchNorm is an
    identity in eval: running_var = 1 − eps so that var + eps is exactly 1 in float32.
    """
    import torch

    third = 1.0 / 3.0
    var = torch.tensor(1.0, dtype=torch.float32) - torch.tensor(eps, dtype=torch.float32)
    if float(var + torch.tensor(eps, dtype=torch.float32)) != 1.0:
        var = torch.tensor(1.0, dtype=torch.float32)
    return {
        "metavoter.net.0.weight": torch.tensor([[third] * 3, [-third] * 3]),
        "metavoter.net.0.bias": torch.zeros(2),
        "metavoter.net.1.weight": torch.ones(2),
        "metavoter.net.1.bias": torch.zeros(2),
        "metavoter.net.1.running_mean": torch.zeros(2),
        "metavoter.net.1.running_var": var.repeat(2),
        "metavoter.net.1.num_batches_tracked": torch.tensor(0, dtype=torch.long),
        "metavoter.net.3.weight": torch.tensor([[1.0, -1.0]]),
        "metavoter.net.3.bias": torch.zeros(1),
    }


def build_heads(plan: HeadsPlan, source: SourceFiles, fields: OpenFields | None = None) -> Heads:
    """The heads with the source's weights (float32), or the mean in place of a missing MetaVoter;
    `fields` (the import's open fields) shape them."""
    import torch

    from humanaes_core.model import Heads

    heads = Heads(plan.config, fields)
    state = {target: source.load(name).float() for target, name in plan.tensors.items()}
    if "metavoter.net.1.num_batches_tracked" in state:
        state["metavoter.net.1.num_batches_tracked"] = state["metavoter.net.1.num_batches_tracked"].long()
    if not plan.metavoter:
        state |= mean_metavoter_state()
    state.setdefault("metavoter.net.1.num_batches_tracked", torch.tensor(0, dtype=torch.long))
    heads.load_state_dict(state, strict=True)
    return heads.eval()
