"""Readers that never drop data silently.

datatrove's JsonlReader decodes a whole file as UTF-8 text: at the first invalid byte it logs a warning and loses
every record after it. SafeJsonlReader reads bytes and decodes one record at a time, so a bad byte costs at most
that record (replaced or skipped, as configured), and every such record is counted in the step's stats, which
datatrove's executors write into the run's report.
"""

from __future__ import annotations

import base64
from typing import Literal

from datatrove.pipeline.readers import JsonlReader
from datatrove.utils.logging import logger

# Stat names (one place, so the report and the tests agree).
UTF8_REPLACED = "bad_utf8_replaced"
UTF8_SKIPPED = "bad_utf8_skipped"
BAD_JSON_SKIPPED = "bad_json_skipped"
EMPTY_SKIPPED = "empty_skipped"  # a record without text (datatrove's reader drops these uncounted)


class SafeJsonlReader(JsonlReader):
    """JsonlReader (same arguments) that handles invalid UTF-8 per record.

    on_bad_utf8: "replace" keeps the record with U+FFFD in place of the bad bytes; "skip" drops the record.
    Either way the record is counted (bad_utf8_replaced / bad_utf8_skipped); a line that is not JSON is skipped
    and counted (bad_json_skipped) with a warning naming the file and line, and so is a record without text
    (empty_skipped)."""

    name = "🐿 Jsonl (safe)"

    def __init__(self, *args, on_bad_utf8: Literal["replace", "skip"] = "replace", **kwargs):
        super().__init__(*args, **kwargs)
        if on_bad_utf8 not in ("replace", "skip"):
            raise ValueError(f"on_bad_utf8={on_bad_utf8!r} is not one of: replace, skip")
        self.on_bad_utf8 = on_bad_utf8

    def read_file(self, filepath: str):
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
                    for media in data.get("media", []):  # as JsonlReader: media bytes travel base64-encoded
                        if media.get("media_bytes") is not None:
                            media["media_bytes"] = base64.decodebytes(media["media_bytes"].encode("ascii"))
                    document = self.get_document_from_dict(data, filepath, line_number)
                    if not document:
                        self.stat_update(EMPTY_SKIPPED)
                        continue
                yield document
