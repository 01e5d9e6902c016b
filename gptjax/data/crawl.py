"""A polite crawler whose output feeds the data pipeline: one JSON line per HTML page, optionally a WARC file.

    python -m gptjax.data.crawl --urls urls.txt --out pages.jsonl --warc pages.warc.gz --rate 1

It honours robots.txt (and its Crawl-delay) per host, waits at least 1/rate seconds between requests to one host,
retries connection errors, timeouts, 5xx and 429 with exponential backoff, and follows redirects itself so that
loops fail one URL and a page reached twice is fetched once. Every page is written and flushed as soon as it is
fetched, so an interrupted crawl keeps its pages and a re-run (resume is the default) skips them.

Only http(s) is ever fetched: page URLs, redirects, robots.txt and the sitemaps an index names (a sitemap index
naming file:// or a local path is not followed). By default no request goes to a loopback, private, link-local
or otherwise non-public address (cloud metadata services live at 169.254.169.254): the address the host name
resolves to is checked, and so is the one each connection actually reached, so a redirect to an internal name or
a name that resolves inward is refused. --allow-private crawls an intranet.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import time
import zlib
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict, deque
from datetime import datetime, timezone
from http.client import HTTPException, responses
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.request import Request

import trafilatura
from protego import Protego

from gptjax.command import ArgumentParser
from gptjax.data import DataError
from gptjax.data.http import (PrivateAddressError, TooLarge, UnknownEncoding, check_host, decode_html_counted,
                              decoded_body, opener)
from gptjax.errors import report_errors

USER_AGENT = "gptjax-crawler/0.1 (+https://github.com/gptjax)"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_RETRY_AFTER = 60.0  # a server asking for hours would stall the whole (sequential) crawl
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str | None:
    """Lower-case scheme and host, no fragment, no default port, '/' for an empty path; None when not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # an unparsable port or IPv6 literal
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if parts.username:
        host = f"{parts.netloc.rpartition('@')[0]}@{host}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def read_url_list(path: str | Path) -> list[str]:
    """URLs from a text file, one a line; blank lines and lines starting with '#' are ignored."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"URL list {path} does not exist; pass a text file with one URL per line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read URL list {path} ({e}); pass a UTF-8 text file with one URL per line") from None
    return [s for line in lines if (s := line.strip()) and not s.startswith("#")]


def read_sitemap(url_or_path: str, timeout: float = 10, *, user_agent: str = USER_AGENT, allow_private: bool = False,
                 _depth: int = 0) -> list[str]:
    """Page URLs of a sitemap.xml (an http(s) URL or a local file, gzipped or not); a sitemap index is followed
    (to http(s) sitemaps, and, from a local index, to local files named relative to it)."""
    if _depth > 3:  # index files nest one level in practice; deeper is a cycle
        raise DataError(f"sitemap {url_or_path} nests sitemap indexes more than 3 deep; pass the page sitemap itself")
    data = _read_source(url_or_path, timeout, user_agent, allow_private)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise DataError(f"sitemap {url_or_path} is not valid XML ({e}); pass a sitemap.xml or a --urls file") from None
    locs = [(el.text or "").strip() for el in root.iter() if _local(el.tag) == "loc"]
    if _local(root.tag) != "sitemapindex":
        return [loc for loc in locs if loc]
    urls, remote = [], "://" in url_or_path
    for loc in filter(None, locs):
        if remote or "://" in loc:
            child = urljoin(url_or_path, loc) if remote else loc
            if normalize_url(child) is None:  # file://, ftp://, ...: never read on a remote index's say-so
                print(f"warning: sitemap index {url_or_path} names {loc}, which is not an http(s) URL; not followed",
                      file=sys.stderr)
                continue
        else:  # a local index may name its sitemaps relative to itself
            child = str(Path(url_or_path).parent / loc)
        urls += read_sitemap(child, timeout, user_agent=user_agent, allow_private=allow_private, _depth=_depth + 1)
    return urls


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]  # '{http://www.sitemaps.org/schemas/sitemap/0.9}loc' -> 'loc'


def _read_source(url_or_path: str, timeout: float, user_agent: str, allow_private: bool) -> bytes:
    try:
        if "://" not in url_or_path:
            return Path(url_or_path).expanduser().read_bytes()
        if normalize_url(url_or_path) is None:
            raise DataError(f"sitemap {url_or_path}: only http(s) URLs (or a local file path) are read")
        check_host(urlsplit(url_or_path).hostname, allow_private)
        with opener(allow_private, follow_redirects=True).open(
                Request(url_or_path, headers={"User-Agent": user_agent}), timeout=timeout) as response:
            return response.read()
    except (OSError, ValueError, HTTPException) as e:  # URLError and HTTPError are OSErrors
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise DataError(f"cannot read sitemap {url_or_path} ({reason}); pass an existing sitemap file or URL"
                        + ("" if not isinstance(reason, PrivateAddressError) else
                           ", or --allow-private to crawl an intranet")) from None


def html_to_text(html: str) -> str:
    """The page's main text as trafilatura extracts it (navigation, scripts and boilerplate left out; headings
    kept), "" where it finds none. Repeated paragraphs are kept: removing text seen on other pages is
    deduplication's job, in gptjax.data.prepare."""
    # trafilatura logs pages it finds no text in; a crawl reports those itself (an empty `text`), so the
    # library's own lines stay off the terminal.
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    return trafilatura.extract(html, include_comments=False, deduplicate=False) or ""


