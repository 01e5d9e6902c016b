"""Readers that never drop data silently.

datatrove's JsonlReader decodes a whole file as UTF-8 text: at the first invalid byte it logs a warning and loses
every record after it. SafeJsonlReader reads bytes and decodes one record at a time, so a bad byte costs at most
that record (replaced or skipped, as configured), and every such record is counted in the step's stats, which
datatrove's executors write into the run's report.
"""

from __future__ import annotations

import base64
import zlib
from typing import Literal

from datatrove.pipeline.readers import JsonlReader
from datatrove.utils.logging import logger

# Stat names (one place, so the report and the tests agree).
UTF8_REPLACED = "bad_utf8_replaced"
UTF8_SKIPPED = "bad_utf8_skipped"
BAD_JSON_SKIPPED = "bad_json_skipped"
EMPTY_SKIPPED = "empty_skipped"  # a record without text (datatrove's reader drops these uncounted)
NOT_AN_OBJECT_SKIPPED = "not_an_object_skipped"  # a line that is JSON but not an object: 42, [..], "..."
TEXT_NOT_STRING_SKIPPED = "text_not_a_string_skipped"  # {"text": 42}, a list, an object
TRUNCATED_FILES = "truncated_files"  # a compressed file cut short: the records before the damage are kept
# Every counter a reader or stage keeps of what it skipped or changed, named in report.json and report.md alike.
REPORTED_COUNTERS = (UTF8_REPLACED, UTF8_SKIPPED, BAD_JSON_SKIPPED, EMPTY_SKIPPED, NOT_AN_OBJECT_SKIPPED,
                     TEXT_NOT_STRING_SKIPPED, TRUNCATED_FILES, "skipped_not_html", "removed_empty")


class SafeJsonlReader(JsonlReader):
    """JsonlReader (same arguments) that handles invalid UTF-8 per record.

    on_bad_utf8: "replace" keeps the record with U+FFFD in place of the bad bytes; "skip" drops the record.
    Either way the record is counted (bad_utf8_replaced / bad_utf8_skipped); a line that is not JSON is skipped
    and counted (bad_json_skipped) with a warning naming the file and line, and so is a line that is not a JSON
    object (not_an_object_skipped), a record whose text is not a string (text_not_a_string_skipped: 42, a list)
    and a record without text (empty_skipped). A compressed file cut short keeps the records before the damage
    and is counted (truncated_files); the reader goes on with the next file."""

    name = "🐿 Jsonl (safe)"

    def __init__(self, *args, on_bad_utf8: Literal["replace", "skip"] = "replace", **kwargs):
        super().__init__(*args, **kwargs)
        if on_bad_utf8 not in ("replace", "skip"):
            raise ValueError(f"on_bad_utf8={on_bad_utf8!r} is not one of: replace, skip")
        self.on_bad_utf8 = on_bad_utf8

    def read_file(self, filepath: str):
        records = 0
        try:
            for document in self._read_records(filepath):
                records += 1
                yield document
        except (EOFError, zlib.error, OSError) as e:  # gzip's "compressed file ended before..." and its kin
            self.stat_update(TRUNCATED_FILES)
            logger.warning(f"{filepath} is damaged or truncated after {records} records ({e}); the records before "
                           "the damage are kept, the rest of the file is lost; the other files are read")

    def _read_records(self, filepath: str):
        import orjson

        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            for line_number, raw in enumerate(f):
                with self.track_time():
                    if not raw.strip():
                        continue
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        if self.on_bad_utf8 == "skip":
                            self.stat_update(UTF8_SKIPPED)
                            logger.warning(f"{filepath}:{line_number + 1}: invalid UTF-8 ({e.reason}); record skipped")
                            continue
                        self.stat_update(UTF8_REPLACED)
                        text = raw.decode("utf-8", errors="replace")
                    try:
                        data = orjson.loads(text)
                    except orjson.JSONDecodeError as e:
                        self.stat_update(BAD_JSON_SKIPPED)
                        logger.warning(f"{filepath}:{line_number + 1}: not JSON ({e}); record skipped")
                        continue
                    if not isinstance(data, dict):
                        self.stat_update(NOT_AN_OBJECT_SKIPPED)
                        logger.warning(f"{filepath}:{line_number + 1}: a JSON {type(data).__name__}, not an "
                                       "object; record skipped")
                        continue
                    value = data.get(self.text_key)
                    if value is not None and not isinstance(value, str):
                        self.stat_update(TEXT_NOT_STRING_SKIPPED)
                        logger.warning(f"{filepath}:{line_number + 1}: {self.text_key!r} is a "
                                       f"{type(value).__name__}, not text; record skipped")
                        continue
                    for media in data.get("media", []):  # as JsonlReader: media bytes travel base64-encoded
                        if media.get("media_bytes") is not None:
                            media["media_bytes"] = base64.decodebytes(media["media_bytes"].encode("ascii"))
                    document = self.get_document_from_dict(data, filepath, line_number)
                    if not document:
                        self.stat_update(EMPTY_SKIPPED)
                        continue
                yield document
