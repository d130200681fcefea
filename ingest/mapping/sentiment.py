"""``sentiment``: derived from what the customer said, or read from the assistant's label.

The local model is VADER (``vaderSentiment``), a lexicon and rule model tuned for short,
informal, spoken-style text, which fits transcript turns; it ships its lexicon and needs
no network. Only the customer's utterances are scored: the assistant is polite by design
and would pull every call towards positive.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ingest.mapping.numbers import json_number
from ingest.vocabulary import Sentiment

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = ["normalise_sentiment", "sentiment_of"]

# VADER's own recommended cut-offs for its compound score (Hutto & Gilbert, 2014).
THRESHOLD: Final = 0.05


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    """Built on first use: loading the lexicon is the slow part (tens of ms), so once per process.

    ``polarity_scores`` only reads the lexicon, so one instance serves every worker thread.
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_of(texts: Sequence[str]) -> Sentiment | None:
    """The customer's overall sentiment over their utterances; None when they said nothing.

    Each utterance gets VADER's compound score in [-1, 1]; the call's score is their mean
    weighted by each utterance's length in characters. Scoring the joined text instead
    saturates towards ±1 on any long call; an unweighted mean lets "Okay." count as much
    as a paragraph of complaint. Length weighting keeps a long distressed opening (the
    dst_autumn call) from being outvoted by short courtesies ("Thank you so much. Bye.").
    """
    if isinstance(texts, str):  # a lone string is a Sequence[str] of characters
        texts = [texts]
    utterances = [text.strip() for text in texts if isinstance(text, str) and text.strip()]
    if not utterances:
        return None
    analyzer = _analyzer()
    total = 0.0
    weight = 0
    for utterance in utterances:
        total += analyzer.polarity_scores(utterance)["compound"] * len(utterance)
        weight += len(utterance)
    return _label(total / weight)


def _label(score: float) -> Sentiment:
    if score >= THRESHOLD:
        return Sentiment.POSITIVE
    if score <= -THRESHOLD:
        return Sentiment.NEGATIVE
    return Sentiment.NEUTRAL


_WORDS: Final[dict[str, Sentiment]] = {
    **dict.fromkeys(
        ("positive", "pos", "good", "happy", "satisfied", "pleased", "favourable", "favorable"),
        Sentiment.POSITIVE,
    ),
    **dict.fromkeys(
        ("negative", "neg", "bad", "unhappy", "angry", "upset", "frustrated", "dissatisfied", "annoyed"),
        Sentiment.NEGATIVE,
    ),
    **dict.fromkeys(("neutral", "neu", "mixed", "ambivalent", "indifferent", "balanced"), Sentiment.NEUTRAL),
}

# Intensity words an LLM puts in front of the label; "not" is deliberately absent, so
# "not positive" stays unreadable rather than being read as positive.
_MODIFIERS: Final = frozenset(
    ("very", "extremely", "highly", "strongly", "quite", "fairly", "somewhat", "slightly", "mildly", "mostly")
    + ("overall", "generally", "sentiment", "customer", "caller")
)

_WORD: Final = re.compile(r"[a-z]+")
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def normalise_sentiment(value: object) -> Sentiment | None:
    """An assistant-provided sentiment as one of the three labels; None when it is unusable.

    Text: one known label, optionally with intensity words ("Very Positive", "mostly
    negative", "Mixed" -> neutral). Numbers, or numeric text, on two scales:

    * within [-1, 1]: a polarity score like VADER's, cut at ±0.05;
    * above 1 up to 5: a 1–5 rating, 3 is neutral, mapped onto [-1, 1] as (x - 3) / 2.

    Exactly 1 is ambiguous (best on one scale, worst on the other) and so is None, as is
    anything outside [-1, 5]. None hands the decision to the local model.
    """
    if isinstance(value, Sentiment):
        return value
    number = json_number(value)
    if number is not None:
        return _from_number(float(number))  # a huge integer becomes inf here, not OverflowError
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if _NUMBER.fullmatch(text):
        return _from_number(float(text))
    words = [word for word in _WORD.findall(text) if word not in _MODIFIERS]
    return _WORDS.get(words[0]) if len(words) == 1 else None


def _from_number(number: float) -> Sentiment | None:
    if not math.isfinite(number) or number == 1:
        return None
    if -1 <= number < 1:
        return _label(number)
    if 1 < number <= 5:
        return _label((number - 3) / 2)
    return None
