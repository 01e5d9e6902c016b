"""HTTP for the crawler: the only openers it uses (http and https, nothing else; no loopback, private or
link-local address unless allowed), and what a response body becomes (content encodings undone within a size
limit, the charset found as the HTML standard finds it, undecodable bytes counted).
"""

from __future__ import annotations

import codecs
import http.client
import ipaddress
import re
import socket
import zlib
from urllib.request import (HTTPDefaultErrorHandler, HTTPErrorProcessor, HTTPHandler, HTTPRedirectHandler,
                            HTTPSHandler, OpenerDirector, ProxyHandler, UnknownHandler, getproxies)

from gptjax.data import DataError

_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_.:-]+)", re.I)


class PrivateAddressError(DataError, OSError):
    """A request that would reach a loopback, private, link-local or otherwise non-public address."""


def is_public(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_host(host: str | None, allow_private: bool) -> None:
    """PrivateAddressError when `host` (a name or an IP) resolves to a non-public address (DNS failures are left to
    the request, which reports them as it does any connection error)."""
    if allow_private or not host:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return
    inward = sorted(a for a in addresses if not is_public(a))
    if inward:
        raise PrivateAddressError(f"{host} resolves to {inward[0]}, a non-public address")


def _public_connection(address, *args, **kwargs) -> socket.socket:
    """socket.create_connection, refusing a connection that reached a non-public address (whatever the name
    resolved to when it was checked: DNS may answer differently the second time)."""
    sock = socket.create_connection(address, *args, **kwargs)
    peer = sock.getpeername()[0]
    if not is_public(peer):
        sock.close()
        raise PrivateAddressError(f"{address[0]} connected to {peer}, a non-public address")
    return sock


class _PublicHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _public_connection


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _public_connection


class _PublicHTTPHandler(HTTPHandler):
    def http_open(self, req):
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)


class _NoRedirects(HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # 3xx surface as HTTPError; the crawler follows them itself
        return None


def opener(allow_private: bool, follow_redirects: bool) -> OpenerDirector:
    """An opener for http and https only (urllib's default also opens file://, ftp:// and data: URLs). Through a
    proxy the connection reaches the proxy, so only the host name check applies."""
    guarded = not allow_private and not {"http", "https", "all"} & set(getproxies())
    handlers = [ProxyHandler(), UnknownHandler(), HTTPDefaultErrorHandler(), HTTPErrorProcessor(),
                HTTPRedirectHandler() if follow_redirects else _NoRedirects(),
                _PublicHTTPHandler() if guarded else HTTPHandler(), _PublicHTTPSHandler() if guarded else HTTPSHandler()]
    director = OpenerDirector()
    for handler in handlers:
        director.add_handler(handler)
    return director


_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode_html(body: bytes, header_charset: str | None) -> str:
    """As the HTML standard decodes: a byte-order mark first (it beats the header), then the header's charset,
    then a meta tag's, else UTF-8; undecodable bytes are replaced (decode_html_counted says how many)."""
    return decode_html_counted(body, header_charset)[0]


def decode_html_counted(body: bytes, header_charset: str | None) -> tuple[str, int]:
    """(text, replacement characters the decoding put in that the page did not have)."""
    for bom, charset in _BOMS:
        if body.startswith(bom):
            return _decode(body[len(bom):], charset)
    match = _META_CHARSET.search(body[:4096])
    for charset in (header_charset, match and match.group(1).decode("ascii")):
        if charset:
            try:
                return _decode(body, codecs.lookup(charset).name)
            except LookupError:  # an unknown charset name: try the next source
                continue
    return _decode(body, "utf-8")


def _decode(body: bytes, charset: str) -> tuple[str, int]:
    text = body.decode(charset, errors="replace")
    return text, text.count("\ufffd") - (body.count("\ufffd".encode(charset)) if charset.startswith("utf") else 0)


class TooLarge(DataError):
    pass


class UnknownEncoding(DataError):
    pass


def decoded_body(response, limit: int) -> bytes:
    """The body with its Content-Encoding undone (gzip, deflate; servers send them even unasked), at most
    `limit` bytes after decoding (a small gzip can unpack to gigabytes); TooLarge beyond that."""
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    raw = response.read(limit + 1)
    if encoding in ("identity", ""):
        if len(raw) > limit:
            raise TooLarge
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UnknownEncoding(encoding)
    raw += response.read()  # compressed, it may be longer than the limit and still unpack within it
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        if encoding != "deflate":
            raise
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # "deflate" is often sent raw, without the zlib header
        body = inflater.decompress(raw, limit + 1)
    if len(body) > limit:
        raise TooLarge
    return body
