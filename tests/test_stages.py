"""The cleaning steps gptjax adds to datatrove's, and the English words its quality filters count."""

import json

import pytest
from datatrove.data import Document

from conftest import data_path
from gptjax.data.prepare import FILTERS, base_config, quality_filter
from gptjax.data.stages import EnglishWords, Normalize

# An abstract as PubMed has them: numbers, units, brackets and statistics in every sentence.
ABSTRACT = (
    "Background: Obesity (BMI >= 30 kg/m2) affects 13% of adults worldwide. We assessed whether a 12-week "
    "programme of diet and exercise reduced HbA1c in adults with type 2 diabetes. Methods: In a randomized trial "
    "(n = 240; 52% women; mean age 58.3 years), participants were assigned 1:1 to the programme or to usual care. "
    "Results: HbA1c fell from 8.1% to 7.2% with the programme and did not change with usual care (difference "
    "-0.8%, 95% CI -1.1 to -0.5; p < 0.001). Conclusions: The programme lowered HbA1c at 12 weeks, and the "
    "effect was larger in those with a high HbA1c at baseline (p = 0.02).")
# A court opinion's citations.
OPINION = (
    "The trial court granted summary judgment for the defendant. See Smith v. Jones, 359 Ill. App. 3d 921, 925 "
    "(2005); 735 ILCS 5/2-1005(c) (West 2004). We review that ruling de novo. Id. at 926. The plaintiff argues "
    "that the court erred because a question of fact remained as to notice. Ward v. K mart Corp., 136 Ill. 2d "
    "132, 145 (1990). We agree, and we reverse and remand for further proceedings consistent with this opinion.")


def verdict(name, text):
    return quality_filter(name).filter(Document(text=text, id="doc"))


@pytest.mark.parametrize("text", [ABSTRACT, OPINION], ids=["abstract", "opinion"])
def test_the_quality_filters_count_words_not_punctuation(text):
    assert verdict("gopher_quality", text) is True
    # Counting spaCy's punctuation tokens as words, as datatrove's default for "en" does, removes it: most of its
    # words would then hold no letter.
    f = quality_filter("gopher_quality")
    f.language = "en"
    assert f.filter(Document(text=text, id="doc")) == (False, "gopher_below_alpha_threshold")


def test_english_words_are_spacys_less_punctuation():
    words = EnglishWords().word_tokenize("The p-value (p < 0.05) was 3.2%, e.g. small... Isn't it?")
    assert words == ["The", "p", "value", "p", "0.05", "was", "3.2", "e.g.", "small", "Is", "n't", "it"]


@pytest.mark.parametrize("text, reason", [
    ("Cheap flights hotels deals. " * 30, "gopher_enough_stop_words"),  # a list of keywords, no English sentence
    ("The offer of the day is on the site and that is all. " * 3, "gopher_short_doc"),
    ("\n".join(f"{1000 + i} {i * 7919:06d} {i * 104729:08d} {i * 13:.2f} of the items" for i in range(40)),
     "gopher_below_alpha_threshold"),  # a table of numbers
])
def test_web_junk_is_still_removed(text, reason):
    assert verdict("gopher_quality", text) == (False, reason)


@pytest.mark.parametrize("text", ["-" * 40 + ".\n" + "=" * 40 + ".", "!!!! ????", "...", "\u3002", "1 2 3", "x"])
@pytest.mark.parametrize("name", FILTERS)
def test_a_document_without_words_is_judged_not_a_crash(name, text):
    result = verdict(name, text)
    assert result is True or result[0] is False


def test_the_fineweb_filter_removes_a_document_of_punctuation_alone():
    assert verdict("fineweb", "-" * 40 + ".\n" + "=" * 40 + ".") == (False, "no_words")


def test_the_shared_domain_corpora_survive_the_defaults():
    """PubMed abstracts and court opinions pass the default web heuristics without `skip=` (docs/data_filters.md
    has the table for every filter and source)."""
    defaults = [quality_filter(name) for name in FILTERS if base_config().stages[name]]
    for path, at_most in (("pubmed/pubmedqa_abstracts.jsonl", 0.01), ("legal/legal_docs.jsonl", 0.1)):
        lines = data_path("corpora", *path.split("/")).read_text().splitlines()
        docs = list(Normalize().run(Document(text=json.loads(line)["text"], id=str(i)) for i, line in enumerate(lines)))
        removed = sum(any(f.filter(doc) is not True for f in defaults) for doc in docs)
        assert removed <= at_most * len(docs), (path, removed, len(docs))
