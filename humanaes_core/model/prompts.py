"""Questions, answers and the InternVL chat template the official checkpoints were trained with.

The prompt settings live in the checkpoint (`humanaes.json`, key `prompt`), so a model imported from
another template keeps working; these are the defaults of the released HumanAesExpert models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from humanaes_core.schema import OFFICIAL_ANSWER_NAMES, OFFICIAL_ORDER, score_to_level

OVERALL_QUESTIONS: tuple[str, ...] = (
    "Can you evaluate the aesthetics of the human image?",
    "Rate the aesthetics of this human picture.",
    "How is the aesthetics of this human image?",
    "Can you rate the aesthetics of this human picture?",
    "Please evaluate the aesthetics of the human image.",
)


def dims_question(overall_question: str) -> str:
    """Insert ' from 12 different dimensions' before the final punctuation of an overall question."""
    return overall_question[:-1] + " from 12 different dimensions" + overall_question[-1]


DIMS_QUESTIONS: tuple[str, ...] = tuple(dims_question(q) for q in OVERALL_QUESTIONS)
OVERALL_ANSWER_PREFIX = "The aesthetics of the human image is"

# InternVL2's default system message (the "internvl2_5"/Hermes-2 template of the 1B and 8B models).
INTERNVL_SYSTEM_MESSAGE = (
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
    "英文名叫InternVL, 是一个有用无害的人工智能助手。"
)


@dataclass
class PromptConfig:
    """How a question becomes token text; stored in the checkpoint."""

    system_message: str = INTERNVL_SYSTEM_MESSAGE
    overall_questions: list[str] = field(default_factory=lambda: list(OVERALL_QUESTIONS))
    dims_questions: list[str] = field(default_factory=lambda: list(DIMS_QUESTIONS))
    question_index: int = 0  # which paraphrase inference uses
    overall_answer_prefix: str = OVERALL_ANSWER_PREFIX
    img_start: str = "<img>"
    img_end: str = "</img>"
    img_context: str = "<IMG_CONTEXT>"
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"
    # InternVL's Hermes-2 and internlm2-chat templates (the 1B's and the 8B's) join turns with nothing
    # between <|im_end|> and the next <|im_start|>; the 8B's text also starts with the BOS token.
    turn_sep: str = ""
    bos: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> PromptConfig:
        return cls(**data)

    def text_before_image(self) -> str:
        """Chat-template text up to the image block (system turn and the start of the user turn)."""
        return (
            f"{self.bos}{self.im_start}system\n{self.system_message}{self.im_end}{self.turn_sep}"
            f"{self.im_start}user\n"
        )

    def text_after_image(self, question: str) -> str:
        """Chat-template text from the image block to the start of the assistant's answer."""
        return f"\n{question}{self.im_end}{self.turn_sep}{self.im_start}assistant\n"


def overall_answer(score: float, prefix: str = OVERALL_ANSWER_PREFIX) -> str:
    """The overall-only answer text, e.g. 'The aesthetics of the human image is good'."""
    return f"{prefix} {score_to_level(score)}"


def dims_answer(dims: Mapping[str, float]) -> str:
    """The official 12-line answer in the official order (Environment 10th, General Appearance 11th)."""
    lines = [
        f"{i}. {name} : {score_to_level(dims[key])}"
        for i, (name, key) in enumerate(zip(OFFICIAL_ANSWER_NAMES, OFFICIAL_ORDER, strict=True), start=1)
    ]
    return "\n".join(lines)
