"""Whether two memories say the same thing: the guard on every automatic merge.

Vectors cannot tell "the wifi password is tulip-4471" from "... tulip-4472": their
cosine is 0.99. So consolidation never merges on similarity. Two memories merge
without a model only when their *statement keys* are equal: the same words in the
same order once case, punctuation, articles, contractions, spelling variants
(colour/color, Wi-Fi/wifi), number formats (09:40/9:40, 1,200/1200) and lead-ins
("remember that ...") are set aside. Any other difference — a digit, a name, a
date, a "not", a content word, word order — keeps them apart. With a model, a
similar pair whose *anchors* (numbers, codes, dates, names) agree may be put to it;
pairs whose anchors differ are never asked, so no model can fold two passwords
into one. This module only decides; it never writes anything.
"""

from __future__ import annotations

import re
import unicodedata

_ARTICLES = frozenset({"a", "an", "the"})
_LEAD_IN = re.compile(r"^(?:please\s+)?(?:remember|note|fyi|keep in mind|for the record|"
                      r"just so you know)(?:\s+that)?\s*[:,-]?\s+", re.IGNORECASE)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": "-"})
_NEGATIONS = (("can't", "can not"), ("cannot", "can not"), ("won't", "will not"),
              ("shan't", "shall not"), ("n't", " not"))
_CONTRACTIONS = (("'m", " am"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"),
                 ("'d", " would"))
_IS_AFTER = ("it", "he", "she", "that", "what", "there", "here", "who", "where", "let")
# British and other variant spellings mapped to one form (both sides get the same map).
_VARIANTS = {
    "colour": "color", "colours": "colors", "favourite": "favorite", "favourites": "favorites",
    "flavour": "flavor", "honour": "honor", "neighbour": "neighbor", "neighbours": "neighbors",
    "behaviour": "behavior", "humour": "humor", "labour": "labor", "harbour": "harbor",
    "centre": "center", "theatre": "theater", "metre": "meter", "metres": "meters",
    "litre": "liter", "litres": "liters", "organise": "organize", "organised": "organized",
    "organising": "organizing", "realise": "realize", "realised": "realized",
    "recognise": "recognize", "apologise": "apologize", "analyse": "analyze",
    "travelled": "traveled", "travelling": "traveling", "traveller": "traveler",
    "cancelled": "canceled", "cancelling": "canceling", "grey": "gray", "mum": "mom",
    "mummy": "mommy", "programme": "program", "catalogue": "catalog", "dialogue": "dialog",
    "pyjamas": "pajamas", "aluminium": "aluminum", "jewellery": "jewelry", "licence": "license",
    "defence": "defense", "offence": "offense", "okay": "ok", "tyre": "tire", "tyres": "tires",
}
_MONTHS = ("january february march april may june july august september october november "
           "december jan feb mar apr jun jul aug sep sept oct nov dec").split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_CALENDAR = frozenset(_MONTHS + _WEEKDAYS + [d + "s" for d in _WEEKDAYS])
_TOKEN = re.compile(r"[\w@]+(?:[-./:'+#][\w@]+)*")


def statement_key(text: str) -> tuple[str, ...]:
    """The words that carry a statement, normalised; equal keys say the same thing."""
    words: list[str] = []
    for token in _TOKEN.findall(_normalise(text)):
        stem, possessive = (token[:-2], ["'s"]) if token.endswith("'s") else (token, [])
        words += [_VARIANTS.get(stem, stem), *possessive]
    return tuple(w for w in words if w not in _ARTICLES)


def same_statement(first: str, second: str) -> bool:
    return statement_key(first) == statement_key(second)


def anchors(text: str) -> tuple[str, ...]:
    """What must agree before a model may even be asked: numbers, codes, dates, names.

    Names are words written with a capital, other than the first word and "I".
    """
    found = [t for t in statement_key(text) if any(c.isdigit() for c in t) or t in _CALENDAR]
    later_words = re.findall(r"[\w'-]+", _strip_lead_in(text.strip()))[1:]
    found += [w.lower() for w in later_words if w[:1].isupper() and w != "I"]
    return tuple(sorted(set(found)))


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _fold_case(text)
    text = _strip_lead_in(text.strip())
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", "", text)  # wi-fi -> wifi, e-mail -> email
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    text = re.sub(r"\b0(\d[:.]\d\d)\b", r"\1", text)  # 09:40 -> 9:40
    text = text.replace("&", " and ")
    return _expand_contractions(text)


def _fold_case(text: str) -> str:
    """Lower-case words, but keep codes whose case is part of them (aB12, Tulip99)."""
    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        keeps_case = any(c.isdigit() for c in word) and word.lower() != word
        return word if keeps_case else word.lower()
    return re.sub(r"\w+", fold, text)


def _strip_lead_in(text: str) -> str:
    return _LEAD_IN.sub("", text, count=1)


def _expand_contractions(text: str) -> str:
    for short, long in _NEGATIONS:
        text = text.replace(short, long)
    for short, long in _CONTRACTIONS:
        text = re.sub(rf"(?<=\w){short}\b", long, text)
    return re.sub(rf"\b({'|'.join(_IS_AFTER)})'s\b", r"\1 is", text)
