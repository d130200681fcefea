"""``keywords``: extracted from a transcript with YAKE, or read from the assistant's list.

YAKE (``yake``) is unsupervised and statistical: it ranks candidate phrases of one text by
case, position, frequency and context spread, with no model to download and no corpus.
Settings: English stop words plus the filler of phone conversations, phrases of up to
two words (three-word candidates in speech are mostly fragments such as "parade in
mount"), YAKE's default de-duplication (sequence-matcher similarity above 0.9).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import TYPE_CHECKING, Final

from ingest.mapping.redaction import Placeholder

if TYPE_CHECKING:
    from yake import KeywordExtractor

__all__ = ["extract_keywords", "normalise_keywords"]

MAX_KEYWORDS: Final = 10
_MAX_PHRASE_WORDS: Final = 2
# YAKE is asked for a few times more than anyone keeps: case-folding and the subsumption
# rule below discard some of its candidates.
_CANDIDATES: Final = 40
_MAX_KEYWORD_CHARS: Final = 64
# YAKE's time grows with the text (measured: bench/README.md, "Figures measured outside the
# benchmarks"); past 100 000 characters the rest of a call adds little, so only the start is read.
_MAX_TEXT_CHARS: Final = 100_000

# "AI: …", "User: …" at the start of each transcript line (Vapi's artifact.transcript), and
# the other labels transcripts from elsewhere use.
_SPEAKER: Final = re.compile(r"(?im)^[ \t]*(?:ai|user|customer|assistant|bot|agent|caller)[ \t]*:[ \t]*")

# Conversational filler and phone-call boilerplate, added to YAKE's stop words so that no
# candidate starts or ends with one. "kia ora" is the usual New Zealand greeting.
_FILLER: Final = frozenset(
    {
        *("um", "umm", "uh", "uhh", "erm", "er", "hmm", "mm", "mhm", "yeah", "yep", "yup", "nope"),
        *("okay", "ok", "oh", "ah", "alright", "right", "sure", "fine", "good", "great", "lovely"),
        *("perfect", "brilliant", "awesome", "cool", "wow", "hi", "hello", "hey", "bye", "goodbye"),
        *("kia", "ora", "thanks", "thank", "cheers", "please", "sorry", "welcome"),
        *("calling", "speaking", "virtual", "assistant"),
    }
)


@functools.cache
def _extractor() -> KeywordExtractor:
    """Built once per process (YAKE reads its stop-word file when constructed)."""
    import yake

    english = yake.KeywordExtractor(lan="en").stopword_set
    return yake.KeywordExtractor(lan="en", n=_MAX_PHRASE_WORDS, top=_CANDIDATES, stopwords=english | _FILLER)


# The extractor keeps a similarity cache it clears as it goes; Dramatiq runs actors in
# threads, so one extraction at a time (it is CPU-bound under the GIL anyway).
_LOCK: Final = threading.Lock()
_PLACEHOLDERS: Final = re.compile("|".join(re.escape(p.value) for p in Placeholder))


def extract_keywords(text: str, limit: int = MAX_KEYWORDS) -> list[str]:
    """Up to ``limit`` key phrases of ``text``, best first, lower-cased and distinct.

    Speaker labels and redaction placeholders (``[PHONE]``, …: not what a call was about)
    are removed first; text past 100 000 characters is ignored. A phrase
    is skipped when its words all appear in a phrase already chosen ("marine" after
    "marine parade"). The same text always gives the same list: YAKE's ranking is a
    stable sort over candidates in text order.
    """
    if not isinstance(text, str) or limit <= 0:
        return []
    cleaned = _PLACEHOLDERS.sub(" ", _SPEAKER.sub("", text[:_MAX_TEXT_CHARS])).strip()
    if not cleaned:
        return []
    extractor = _extractor()
    with _LOCK:
        ranked = extractor.extract_keywords(cleaned)
    chosen: list[str] = []
    chosen_words: list[frozenset[str]] = []
    for phrase, _score in ranked:
        keyword = " ".join(str(phrase).lower().split())
        words = frozenset(keyword.split())
        if not keyword or len(keyword) > _MAX_KEYWORD_CHARS or any(words <= seen for seen in chosen_words):
            continue
        chosen.append(keyword)
        chosen_words.append(words)
        if len(chosen) == limit:
            break
    return chosen


_SPLIT: Final = re.compile(r"[,;\n]")


def normalise_keywords(value: object) -> list[str] | None:
    """Assistant-provided keywords (a list, or one comma-separated string) as a clean list.

    Lower-cased, trimmed, inner whitespace collapsed, empties and non-strings dropped, the
    first of duplicates kept, at most 10, none longer than 64 characters (a sentence is not
    a keyword). None when nothing usable is left, so the caller derives them locally.
    """
    if isinstance(value, str):
        items: list[object] = list(_SPLIT.split(value))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    keywords: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        keyword = " ".join(item.lower().split())
        if keyword and len(keyword) <= _MAX_KEYWORD_CHARS and keyword not in keywords:
            keywords.append(keyword)
            if len(keywords) == MAX_KEYWORDS:
                break
    return keywords or None
