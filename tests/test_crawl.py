"""The crawler against local HTTP servers only (127.0.0.1, port 0): robots, retries, redirects, rate limits, output."""

import codecs
import gzip
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import gptjax.data.crawl as crawl_module
from gptjax.data import DataError
from gptjax.data.crawl import crawl, html_to_text, normalize_url, read_sitemap, read_url_list, render_report

REPO = Path(__file__).resolve().parents[1]
SLOW_S = 0.6  # /slow answers after this; the tests' timeouts are shorter

PAGE = """<html><head><title>Page {n}</title><style>.hidden {{ color: red }}</style></head>
<body><h1>Heading {n}</h1><script>var secret = "scripted";</script>
<p>Hello   from
page {n}.</p><a href="/page{m}">next</a></body></html>"""

SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{}</urlset>"""
SITEMAP_INDEX = """<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{}</sitemapindex>"""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def reply(self, status=200, body=b"", content_type="text/html; charset=utf-8", headers=(), length=True):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        server, path = self.server, self.path
        with server.lock:
            server.hits.append((path, time.monotonic()))
            count = sum(p == path for p, _ in server.hits)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            if path == "/robots.txt":
                self.robots(server.robots)
            elif path in ("/page1", "/page2", "/page3", "/private/secret"):
                n = path[-1] if path[-1].isdigit() else 0
                self.reply(body=PAGE.format(n=n, m=int(n) % 3 + 1).encode())
            elif path == "/latin1":
                self.reply(body="<html><body><p>caf\u00e9 latin</p></body></html>".encode("latin-1"),
                           content_type="text/html; charset=ISO-8859-1")
            elif path == "/meta-latin1":
                self.reply(body='<html><head><meta charset="iso-8859-1"></head><body><p>na\u00efve</p></body></html>'
                           .encode("latin-1"),
                           content_type="text/html")
            elif path == "/slow":
                time.sleep(SLOW_S)
                self.reply(body=b"<p>late</p>")
            elif path == "/error":
                self.reply(500, b"oops")
            elif path == "/flaky":
                self.reply(503, b"busy") if count == 1 else self.reply(body=b"<p>flaky but fine</p>")
            elif path == "/busy":
                self.reply(429, b"", headers=[("Retry-After", "1")]) if count == 1 else self.reply(body=b"<p>ok</p>")
            elif path in ("/loop", "/loop2", "/redirect") or path.startswith("/hop/"):
                target = {"/loop": "/loop2", "/loop2": f"{base}/loop", "/redirect": "/page1"}.get(path) \
                    or f"/hop/{int(path.rsplit('/', 1)[1]) + 1}"
                self.reply(302, b"", headers=[("Location", target)])
            elif path == "/file.pdf":
                self.reply(body=b"%PDF-1.4 not html", content_type="application/pdf")
            elif path == "/big":  # no Content-Length: only reading tells that it is too large
                self.reply(body=b"<p>" + b"x" * 5000 + b"</p>", length=False)
            elif path == "/sitemap.xml":
                self.reply(body=SITEMAP.format("".join(f"<url><loc>{base}/page{i}</loc></url>" for i in (1, 2)))
                           .encode(), content_type="application/xml")
            elif path == "/sitemap_index.xml":
                self.reply(body=SITEMAP_INDEX.format(f"<sitemap><loc>{base}/sitemap.xml</loc></sitemap>"
                                                     f"<sitemap><loc>/sitemap3.xml</loc></sitemap>").encode(),
                           content_type="application/xml")
            elif path in ("/script.cgi", "/end", "/end/more"):
                self.reply(body=PAGE.format(n=7, m=1).encode())
            elif path == "/gzipped":  # compressed although the client never asked for it
                self.reply(body=gzip.compress(PAGE.format(n=8, m=1).encode()), headers=[("Content-Encoding", "gzip")])
            elif path == "/bom":  # the byte-order mark beats the header's charset (HTML standard)
                self.reply(body=codecs.BOM_UTF8 + "<html><body><p>caf\u00e9 au lait</p></body></html>".encode(),
                           content_type="text/html; charset=ISO-8859-1")
            elif path == "/wrong-charset":  # says UTF-8, is Latin-1: two undecodable bytes
                self.reply(body="<html><body><p>na\u00efve caf\u00e9 prose here</p></body></html>".encode("latin-1"),
                           content_type="text/html; charset=utf-8")
            elif path == "/elsewhere":  # a redirect to another server (Site.redirect_to)
                self.reply(302, b"", headers=[("Location", server.elsewhere)])
            elif path == "/sitemap_file_index.xml":  # an index naming a local file
                self.reply(body=SITEMAP_INDEX.format(f"<sitemap><loc>file://{server.local_sitemap}</loc></sitemap>"
                                                     f"<sitemap><loc>{base}/sitemap3.xml</loc></sitemap>").encode(),
                           content_type="application/xml")
            elif path == "/sitemap3.xml":
                self.reply(body=SITEMAP.format(f"<url><loc>{base}/page3</loc></url>").encode(),
                           content_type="application/xml")
            else:
                self.reply(404, b"not found")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def robots(self, mode):
        if mode == "500":
            self.reply(500, b"down")
        elif mode == "404":
            self.reply(404, b"none")
        elif mode == "slow":
            time.sleep(SLOW_S)
            self.reply(body=b"User-agent: *\nAllow: /\n", content_type="text/plain")
        elif mode == "wildcards":  # RFC 9309: * matches any characters, $ anchors the end
            self.reply(body=b"User-agent: *\nDisallow: /*.cgi\nDisallow: /end$\n", content_type="text/plain")
        else:
            delay = "Crawl-delay: 1\n" if mode == "delay" else ""
            self.reply(body=f"User-agent: *\nDisallow: /private/\n{delay}".encode(), content_type="text/plain")


class Site:
    def __init__(self, robots: str, host: str = "127.0.0.1"):
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.robots, self.server.hits, self.server.lock = robots, [], threading.Lock()
        self.server.elsewhere = self.server.local_sitemap = ""
        self.base = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str | None = None) -> list:
        with self.server.lock:
            return [t for p, t in self.server.hits if path is None or p == path]

    def paths(self) -> list[str]:
        with self.server.lock:
            return [p for p, _ in self.server.hits]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # urllib would send even 127.0.0.1 through a proxy named in the environment.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def make_site():
    sites = []

    def make(robots: str = "ok", host: str = "127.0.0.1") -> Site:
        sites.append(Site(robots, host))
        return sites[-1]

    yield make
    for site in sites:
        site.server.shutdown()
        site.server.server_close()


FAST = dict(rate=50, timeout=0.25, retries=2, backoff=0.01, allow_private=True)  # the test servers are on 127.0.0.1


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_normalize_url():
    assert normalize_url("HTTP://Example.COM:80/a?b=1#frag") == "http://example.com/a?b=1"
    assert normalize_url("https://example.com:443") == "https://example.com/"
    assert normalize_url("https://example.com:8443/x") == "https://example.com:8443/x"
    assert normalize_url("ftp://example.com/x") is None
    assert normalize_url("not a url") is None


def test_read_url_list(tmp_path):
    (tmp_path / "urls.txt").write_text("# comment\n\nhttp://a.example/x\n  http://b.example/y  \n")
    assert read_url_list(tmp_path / "urls.txt") == ["http://a.example/x", "http://b.example/y"]


def test_crawl_outcomes_output_and_warc(make_site, tmp_path):
    site, down = make_site(), make_site(robots="500")
    urls = [site.url(p) for p in ("/page1", "/page2", "/latin1", "/meta-latin1", "/private/secret", "/slow",
                                  "/error", "/flaky", "/loop", "/hop/0", "/redirect", "/file.pdf", "/missing",
                                  "/big")]
    urls += [site.url("/page1#section"), site.base.replace("http", "HTTP") + "/page2", "mailto:x@example.com",
             down.url("/page1"), down.url("/page2")]
    out, warc = tmp_path / "pages.jsonl", tmp_path / "pages.warc.gz"
    report = crawl(urls, out, warc=warc, max_bytes=2000, **FAST)

    assert report["fetched"] == 5  # page1, page2, latin1, meta-latin1, flaky
    assert report["skipped"] == {"duplicate": 3, "robots unavailable": 2, "robots": 1, "timeout": 1,
                                 "http 500 after retries": 1, "redirect loop": 1, "too many redirects": 1,
                                 "not html": 1, "http 404": 1, "too large": 1, "invalid url": 1}
    assert json.loads((tmp_path / "pages.report.json").read_text()) == report
    host, down_host = site.base.split("//")[1], down.base.split("//")[1]
    assert report["hosts"][host]["robots"] == "ok"
    assert "500" in report["hosts"][down_host]["robots"] and report["hosts"][down_host]["fetched"] == 0

    assert "/private/secret" not in site.paths()  # robots.txt was asked and obeyed
    assert len(site.hits("/error")) == FAST["retries"] + 1
    assert len(site.hits("/slow")) == FAST["retries"] + 1
    assert len(site.hits("/flaky")) == 2
    assert len(site.hits("/page1")) == 1 and len(site.hits("/page2")) == 1  # fragment/case/redirect variants
    assert len(site.hits("/redirect")) == 1
    assert len(site.hits("/robots.txt")) == 1
    assert down.paths() == ["/robots.txt"]  # a host whose robots.txt fails is not crawled at all

    records = {r["url"]: r for r in read_jsonl(out)}
    assert set(records) == {site.url(p) for p in ("/page1", "/page2", "/latin1", "/meta-latin1", "/flaky")}
    page = records[site.url("/page1")]
    assert set(page) == {"id", "url", "requested_url", "status", "fetched_at", "content_type", "html", "text"}
    assert page["status"] == 200 and page["fetched_at"].endswith("Z") and len(page["id"]) == 40
    assert "<script>" in page["html"]
    assert "scripted" not in page["text"] and "color" not in page["text"]
    assert "Hello from page 1." in page["text"] and "Heading 1" in page["text"]
    assert records[site.url("/latin1")]["text"] == "caf\u00e9 latin"
    assert records[site.url("/meta-latin1")]["text"] == "na\u00efve"
    assert report["no_text"] == sum(not r["text"] for r in records.values())

    from warcio.archiveiterator import ArchiveIterator

    with open(warc, "rb") as f:
        responses = [(r.rec_headers.get_header("WARC-Target-URI"), r.rec_headers.get_header("WARC-Date"),
                      r.content_stream().read()) for r in ArchiveIterator(f) if r.rec_type == "response"]
    assert {uri for uri, _, _ in responses} == set(records)
    assert all(date for _, date, _ in responses)
    assert dict((u, b) for u, _, b in responses)[site.url("/latin1")] == \
        "<html><body><p>caf\u00e9 latin</p></body></html>".encode("latin-1")


def test_warc_feeds_the_pipeline_reader(make_site, tmp_path):
    site = make_site()
    crawl([site.url("/page1"), site.url("/latin1")], tmp_path / "p.jsonl", warc=tmp_path / "warc" / "p.warc.gz",
          **FAST)
    from gptjax.data.stages import WarcFileReader

    docs = list(WarcFileReader(str(tmp_path / "warc")).run(rank=0, world_size=1))
    assert sorted(d.metadata["url"] for d in docs) == sorted([site.url("/page1"), site.url("/latin1")])
    assert any("caf\u00e9" in d.text for d in docs)


def test_redirect_to_a_page_later_in_the_list_is_fetched_once(make_site, tmp_path):
    site = make_site()
    report = crawl([site.url("/redirect"), site.url("/page1")], tmp_path / "p.jsonl", **FAST)
    assert report["fetched"] == 1 and report["skipped"] == {"duplicate": 1}
    [record] = read_jsonl(tmp_path / "p.jsonl")
    assert record["url"] == site.url("/page1") and record["requested_url"] == site.url("/redirect")
    assert len(site.hits("/page1")) == 1


@pytest.mark.parametrize("mode, fetched, note", [("404", 1, "allow all"), ("slow", 0, "timeout")])
def test_robots_missing_allows_and_unreachable_disallows(make_site, tmp_path, mode, fetched, note):
    site = make_site(robots=mode)
    report = crawl([site.url("/private/secret")], tmp_path / "p.jsonl", **FAST)
    assert report["fetched"] == fetched
    assert note in report["hosts"][site.base.split("//")[1]]["robots"]


def test_rate_limit_per_host(make_site, tmp_path):
    rate = 20
    site, other = make_site(), make_site()
    urls = [s.url(p) for p in ("/page1", "/page2", "/page3", "/missing", "/latin1") for s in (site, other)]
    start = time.monotonic()
    crawl(urls, tmp_path / "p.jsonl", rate=rate, timeout=1, retries=0, allow_private=True)
    elapsed = time.monotonic() - start
    for s in (site, other):
        times = s.hits()
        assert len(times) == 6  # robots.txt and five pages
        assert min(b - a for a, b in zip(times, times[1:])) >= 1 / rate
    assert elapsed < 6 / rate * 1.8  # the two hosts were asked in turn, not one after the other


def test_crawl_delay_and_retry_after_are_honoured(make_site, tmp_path):
    slow, busy = make_site(robots="delay"), make_site()
    report = crawl([slow.url("/page1"), slow.url("/page2"), busy.url("/busy")], tmp_path / "p.jsonl", **FAST)
    assert report["fetched"] == 3
    assert "crawl-delay 1" in report["hosts"][slow.base.split("//")[1]]["robots"]
    first, second = slow.hits("/page1")[0], slow.hits("/page2")[0]
    assert second - first >= 1.0
    tries = busy.hits("/busy")
    assert len(tries) == 2 and tries[1] - tries[0] >= 1.0


def test_resume_fetches_nothing_new_and_repairs_a_torn_line(make_site, tmp_path):
    site = make_site()
    urls = [site.url(p) for p in ("/redirect", "/page1", "/page2", "/latin1")]
    out = tmp_path / "p.jsonl"
    first = crawl(urls, out, **FAST)
    assert first["fetched"] == 3 and first["skipped"] == {"duplicate": 1}
    with open(out, "ab") as f:
        f.write(b'{"id": "torn')  # as if the crawl was killed mid-line
    hits = len(site.paths())
    second = crawl(urls, out, **FAST)
    assert second["fetched"] == 0 and second["skipped"] == {"already in output": 4}
    assert len(site.paths()) == hits
    assert len(read_jsonl(out)) == 3  # the torn line was cut off
    third = crawl(urls + [site.url("/page3")], out, resume=True, **FAST)
    assert third["fetched"] == 1 and len(read_jsonl(out)) == 4


def test_max_pages(make_site, tmp_path):
    site = make_site()
    report = crawl([site.url(p) for p in ("/page1", "/page2", "/page3")], tmp_path / "p.jsonl", max_pages=2,
                   **FAST)
    assert report["fetched"] == 2 and report["skipped"] == {"max pages": 1}


def test_sitemaps(make_site, tmp_path):
    site = make_site()
    assert read_sitemap(site.url("/sitemap.xml"), 1, allow_private=True) == [site.url("/page1"), site.url("/page2")]
    assert read_sitemap(site.url("/sitemap_index.xml"), 1, allow_private=True) == [site.url(f"/page{i}") for i in (1, 2, 3)]
    local = tmp_path / "sitemap.xml"
    local.write_text(SITEMAP.format(f"<url><loc>{site.url('/page3')}</loc></url>").replace(' xmlns="', ' xmlns:x="'))
    assert read_sitemap(str(local), 1, allow_private=True) == [site.url("/page3")]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gptjax.data.crawl", "--allow-private", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_cli_sitemap_and_urls(make_site, tmp_path):
    site = make_site()
    (tmp_path / "urls.txt").write_text(f"# pages\n{site.url('/page1')}\n\n{site.url('/file.pdf')}\n")
    result = run_cli("--urls", tmp_path / "urls.txt", "--out", tmp_path / "a.jsonl", "--rate", 50)
    assert result.returncode == 0, result.stderr
    assert "crawled 1 pages" in result.stdout and "not html 1" in result.stdout
    assert json.loads((tmp_path / "a.report.json").read_text())["fetched"] == 1

    result = run_cli("--sitemap", site.url("/sitemap_index.xml"), "--out", tmp_path / "b.jsonl", "--rate", 50,
                     "--warc", tmp_path / "b.warc.gz")
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(tmp_path / "b.jsonl")) == 3 and (tmp_path / "b.warc.gz").stat().st_size > 0


def test_cli_missing_url_file_is_a_one_line_error(tmp_path):
    result = run_cli("--urls", tmp_path / "nope.txt", "--out", tmp_path / "a.jsonl")
    assert result.returncode == 2
    assert result.stderr.startswith("error: URL list") and result.stderr.count("\n") == 1
    assert not (tmp_path / "a.jsonl").exists()


def test_a_page_without_main_text_gets_an_empty_text():
    assert html_to_text("<html><body><script>var x = 1;</script><nav> </nav></body></html>") == ""
    assert render_report({"fetched": 3, "no_text": 1, "skipped": {}, "out": "p.jsonl", "warc": None,
                          "seconds": 1.0, "hosts": {}}).startswith("crawled 3 pages (1 with no main text")


# ----------------------------------------------------------------------------------------------------------------
# Never turned inward: only http(s), only public addresses unless --allow-private


SAFE = {k: v for k, v in FAST.items() if k != "allow_private"}


def test_private_addresses_are_refused_by_default(make_site, tmp_path):
    site = make_site()
    report = crawl([site.url("/page1")], tmp_path / "p.jsonl", **SAFE)
    assert report["fetched"] == 0 and report["skipped"] == {"private address": 1}
    assert site.hits() == []  # not even robots.txt was asked for
    with pytest.raises(DataError, match=r"resolves to 127.0.0.1, a non-public address.*--allow-private"):
        read_sitemap(site.url("/sitemap.xml"), 1)


@pytest.fixture
def public_and_internal(make_site, monkeypatch):
    """127.0.0.1 plays a public web server; 127.0.0.2 an internal one (a metadata service, an intranet host)."""
    public, internal = make_site(), make_site(host="127.0.0.2")
    monkeypatch.setattr("gptjax.data.http.is_public", lambda ip: ip == "127.0.0.1")
    return public, internal


def test_a_redirect_to_an_internal_address_is_not_followed(public_and_internal, tmp_path, monkeypatch):
    public, internal = public_and_internal
    public.server.elsewhere = internal.url("/page1")
    report = crawl([public.url("/elsewhere")], tmp_path / "p.jsonl", **SAFE)
    assert report["skipped"] == {"private address": 1} and internal.hits() == []
    # A name that passed the check but connects inward (DNS answering differently the second time): the
    # connection itself is refused before a request is sent.
    monkeypatch.setattr(crawl_module, "check_host", lambda host, allow_private: None)
    report = crawl([public.url("/elsewhere")], tmp_path / "q.jsonl", **SAFE)
    assert report["skipped"] == {"private address": 1} and internal.hits() == []
    # With --allow-private both are crawled.
    report = crawl([public.url("/elsewhere")], tmp_path / "r.jsonl", **FAST)
    assert report["fetched"] == 1 and internal.paths() == ["/robots.txt", "/page1"]


def test_a_remote_sitemap_index_cannot_name_a_local_file(public_and_internal, tmp_path, capsys):
    public, _ = public_and_internal
    local = tmp_path / "secret_sitemap.xml"
    local.write_text(SITEMAP.format("<url><loc>http://127.0.0.1:1/from-a-local-file</loc></url>"))
    public.server.local_sitemap = str(local)
    urls = read_sitemap(public.url("/sitemap_file_index.xml"), 1)
    assert urls == [public.url("/page3")]
    assert f"names file://{local}, which is not an http(s) URL; not followed" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"only http\(s\) URLs"):
        read_sitemap(f"file://{local}", 1)


def test_out_must_be_a_writable_file(tmp_path):
    (tmp_path / "urls.txt").write_text("http://example.invalid/\n")
    result = run_cli("--urls", tmp_path / "urls.txt", "--out", tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"--out {tmp_path} is a directory; give a file in it" in result.stderr


def test_a_warc_source_gets_the_same_text_as_the_crawls_jsonl(make_site, tmp_path):
    from gptjax.data.stages import MainText, WarcFileReader

    site = make_site()
    crawl([site.url("/page1"), site.url("/latin1")], tmp_path / "p.jsonl", warc=tmp_path / "warc" / "p.warc.gz",
          **FAST)
    extracted = {d.metadata["url"]: d.text for d in MainText().run(
        WarcFileReader(str(tmp_path / "warc")).run(rank=0, world_size=1))}
    assert extracted == {r["url"]: r["text"] for r in read_jsonl(tmp_path / "p.jsonl")}



def test_robots_wildcards_and_end_anchors(make_site, tmp_path):
    site = make_site(robots="wildcards")
    report = crawl([site.url(p) for p in ("/script.cgi", "/end", "/end/more", "/page1")], tmp_path / "p.jsonl",
                   **FAST)
    assert report["skipped"] == {"robots": 2} and report["fetched"] == 2
    assert sorted(site.paths()) == ["/end/more", "/page1", "/robots.txt"]


def test_content_encoding_byte_order_marks_and_undecodable_bytes(make_site, tmp_path):
    site = make_site()
    report = crawl([site.url(p) for p in ("/gzipped", "/bom", "/wrong-charset")], tmp_path / "p.jsonl", **FAST)
    pages = {r["url"].rsplit("/", 1)[1]: r for r in read_jsonl(tmp_path / "p.jsonl")}
    assert "page 8" in pages["gzipped"]["text"] and "\x1f" not in pages["gzipped"]["html"]
    assert "caf\u00e9 au lait" in pages["bom"]["text"]  # not the mojibake ISO-8859-1 would give
    assert "\ufffd" in pages["wrong-charset"]["html"]
    assert report["replacement_chars"] == 2 and report["pages_with_replacements"] == 1
    assert "1 with undecodable bytes: 2 characters replaced by U+FFFD" in render_report(report)


def test_a_page_is_done_only_when_both_outputs_have_it(make_site, tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    site = make_site()
    urls = [site.url(f"/page{i}") for i in (1, 2, 3)]
    out, warc = tmp_path / "p.jsonl", tmp_path / "p.warc.gz"
    crawl(urls, out, warc=warc, **FAST)
    # Killed while page3's WARC record was being written (its jsonl line never came)...
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]))
    warc.write_bytes(warc.read_bytes()[:-40])
    again = crawl(urls, out, warc=warc, **FAST)
    assert again["fetched"] == 1
    # ...and killed between page3's WARC record and its jsonl line.
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:2]))
    assert crawl(urls, out, warc=warc, **FAST)["fetched"] == 1

    def warc_urls():
        with open(warc, "rb") as f:
            return [r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(f)]

    assert warc_urls() == urls and [r["url"] for r in read_jsonl(out)] == urls  # each page once, in both


def test_a_crawl_that_fetches_nothing_fails_and_leaves_no_empty_output(tmp_path, capsys):
    from gptjax.data.crawl import main

    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b\n")  # nothing listens there
    out, warc = tmp_path / "pages.jsonl", tmp_path / "pages.warc.gz"
    assert main(["--urls", str(tmp_path / "urls.txt"), "--out", str(out), "--warc", str(warc),
                 "--allow-private"]) == 1
    assert "error: no page was fetched (robots unavailable 2)" in capsys.readouterr().err
    assert not out.exists() and not warc.exists() and (tmp_path / "pages.report.json").exists()
