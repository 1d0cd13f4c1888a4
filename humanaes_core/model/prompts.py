"""Questions, answers and the chat templates the official checkpoints may have been trained with.

The prompt settings live in the checkpoint (`humanaes.json`, key `prompt`), so a model imported from
another template keeps working; these are the defaults of the released HumanAesExpert models.

Two templates are known (DESIGN section 3). "internvl_chat" is InternVL's own ``chat()``: its Chinese
system message and one newline between ``</img>`` and the question. "swift_internvl2" is the swift
fork's ``Internvl2_HumanAesExpertTemplate`` the release was trained through: an English system message
and ``<img>…</img>\n`` + ``\n`` + question (two newlines). Which one the release's own ``score()`` builds
is not public, so it is a field of the checkpoint, not a constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

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

#: The question the release's README, test.py and eval script ask (the second paraphrase).
RELEASE_QUESTION_INDEX = 1
RELEASE_QUESTION = OVERALL_QUESTIONS[RELEASE_QUESTION_INDEX]

# InternVL2's default system message (the "internvl2_5"/Hermes-2 template of the 1B and 8B models).
INTERNVL_SYSTEM_MESSAGE = (
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
    "英文名叫InternVL, 是一个有用无害的人工智能助手。"
)
#: swift's InternvlTemplate system message (the template the release was fine-tuned through).
SWIFT_SYSTEM_MESSAGE = "You are an AI assistant whose name is InternLM (书生·浦语)."

#: Template name -> (its system message, newlines between </img> and the question).
TEMPLATES: dict[str, tuple[str, int]] = {
    "internvl_chat": (INTERNVL_SYSTEM_MESSAGE, 1),
    "swift_internvl2": (SWIFT_SYSTEM_MESSAGE, 2),
}
DEFAULT_TEMPLATE = "internvl_chat"
#: How the answer text is tokenised: "in_context" as part of the whole turn (InternVL tokenises the
#: rendered conversation as one string, so sentencepiece adds no dummy-prefix space before "The"), or
#: "alone" (a separate encode call, as swift does with a response: '▁The' with a dummy-prefix model).
ANSWER_TOKENISATIONS = ("in_context", "alone")


@dataclass
class PromptConfig:
    """How a question becomes token text; stored in the checkpoint.

    ``system_message`` and ``query_newlines`` left as None follow ``template`` (a checkpoint written
    before the template existed stores its system message and loads with one newline, as it did).
    """

    template: str = DEFAULT_TEMPLATE
    system_message: str | None = None
    query_newlines: int | None = None
    overall_questions: list[str] = field(default_factory=lambda: list(OVERALL_QUESTIONS))
    dims_questions: list[str] = field(default_factory=lambda: list(DIMS_QUESTIONS))
    question_index: int = RELEASE_QUESTION_INDEX  # which paraphrase inference uses
    answer_tokenisation: str = "in_context"
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

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown prompt template {self.template!r}; known: {', '.join(TEMPLATES)}")
        if self.answer_tokenisation not in ANSWER_TOKENISATIONS:
            raise ValueError(f"answer_tokenisation must be one of {', '.join(ANSWER_TOKENISATIONS)}")
        system, newlines = TEMPLATES[self.template]
        if self.system_message is None:
            self.system_message = system
        if self.query_newlines is None:
            self.query_newlines = newlines

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
        newlines = "\n" * (self.query_newlines or 1)
        return f"{newlines}{question}{self.im_end}{self.turn_sep}{self.im_start}assistant\n"

    def with_template(self, template: str) -> PromptConfig:
        """This prompt under another template, with that template's system message and newlines (a
        plain ``replace`` would keep the old ones)."""
        return replace(self, template=template, system_message=None, query_newlines=None)

    def release_question_index(self) -> int:
        """Which of this checkpoint's questions is the one the release asks (its README, test.py and
        eval script); the release preset asks it whatever the checkpoint's default is."""
        if RELEASE_QUESTION not in self.overall_questions:
            raise ValueError(f"the checkpoint's questions do not include the release's {RELEASE_QUESTION!r}")
        return self.overall_questions.index(RELEASE_QUESTION)


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
