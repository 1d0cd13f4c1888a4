"""Question/answer pairs of the paper (section 3.3): what the model is asked about a sample, and the
answer text it must produce.

In training each sample gets one of the five paraphrased questions at random; in evaluation always the
checkpoint's configured question, the one scoring asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from humanaes_core.data.samples import Sample
from humanaes_core.model import PromptConfig, dims_answer
from humanaes_core.schema import score_to_level

__all__ = ["QAPair", "build_qa"]


@dataclass(frozen=True)
class QAPair:
    """What the model is asked and must answer for one sample (answer None: no text supervision)."""

    question: str
    answer: str | None
    is_dims: bool


def build_qa(sample: Sample, prompt: PromptConfig, question_index: int | None = None) -> QAPair:
    """The paper's QA pair (section 3.3) for a sample.

    `question_index` picks the paraphrase: training passes a random one, evaluation None (the
    checkpoint's configured question, as scoring uses). Overall answers use the data's `text_level`
    when it has one (the official labels carry it), else the level of the score. A 12-dimension sample
    missing some dimensions (a sparse CSV) gets no answer text: a partial 12-line answer would teach a
    format the model never has to produce.
    """
    q = prompt.question_index if question_index is None else question_index
    if sample.is_dims:
        answer = dims_answer(sample.labels) if sample.complete else None
        return QAPair(prompt.dims_questions[q], answer, True)
    overall = sample.overall
    assert overall is not None
    level = sample.level or score_to_level(overall)
    return QAPair(prompt.overall_questions[q], f"{prompt.overall_answer_prefix} {level}", False)
