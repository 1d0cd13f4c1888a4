"""HumanAesExpert: transformers' native InternVL backbone plus the scoring heads.

One score card needs the overall question (LM and regression heads) and the 12-dimension question
(expert head). Both share everything up to the point where their question texts differ — the system
turn, the image block and the common words. The released code runs two full forward passes and
encodes the image twice; here the image is encoded once and the shared prefix (thousands of image
tokens) goes through the language model once, with plain causal attention so the fused attention
kernels can skip the masked half. Its keys and values are kept, and both question suffixes (a few
dozen tokens) then run in one small pass on top of them with a tree-shaped mask: each suffix attends
to the prefix and to itself, never to the other suffix, and both start at the same position id.
Numerically this equals two separate passes, at the cost of one pass over the prefix.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from humanaes_core.errors import CheckpointError
from humanaes_core.model.heads import Heads
from humanaes_core.model.prompts import PromptConfig
from humanaes_core.schema import KEYS, LEVELS

if TYPE_CHECKING:
    from transformers import InternVLForConditionalGeneration, PreTrainedTokenizerBase


@dataclass(frozen=True)
class _Layout:
    """Token layout of the scoring sequence for one tile count (identical for every image with it)."""

    prefix_ids: list[int]  # system turn, image block, shared question words
    image_slice: slice  # where the image-context tokens sit in the prefix
    overall_ids: list[int]  # rest of the overall question + template + answer prefix
    overall_reg_offset: int  # index in overall_ids of the last prompt token (regression head)
    dims_ids: list[int]  # rest of the 12-dimension question + template


@dataclass
class HeadOutputs:
    """Raw per-image head outputs of one batch (tensors on CPU, float32)."""

    level_logits: torch.Tensor  # [B, 5]
    regression: torch.Tensor  # [B]
    expert: dict[str, torch.Tensor] | None  # key -> [B], None for the overall-only path
    metavoter: torch.Tensor | None  # [B]


@dataclass
class TrainingOutputs:
    """What one teacher-forced training pass gives the loss (see `HumanAesModel.training_forward`)."""

    ce: torch.Tensor  # [B] mean cross-entropy over each sample's answer tokens (0 where no answer)
    answer_tokens: torch.Tensor  # [B] number of supervised tokens per sample
    head_hidden: torch.Tensor  # [B, H] hidden state where the heads read each sample (OpenFields)


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _cache_argument(lm: nn.Module) -> str:
    """The name a language model takes its KV cache under: transformers renamed ``past_key_values`` to
    ``cache`` (the old name warns a FutureWarning on every call); older versions know only the old."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