class _Crawler:
    def __init__(self, out, warc, rate, timeout, retries, backoff, max_pages, user_agent, max_bytes,
                 max_redirects, resume, allow_private):
        self.out, self.warc_path, self.timeout, self.retries, self.backoff = out, warc, timeout, retries, backoff
        self.interval, self.max_pages, self.ua, self.max_bytes = 1.0 / rate, max_pages, user_agent, max_bytes
        self.max_redirects, self.allow_private = max_redirects, allow_private
        self.opener = opener(allow_private, follow_redirects=False)
        self.robots_opener = opener(allow_private, follow_redirects=True)
        self.robots, self.robots_note, self.delay, self.next_at = {}, {}, {}, {}
        self.private_hosts: set[str] = set()  # hosts whose connection reached a non-public address
        self.hosts: dict[str, Counter] = defaultdict(Counter)  # host -> {'fetched' or skip reason: count}
        self.resume = resume
        self.done = _resume_urls(out) if resume else set()  # URLs in the output already
        self.seen: set[str] = set()  # URLs requested (or refused) in this run, redirect hops included
        self.fetched = self.no_text = 0  # no_text: pages written with an empty `text` (trafilatura found none)
        # Characters the decoding could not read (a wrong or missing charset), replaced by U+FFFD.
        self.replacement_chars = self.pages_with_replacements = 0

    def run(self, urls: list[str]) -> None:
        pending: dict[str, deque] = {}
        for raw in urls:
            url = normalize_url(raw)
            host = urlsplit(url).netloc if url else "(invalid)"
            if url is None or url in self.done or url in self.seen:
                self.hosts[host]["invalid url" if url is None else
                                 "already in output" if url in self.done else "duplicate"] += 1
                continue
            self.seen.add(url)
            pending.setdefault(host, deque()).append(url)
        self.seen.clear()  # from here on it holds what this run has requested
        outputs = [path for path in (self.out, self.warc_path) if path is not None]
        new = [path for path in outputs if not path.exists()]
        for path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
        if self.warc_path is not None and self.resume:
            _repair_warc(self.warc_path, self.done)
        try:
            self._fetch_all(pending)
        finally:
            for path in new:  # a crawl that fetched nothing leaves no empty output behind
                if path.exists() and path.stat().st_size == 0:
                    path.unlink()

    def _fetch_all(self, pending: dict) -> None:
        with open(self.out, "ab") as self.out_file, \
                (open(self.warc_path, "ab") if self.warc_path else io.BytesIO()) as warc_file:
            from warcio.warcwriter import WARCWriter

            self.warc = WARCWriter(warc_file, gzip=True) if self.warc_path else None
            while pending:
                # Whichever host may be asked soonest goes next, so one slow host does not hold back the others.
                host = min(pending, key=lambda h: self.next_at.get(h, 0.0))
                url = pending[host].popleft()
                if not pending[host]:
                    del pending[host]
                self.hosts[host]["max pages" if 0 < self.max_pages <= self.fetched else self._crawl_one(url)] += 1

    def _crawl_one(self, requested: str) -> str:
        """Fetches one URL, following redirects; returns 'fetched' or the reason it was skipped."""
        url, chain = requested, [requested]
        while True:
            if url in self.seen or (url != requested and url in self.done):
                return "duplicate"
            self.seen.add(url)
            host = urlsplit(url).netloc
            try:
                check_host(urlsplit(url).hostname, self.allow_private)
            except PrivateAddressError:
                return "private address"
            robots = self._robots(host, url)
            if robots is None:
                return "private address" if host in self.private_hosts else "robots unavailable"
            if not robots.can_fetch(url, self.ua):
                return "robots"
            result = self._get(url, host)
            if isinstance(result, str):
                return result
            status, headers, body = result
            if status in _REDIRECTS and headers.get("Location"):
                target = normalize_url(urljoin(url, headers["Location"]))
                if target is None:
                    return "invalid redirect"
                if target in chain:
                    return "redirect loop"
                if len(chain) > self.max_redirects:
                    return "too many redirects"
                url = target
                chain.append(url)
                continue
            if not 200 <= status < 300:
                return f"http {status}"
            self._write(requested, url, status, headers, body)
            return "fetched"

    def _get(self, url: str, host: str):
        """(status, headers, body) or a skip reason; body is None unless a 2xx HTML page within max_bytes."""
        failure, wait = "connection error", 0.0
        for attempt in range(self.retries + 1):
            self._wait(host, wait)
            wait = self.backoff * 2 ** attempt
            try:
                result = self._attempt(url)
            except PrivateAddressError:
                return "private address"
            except TimeoutError:  # socket.timeout is TimeoutError since 3.10
                failure = "timeout"
                continue
            except (URLError, OSError, HTTPException) as e:  # URLError wraps a connect timeout
                if isinstance(getattr(e, "reason", None), PrivateAddressError):
                    return "private address"
                failure = "timeout" if isinstance(getattr(e, "reason", None), TimeoutError) else "connection error"
                continue
            finally:
                self.next_at[host] = time.monotonic() + self.delay.get(host, self.interval)
            if isinstance(result, tuple) and (result[0] == 429 or result[0] >= 500):
                failure = f"http {result[0]} after retries"
                retry_after = result[1].get("Retry-After", "").strip()
                if retry_after.isdigit():
                    wait = min(float(retry_after), _MAX_RETRY_AFTER)
                continue
            return result
        return failure

    def _attempt(self, url: str):
        request = Request(url, headers={"User-Agent": self.ua, "Accept": "text/html,application/xhtml+xml;q=0.9"})
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except HTTPError as e:  # a 3xx/4xx/5xx reply is still a reply
            response = e
        with response:
            status, headers = response.status, response.headers
            if not 200 <= status < 300:
                return status, headers, None
            if headers.get_content_type() not in _HTML_TYPES:
                return "not html"
            length = headers.get("Content-Length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                return "too large"  # said so up front: not one byte of the body is read
            try:
                body = decoded_body(response, self.max_bytes)
            except TooLarge:
                return "too large"
            except UnknownEncoding:
                return "unsupported content encoding"
            except (OSError, EOFError, zlib.error):
                return "bad content encoding"
            return status, headers, body

    def _wait(self, host: str, at_least: float) -> None:
        # The delay counts from the end of the previous request, so the server sees gaps of at least 1/rate.
        now = time.monotonic()
        time.sleep(max(self.next_at.get(host, 0.0) - now, at_least, 0.0))

    def _robots(self, host: str, url: str) -> Protego | None:
        """The host's robots.txt (RFC 9309: wildcards and $ anchors), fetched once; None when it failed (5xx,
        timeout): the host is skipped this run."""
        if host in self.robots:
            return self.robots[host]
        robots_url = f"{urlsplit(url).scheme}://{host}/robots.txt"
        self._wait(host, 0.0)
        try:
            with self.robots_opener.open(Request(robots_url, headers={"User-Agent": self.ua}),
                                         timeout=self.timeout) as response:
                parser = Protego.parse(decoded_body(response, self.max_bytes).decode("utf-8", errors="replace"))
            self.robots_note[host] = "ok"
        except HTTPError as e:
            if e.code >= 500 or e.code == 429:
                parser, self.robots_note[host] = None, f"http {e.code}: host skipped this run"
            else:  # 404 and the like: no robots.txt, so everything is allowed; 401/403: nothing is
                forbidden = e.code in (401, 403)
                parser = Protego.parse("User-agent: *\nDisallow: /\n" if forbidden else "")
                self.robots_note[host] = f"http {e.code}: " + ("disallow all" if forbidden else "allow all")
        except (URLError, OSError, HTTPException, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            kind = "timeout" if isinstance(reason, TimeoutError) else f"error ({reason})"
            parser, self.robots_note[host] = None, f"{kind}: host skipped this run"
            if isinstance(reason, PrivateAddressError):
                self.private_hosts.add(host)
        rate = parser and parser.request_rate(self.ua)
        asked = float(max(parser and parser.crawl_delay(self.ua) or 0, rate.seconds / rate.requests if rate else 0))
        if asked > self.interval:
            self.robots_note[host] += f", crawl-delay {asked:g} s"
        self.delay[host] = max(self.interval, asked)
        self.next_at[host] = time.monotonic() + self.delay[host]
        self.robots[host] = parser
        return parser

    def _write(self, requested: str, url: str, status: int, headers, body: bytes) -> None:
        now = datetime.now(timezone.utc)
        html, replaced = decode_html_counted(body, headers.get_content_charset())
        self.replacement_chars += replaced
        self.pages_with_replacements += bool(replaced)
        record = {"id": hashlib.sha1(url.encode()).hexdigest(), "url": url, "requested_url": requested,
                  "status": status, "fetched_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "content_type": headers.get("Content-Type", ""), "html": html, "text": html_to_text(html)}
        # The WARC record first, then the jsonl line, each flushed: the line marks the page done, so a page is
        # done only when both outputs have it (a record a kill left without its line is cut off on resume).
        if self.warc:
            self._write_warc(url, status, headers, body, now)
        self.out_file.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self.out_file.flush()
        self.done.add(url)
        self.fetched += 1
        self.no_text += not record["text"]

    def _write_warc(self, url, status, headers, body, now) -> None:
        from warcio.statusandheaders import StatusAndHeaders

        # The body was de-chunked by urllib, so the stored headers must describe the bytes actually stored.
        # ... and the body stored is the decoded one (Content-Encoding undone), so that header goes too.
        kept = [(k, v) for k, v in headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "content-encoding")]
        http_headers = StatusAndHeaders(f"{status} {responses.get(status, 'OK')}",
                                        kept + [("Content-Length", str(len(body)))], protocol="HTTP/1.1")
        record = self.warc.create_warc_record(
            url, "response", payload=io.BytesIO(body), http_headers=http_headers,
            warc_headers_dict={"WARC-Date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "WARC-Identified-Payload-Type": headers.get_content_type()})
        self.warc.write_record(record)
        self.warc.out.flush()


def _repair_warc(path: Path, done: set[str]) -> int:
    """Cuts off what an interrupted crawl left at the end of a .warc.gz: a record torn mid-write, and a complete
    record whose page never got its jsonl line (it is fetched again). Returns the records removed."""
    from warcio.archiveiterator import ArchiveIterator

    if not path.exists() or path.stat().st_size == 0:
        return 0
    records = []  # (uri, offset)
    with open(path, "rb") as f:
        iterator = ArchiveIterator(f)
        try:
            for record in iterator:
                record.content_stream().read()
                records.append((record.rec_headers.get_header("WARC-Target-URI"), iterator.get_record_offset()))
        except Exception:  # noqa: BLE001  (warcio's errors for a damaged tail)
            pass
    size, removed = path.stat().st_size, 0
    cut = size
    if records:
        with open(path, "rb") as f:  # is the last gzip member whole?
            f.seek(records[-1][1])
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                while (chunk := f.read(1 << 20)) and not inflater.eof:
                    inflater.decompress(chunk)
            except zlib.error:
                pass
        if not inflater.eof:
            cut, removed = records.pop()[1], 1
        if records and normalize_url(records[-1][0] or "") not in done:
            cut, removed = records.pop()[1], removed + 1
    else:
        cut = 0 if size else size
    if cut < size:
        with open(path, "r+b") as f:
            f.truncate(cut)
    return removed


def _resume_urls(out: Path) -> set[str]:
    """URLs (requested and final) already in `out`; a torn last line from an interrupted run is cut off."""
    urls, complete = set(), 0
    if not out.exists():
        return urls
    with open(out, "r+b") as f:
        for line in f:
            if not line.endswith(b"\n"):
                f.truncate(complete)  # else the next record would be appended to the torn one
                break
            complete += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            urls |= {normalize_url(record.get(k) or "") for k in ("url", "requested_url")}
    return urls - {None}


def crawl(urls: list[str], out: Path, *, warc: Path | None = None, rate: float = 1.0, timeout: float = 10,
          retries: int = 3, backoff: float = 0.5, max_pages: int = 0, user_agent: str = USER_AGENT,
          max_bytes: int = 10_000_000, max_redirects: int = 5, resume: bool = True,
          allow_private: bool = False) -> dict:
    """Fetches `urls` into `out` (JSON lines) and `warc`; writes and returns the report (see module docstring).
    allow_private: also fetch from loopback, private and link-local addresses (an intranet, a test server)."""
    if rate <= 0 or timeout <= 0 or retries < 0 or max_bytes <= 0:
        raise DataError(f"rate={rate}, timeout={timeout}, max_bytes={max_bytes} must be > 0 and retries={retries} "
                        f">= 0; fix the arguments")
    out, start = Path(out), time.monotonic()
    check_outputs(out, warc)
    crawler = _Crawler(out, Path(warc) if warc else None, rate, timeout, retries, backoff, max_pages, user_agent,
                       max_bytes, max_redirects, resume, allow_private)
    try:
        crawler.run(urls)
    except OSError as e:  # network errors are handled per URL; this is the output side
        raise DataError(f"cannot write {e.filename or out} ({e.strerror}); check the --out/--warc paths and free "
                        f"space") from None
    hosts = {host: {"fetched": c.pop("fetched", 0), "skipped": dict(c.most_common()),
                    "robots": crawler.robots_note.get(host, "not fetched")} for host, c in crawler.hosts.items()}
    skipped = sum((Counter(h["skipped"]) for h in hosts.values()), Counter())
    report = {"fetched": crawler.fetched, "no_text": crawler.no_text, "replacement_chars": crawler.replacement_chars,
              "pages_with_replacements": crawler.pages_with_replacements, "skipped": dict(skipped.most_common()),
              "out": str(out), "warc": str(warc) if warc else None, "seconds": round(time.monotonic() - start, 2), "hosts": hosts}
    report_path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def check_outputs(out: Path, warc: Path | None) -> None:
    """--out and --warc name files that can be written (checked before anything is fetched)."""
    for flag, path in (("--out", out), ("--warc", warc)):
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{flag} {path} is a directory; give a file in it, e.g. {path / 'pages.jsonl'}")
        parent = next((p for p in path.parents if p.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent if not path.exists() else path, os.W_OK):
            raise DataError(f"{flag} {path} cannot be written ({parent} is not a writable directory); choose "
                            "another path")


def report_path(out: Path) -> Path:
    return Path(out).with_suffix(".report.json")


def render_report(report: dict, max_hosts: int = 15) -> str:
    def reasons(counts: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"

    no_text = f" ({report['no_text']} with no main text: `text` is empty)" if report.get("no_text") else ""
    if report.get("replacement_chars"):
        no_text += (f" ({report['pages_with_replacements']} with undecodable bytes: {report['replacement_chars']} "
                    "characters replaced by U+FFFD)")
    lines = [f"crawled {report['fetched']} pages{no_text}, skipped {sum(report['skipped'].values())} URLs in "
             f"{report['seconds']} s -> {report['out']}" + (f" and {report['warc']}" if report["warc"] else ""),
             f"skipped: {reasons(report['skipped'])}", ""]
    hosts = sorted(report["hosts"].items(), key=lambda kv: -kv[1]["fetched"] - sum(kv[1]["skipped"].values()))
    for host, h in hosts[:max_hosts]:
        lines.append(f"  {host}: fetched {h['fetched']}, skipped {reasons(h['skipped'])} (robots.txt: {h['robots']})")
    if len(hosts) > max_hosts:
        lines.append(f"  ... and {len(hosts) - max_hosts} more hosts in {report_path(Path(report['out']))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gptjax.data.crawl", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--urls", help="text file with one URL per line ('#' comments allowed)")
    source.add_argument("--sitemap", help="sitemap.xml URL or file (a sitemap index is followed)")
    parser.add_argument("--out", required=True, type=Path, help="output JSON lines file")
    parser.add_argument("--warc", type=Path, help="also write the responses to this .warc.gz")
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second per host (default 1)")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per request (default 10)")
    parser.add_argument("--retries", type=int, default=3, help="retries on errors, 5xx and 429 (default 3)")
    parser.add_argument("--max-pages", type=int, default=0, help="stop after this many pages (0: no limit)")
    parser.add_argument("--user-agent", default=USER_AGENT, help="the User-agent sent, and matched in robots.txt")
    parser.add_argument("--max-bytes", type=int, default=10_000_000, help="larger pages are skipped")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="skip URLs already in --out (default on)")
    parser.add_argument("--allow-private", action="store_true",
                        help="also fetch from loopback, private and link-local addresses (an intranet crawl)")
    args = parser.parse_args(argv)

    def work() -> None:
        check_outputs(args.out, args.warc)
        urls = read_url_list(args.urls) if args.urls else read_sitemap(
            args.sitemap, args.timeout, user_agent=args.user_agent, allow_private=args.allow_private)
        report = crawl(urls, args.out, warc=args.warc, rate=args.rate, timeout=args.timeout, retries=args.retries,
                       max_pages=args.max_pages, user_agent=args.user_agent, max_bytes=args.max_bytes,
                       resume=args.resume, allow_private=args.allow_private)
        print(render_report(report))
        failed = {why: n for why, n in report["skipped"].items() if why not in ("already in output", "duplicate")}
        if report["fetched"] == 0 and failed:  # not an empty success
            print(f"error: no page was fetched ({', '.join(f'{why} {n}' for why, n in failed.items())}); see "
                  f"{report_path(args.out)}", file=sys.stderr)
            return 1

    try:
        return report_errors(work)
    except KeyboardInterrupt:
        print(f"error: interrupted; the pages fetched so far are in {args.out}, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