class HumanAesModel(nn.Module):
    """Backbone + heads + tokenizer + prompt layout; the scorer and the trainer both drive this."""

    def __init__(
        self,
        backbone: InternVLForConditionalGeneration,
        heads: Heads,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptConfig,
        num_image_token: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.num_image_token = num_image_token
        self.img_context_id = self._single_token(prompt.img_context)
        if backbone.config.image_token_id != self.img_context_id:
            raise CheckpointError(
                f"config image_token_id {backbone.config.image_token_id} does not match the tokenizer's "
                f"{prompt.img_context} id {self.img_context_id}"
            )
        self.level_token_ids = self._level_token_ids()
        self._layouts: dict[tuple[int, int], _Layout] = {}

    # --- tokenisation ---------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _single_token(self, text: str) -> int:
        ids = self._encode(text)
        if len(ids) != 1:
            raise CheckpointError(f"the tokenizer does not have {text!r} as a single token (got {ids})")
        return ids[0]

    def _level_token_ids(self) -> list[int]:
        """The token the answer continues with for each level word (first token after the answer prefix).

        Found in the context scoring reads it in: the whole turn, answer prefix and level word
        tokenised together (`turn_ids`), not the answer on its own. ``lm_level_space = False`` (an open
        field) reads the bare words instead (`_bare_level_token_ids`).
        """
        if not self.heads.fields.lm_level_space:
            return self._bare_level_token_ids()
        p = self.prompt
        question = p.overall_questions[p.question_index]
        prefix, _, _ = self.turn_ids(1, question, p.overall_answer_prefix)
        ids = []
        for level in LEVELS:
            full, _, _ = self.turn_ids(1, question, f"{p.overall_answer_prefix} {level}")
            if full[: len(prefix)] != prefix or len(full) == len(prefix):
                raise CheckpointError(f"cannot locate the level word {level!r} after the answer prefix")
            ids.append(full[len(prefix)])
        if len(set(ids)) != len(ids):
            raise CheckpointError(
                f"level words share their first token: {dict(zip(LEVELS, ids, strict=True))}"
            )
        return ids

    def _bare_level_token_ids(self) -> list[int]:
        """Each level word's first token without a leading space ("good", not " good"/"▁good"), read
        after a newline so that sentencepiece adds no dummy-prefix space either."""
        newline = self._encode("\n")
        ids = []
        for level in LEVELS:
            full = self._encode("\n" + level)
            if full[: len(newline)] != newline or len(full) == len(newline):
                raise CheckpointError(f"cannot tokenise the level word {level!r} without its space")
            ids.append(full[len(newline)])
        if len(set(ids)) != len(ids):
            shared = dict(zip(LEVELS, ids, strict=True))
            raise CheckpointError(f"bare level words share their first token: {shared}")
        return ids

    def turn_ids(self, n_tiles: int, question: str, answer: str = "") -> tuple[list[int], slice, int]:
        """Token ids of the chat turn up to and including `answer`, where its image-context tokens are,
        and the prompt's length (the tokens before the answer).

        The turn is rendered as one string and tokenised at once, as InternVL does, so the answer is
        read in the context the model was trained in: sentencepiece (InternLM2, the 8B) adds its
        dummy-prefix space only at the start of a run of text, never before the "The" that follows
        ``<|im_start|>assistant\n`` (tokenising the answer on its own gave '▁The'). The checkpoint's
        ``answer_tokenisation = "alone"`` encodes the answer separately instead, as swift does with a
        response. The image block is rendered with one context token and widened afterwards: added
        tokens are split off before any text is encoded, so their count cannot change the text's ids.
        """
        p = self.prompt
        image = f"{p.img_start}{p.img_context}{p.img_end}"
        text = p.text_before_image() + image + p.text_after_image(question)
        prompt = self._encode(text)
        full = prompt
        if answer and p.answer_tokenisation == "alone":
            full = prompt + self._encode(answer)
        elif answer:
            full = self._encode(text + answer)
            if full[: len(prompt)] != prompt:
                raise CheckpointError(f"the answer {answer!r} merges with the prompt's last token")
        at = [i for i, t in enumerate(full) if t == self.img_context_id]
        around = (self._single_token(p.img_start), self._single_token(p.img_end))
        if len(at) != 1 or (full[at[0] - 1], full[at[0] + 1]) != around:
            raise CheckpointError(f"the tokenizer does not keep {image!r} as three tokens in the prompt")
        n = self.num_image_token * n_tiles
        ids = full[: at[0]] + [self.img_context_id] * n + full[at[0] + 1 :]
        return ids, slice(at[0], at[0] + n), len(prompt) + n - 1

    def prompt_ids(self, n_tiles: int, question: str) -> tuple[list[int], slice]:
        """Token ids of the full prompt for one question, and where its image-context tokens are."""
        ids, image_slice, _ = self.turn_ids(n_tiles, question)
        return ids, image_slice

    def layout(self, n_tiles: int, question_index: int | None = None) -> _Layout:
        q = self.prompt.question_index if question_index is None else question_index
        key = (n_tiles, q)
        if key not in self._layouts:
            question = self.prompt.overall_questions[q]
            overall_full, image_slice, prompt_len = self.turn_ids(
                n_tiles, question, self.prompt.overall_answer_prefix
            )
            overall_prompt = overall_full[:prompt_len]
            dims_prompt, _ = self.prompt_ids(n_tiles, self.prompt.dims_questions[q])
            shared = min(_common_prefix_len(overall_prompt, dims_prompt), len(overall_prompt) - 1)
            if shared < image_slice.stop:
                raise CheckpointError("overall and 12-dimension prompts diverge before the image block")
            self._layouts[key] = _Layout(
                prefix_ids=overall_full[:shared],
                image_slice=image_slice,
                overall_ids=overall_full[shared:],
                overall_reg_offset=len(overall_prompt) - 1 - shared,
                dims_ids=dims_prompt[shared:],
            )
        return self._layouts[key]

    # --- forward pieces -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.backbone.model.language_model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.model.multi_modal_projector.linear_1.weight.dtype

    def encode_images(self, pixel_values: torch.Tensor, n_tiles: int) -> torch.Tensor:
        """Vision tower + projector: [B*n_tiles, 3, S, S] → [B, n_tiles * num_image_token, hidden]."""
        vision_dtype = self.backbone.model.vision_tower.embeddings.patch_embeddings.projection.weight.dtype
        out = self.backbone.model.get_image_features(pixel_values=pixel_values.to(self.device, vision_dtype))
        feats = out.pooler_output
        return feats.reshape(-1, n_tiles * self.num_image_token, feats.shape[-1])

    def _prefix_embeds(self, feats: torch.Tensor, lay: _Layout) -> torch.Tensor:
        """The shared prefix's embeddings with the image features [B, n*T, H] at the context tokens."""
        prefix = self._embed(lay.prefix_ids, feats.shape[0]).clone()
        prefix[:, lay.image_slice] = feats.to(prefix.device, prefix.dtype)
        return prefix

    def _embed(self, ids: list[int], batch: int) -> torch.Tensor:
        t = torch.tensor(ids, device=self.device, dtype=torch.long)
        emb = self.backbone.model.language_model.get_input_embeddings()(t)
        return emb.unsqueeze(0).expand(batch, -1, -1)

    def _language_model(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor | None,
        cache: object | None = None,
        pre_norm: bool = False,
    ) -> torch.Tensor:
        """Language-model hidden states; with `cache` (a transformers Cache) it reads and extends it.

        `pre_norm` gives the last decoder layer's output before the final norm instead (what
        ``head_hidden = "last_layer"`` reads): transformers exposes no such state (its
        ``hidden_states[-1]`` is the normed output), so the norm's input is captured. `_final_norm`
        turns rows of it into the output the LM head reads.
        """
        lm = self.backbone.model.language_model
        kwargs = {"inputs_embeds": embeds, "position_ids": position_ids, "use_cache": cache is not None}
        if cache is not None:
            kwargs[_cache_argument(lm)] = cache
        if mask is not None:
            kwargs["attention_mask"] = mask
        if not pre_norm:
            return lm(**kwargs).last_hidden_state
        captured: list[torch.Tensor] = []
        hook = self._final_norm_module().register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            lm(**kwargs)
        finally:
            hook.remove()
        return captured[-1]

    def _final_norm_module(self) -> nn.Module:
        norm = getattr(self.backbone.model.language_model, "norm", None)
        if not isinstance(norm, nn.Module):
            raise CheckpointError("head_hidden 'last_layer' needs a language model with a final norm")
        return norm

    def _final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """Rows of pre-norm states → the final-norm output (what the LM head reads)."""
        return self._final_norm_module()(hidden)

    @property
    def _pre_norm(self) -> bool:
        return self.heads.fields.head_hidden == "last_layer"

    def _head_offsets(self, lay: _Layout) -> tuple[int, int]:
        """Where the regression head reads the overall suffix and the expert head the 12-dimension
        suffix (OpenFields.head_position; definitions in humanaes_core.model.release)."""
        position = self.heads.fields.head_position
        if position == "answer_start":
            return len(lay.overall_ids) - 1, len(lay.dims_ids) - 1
        if position == "im_end":
            end = self._single_token(self.prompt.im_end)
            over = [i for i, t in enumerate(lay.overall_ids[: lay.overall_reg_offset + 1]) if t == end]
            dims = [i for i, t in enumerate(lay.dims_ids) if t == end]
            if not over or not dims:
                raise CheckpointError("head_position 'im_end': no <|im_end|> after the question")
            return over[-1], dims[-1]
        return lay.overall_reg_offset, len(lay.dims_ids) - 1

    def _shared_prefix_pass(self, prefix: torch.Tensor, lay: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix once (causal, keys/values kept), then both suffixes in one pass with the tree mask.

        Returns the hidden states of the overall suffix and of the 12-dimension suffix.
        """
        from transformers import DynamicCache

        batch, p = prefix.shape[0], prefix.shape[1]
        so, sd = len(lay.overall_ids), len(lay.dims_ids)
        cache = DynamicCache(config=self.backbone.model.language_model.config)
        pos = torch.arange(p, device=self.device).unsqueeze(0).expand(batch, -1)
        self._language_model(prefix, pos, None, cache)
        suffix = torch.cat([self._embed(lay.overall_ids, batch), self._embed(lay.dims_ids, batch)], 1)
        pos = torch.cat([torch.arange(p, p + so), torch.arange(p, p + sd)]).to(self.device)
        # every suffix token sees the prefix, then its own branch
        mask = tree_attention_mask(p, so, sd, self.dtype, self.device, first_row=p).expand(batch, 1, -1, -1)
        h = self._language_model(suffix, pos.unsqueeze(0).expand(batch, -1), mask, cache, self._pre_norm)
        return h[:, :so], h[:, so:]

    def _level_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the five level words at one position per image: [B, H] → [B, 5]."""
        return self.backbone.lm_head(hidden.to(self.dtype)).float()[:, self.level_token_ids]

    @torch.inference_mode()
    def score_batch(
        self,
        pixel_values: torch.Tensor | None,
        n_tiles: int,
        heads: str = "all",
        shared_prefix: bool = True,
        question_index: int | None = None,
        *,
        image_features: torch.Tensor | None = None,
    ) -> HeadOutputs:
        """All head outputs for a batch of images that share a tile count.

        `heads="overall"` runs the overall question only (LM + regression). `shared_prefix=False`
        reproduces the released two-pass approach (image encoded twice); it exists to test and
        benchmark the fast path. `image_features` ([B, n_tiles * tokens, H], from `encode_images`)
        replaces `pixel_values` and skips the vision tower, so a photo scored once can be scored with
        the other question at the language model's cost only.
        """
        if heads not in ("all", "overall"):
            raise ValueError(f"heads must be 'all' or 'overall', got {heads!r}")
        lay = self.layout(n_tiles, question_index)
        if image_features is None:
            if pixel_values is None:
                raise ValueError("score_batch needs pixel_values or image_features")
            feats = self.encode_images(pixel_values, n_tiles)
        else:
            feats = image_features.to(self.device)
        prefix = self._prefix_embeds(feats, lay)
        batch = prefix.shape[0]
        p, so, sd = len(lay.prefix_ids), len(lay.overall_ids), len(lay.dims_ids)
        over_at, dims_at = self._head_offsets(lay)

        if heads == "overall" or not shared_prefix:
            seq = torch.cat([prefix, self._embed(lay.overall_ids, batch)], dim=1)
            pos = torch.arange(p + so, device=self.device).unsqueeze(0).expand(batch, -1)
            h_over = self._language_model(seq, pos, None, pre_norm=self._pre_norm)[:, p:]
            exp_h = None
            if heads != "overall":  # the released way: a second full pass, image encoded again
                if image_features is None:
                    prefix = self._prefix_embeds(self.encode_images(pixel_values, n_tiles), lay)
                seq = torch.cat([prefix, self._embed(lay.dims_ids, batch)], dim=1)
                pos = torch.arange(p + sd, device=self.device).unsqueeze(0).expand(batch, -1)
                exp_h = self._language_model(seq, pos, None, pre_norm=self._pre_norm)[:, p + dims_at]
        else:
            h_over, h_dims = self._shared_prefix_pass(prefix, lay)
            exp_h = h_dims[:, dims_at]
        reg_h, lm_h = h_over[:, over_at], h_over[:, so - 1]
        if self._pre_norm:  # the heads read the last layer; the LM head reads the normed output
            lm_h = self._final_norm(lm_h)

        level_logits = self._level_logits(lm_h)
        regression = self.heads.regression(reg_h.float())
        if exp_h is None:
            return HeadOutputs(level_logits.cpu(), regression.cpu(), None, None)
        expert = self.heads.expert(exp_h.float())
        final = self.heads.metavoter(self.heads.lm_input(level_logits), regression, expert["overall"])
        return HeadOutputs(
            level_logits.cpu(), regression.cpu(), {k: expert[k].cpu() for k in KEYS}, final.cpu()
        )

    # --- training -------------------------------------------------------------------------------
    def answer_ids(self, answer: str, question: str | None = None) -> list[int]:
        """Token ids the LM is trained to produce: the answer text, tokenised in its turn (after the
        prompt for `question`, by default the configured one), then the end-of-turn token."""
        p = self.prompt
        ids, _, prompt_len = self.turn_ids(1, question or p.overall_questions[p.question_index], answer)
        return [*ids[prompt_len:], self._single_token(p.im_end)]

    def training_ids(self, n_tiles: int, question: str, answer: str | None) -> tuple[list[int], slice, int]:
        """Full teacher-forced sequence, where its image tokens are, and the prompt length.

        Prompt and answer are tokenised as one turn (`turn_ids`), exactly as scoring tokenises the
        prompt and its answer prefix, so the last prompt token, which the regression and expert heads
        read, and the token the LM score reads are the ones the scorer reads.
        """
        ids, image_slice, prompt_len = self.turn_ids(n_tiles, question, answer or "")
        if answer is not None:
            ids = [*ids, self._single_token(self.prompt.im_end)]
        return ids, image_slice, prompt_len

    def training_forward(
        self,
        pixel_values: torch.Tensor,
        tiles: list[int],
        questions: list[str],
        answers: list[str | None],
    ) -> TrainingOutputs:
        """One teacher-forced pass over a batch of (image, question, answer) with gradients.

        Images may have different tile counts (`tiles[i]` tiles each, concatenated in
        `pixel_values`); sequences are right-padded. Causal attention means a real token never sees
        the padding after it, so each sample's hidden states equal those of an unpadded pass. Logits are
        computed only at the positions that predict answer tokens: the prompt is never a target, and
        the LM head over a 150k vocabulary is not run over thousands of image tokens.
        """
        feats = self.encode_images(pixel_values, 1)  # [sum(tiles), num_image_token, H]: per tile
        per_sample = torch.split(feats, tiles)
        seqs, prompt_lens = [], []
        reads = []
        for n, q, a in zip(tiles, questions, answers, strict=True):
            ids, image_slice, plen = self.training_ids(n, q, a)
            at, ids = self._training_reads(ids, plen, q, a)
            seqs.append((ids, image_slice))
            prompt_lens.append(plen)
            reads.append(at)
        length = max(len(ids) for ids, _ in seqs)
        pad = self.tokenizer.pad_token_id
        pad = self._single_token(self.prompt.im_end) if pad is None else pad
        embed = self.backbone.model.language_model.get_input_embeddings()
        rows, mask = [], torch.zeros(len(seqs), length, dtype=torch.long, device=self.device)
        for i, ((ids, image_slice), img) in enumerate(zip(seqs, per_sample, strict=True)):
            t = torch.tensor(ids + [pad] * (length - len(ids)), device=self.device)
            e = embed(t)
            img = img.reshape(-1, img.shape[-1]).to(e.dtype)
            rows.append(torch.cat([e[: image_slice.start], img, e[image_slice.stop :]]))
            mask[i, : len(ids)] = 1
        embeds = torch.stack(rows)
        pos = torch.arange(length, device=self.device).unsqueeze(0).expand(len(seqs), -1)
        hidden = self._language_model(embeds, pos, mask, pre_norm=self._pre_norm)

        batch_idx = torch.arange(len(seqs), device=self.device)
        head_hidden = hidden[batch_idx, torch.tensor(reads, device=self.device)]
        # answer token k (k >= prompt length) is predicted from position k - 1
        which, where, targets = [], [], []
        for i, ((ids, _), plen) in enumerate(zip(seqs, prompt_lens, strict=True)):
            which += [i] * (len(ids) - plen)
            where += list(range(plen - 1, len(ids) - 1))
            targets += ids[plen:]
        ce = torch.zeros(len(seqs), device=self.device)
        counts = torch.zeros(len(seqs), device=self.device)
        if targets:
            which_t = torch.tensor(which, device=self.device)
            h = hidden[which_t, torch.tensor(where, device=self.device)]
            if self._pre_norm:  # the heads read the last layer; the LM head reads the normed output
                h = self._final_norm(h)
            head = self.backbone.lm_head
            logits = head(h.to(head.weight.dtype)).float()
            tok_ce = nn.functional.cross_entropy(
                logits, torch.tensor(targets, device=self.device), reduction="none"
            )
            ce = ce.index_add(0, which_t, tok_ce)
            counts = counts.index_add(0, which_t, torch.ones_like(tok_ce))
        return TrainingOutputs(ce / counts.clamp(min=1), counts, head_hidden)

    def _training_reads(
        self, ids: list[int], plen: int, question: str, answer: str | None
    ) -> tuple[int, list[int]]:
        """Where the heads read a training sequence, exactly where scoring reads the same turn
        (`_head_offsets`), and its ids with the level token the LM score reads when the level word is
        read without its space (``lm_level_space = False``): training teaches the token scoring reads."""
        position, p = self.heads.fields.head_position, self.prompt
        prefix = p.overall_answer_prefix
        is_overall = answer is not None and answer.startswith(prefix + " ")
        n_prefix = 0
        if is_overall:
            full, _, prompt_len = self.turn_ids(1, question, prefix)
            n_prefix = len(full) - prompt_len
        at = plen - 1
        if position == "answer_start" and is_overall:
            at = plen + n_prefix - 1
        elif position == "im_end":
            end = self._single_token(p.im_end)
            at = max(i for i, t in enumerate(ids[:plen]) if t == end)
        if is_overall and not self.heads.fields.lm_level_space:
            level = answer[len(prefix) + 1 :]  # type: ignore[index]
            if level in LEVELS:
                ids = [*ids[: plen + n_prefix], self.level_token_ids[LEVELS.index(level)], *ids[-1:]]
        return at, ids


def tree_attention_mask(
    prefix: int, a: int, b: int, dtype: torch.dtype, device: torch.device, first_row: int = 0
) -> torch.Tensor:
    """Additive mask [1, 1, L - first_row, L] for prefix + branch a + branch b (L tokens); each branch
    sees the prefix and itself. `first_row=prefix` gives only the branches' rows, for a pass that runs
    them on top of the prefix's cached keys and values (the full mask would be L² for a few rows)."""
    n = prefix + a + b
    rows = torch.arange(first_row, n, device=device).unsqueeze(1)
    cols = torch.arange(n, device=device).unsqueeze(0)
    allowed = cols <= rows
    allowed &= ~((rows >= prefix + a) & (cols >= prefix) & (cols < prefix + a))  # b never sees a
    mask = torch.zeros(n - first_row, n, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]
