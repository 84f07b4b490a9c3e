# cython: language_level=3
"""The compiled half of the JATS parser: text, paragraphs, figures and tables read from libxml2's
nodes under lxml's tree, without an lxml proxy object per element.

``pmcurate.harvest.jats`` parses the XML safely with lxml and reads the metadata; everything that
visits many elements (the paragraph walk, the text of every paragraph, caption, cell and title,
the figure and table rows) is here, in C. The rules are the ones docs/jats.md states; the
output is locked byte for byte by ``tests/harvest/test_jats_digest.py``.

The walk reads ``xmlNode`` fields only (``type``, ``name``, ``ns``, ``children``, ``next``,
``content``, ``properties``) and calls no libxml2 function, so it works with whichever libxml2
lxml carries. Trees reaching it hold elements, text and CDATA only: the parser drops comments and
processing instructions, and ``jats.parse`` refuses documents with entity references it cannot
resolve. Rare constructs (MathML, attribute defaults declared in a DTD's internal subset) go
through lxml's own API on a proxy, as they did before.
"""

import re
from functools import lru_cache

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.unicode cimport Py_UNICODE_ISALNUM, PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memchr, memcpy, strcmp, strlen


cdef extern from "string.h":
    void* memmem(const void* haystack, size_t haystack_size, const void* needle, size_t needle_size) nogil

cimport lxml.includes.etreepublic as cetree
from lxml.includes cimport tree
from lxml.includes.etreepublic cimport _Document, _Element
from lxml.includes.tree cimport xmlAttr, xmlNode

cetree.import_lxml__etree()

BUILT_FROM_SHA256 = PYX_SHA256  # this file's SHA-256, given by setup.py at build time (jats.check_build)

XLINK_NS = "http://www.w3.org/1999/xlink"
MML_NS = "http://www.w3.org/1998/Math/MathML"
ALI_NS = "http://www.niso.org/schemas/ali/1.0/"
TAXPUB_NS = "http://www.plazi.org/taxpub"
HREF = f"{{{XLINK_NS}}}href"
MML_MATH = f"{{{MML_NS}}}math"
_PREFIXES = {MML_NS: "mml", XLINK_NS: "xlink", ALI_NS: "ali", TAXPUB_NS: "tp"}

CITATION_MODES = ("marker", "drop")
DROPPED = "\x00"  # stands for a dropped citation until the text is whole; never a character of XML text
cdef const char* DROPPED_BYTE = b"\x00"
_SEPARATOR = r"[\s,;\-\u2010-\u2015\u2212]*"
_DROPPED_GROUP = re.compile(
    rf"\s*(?:\[{_SEPARATOR}(?:\x00{_SEPARATOR})+\]|\({_SEPARATOR}(?:\x00{_SEPARATOR})+\)"
    rf"|\x00(?:{_SEPARATOR}\x00)*)"
)
_CITATION_PUNCTUATION = re.compile(r"[\s,;\-\u2010-\u2015\u2212\[\]()]*")
_NUMBERED_CITATION = re.compile(r"\d+[a-z]?(?:\s*[,;\-\u2010-\u2015\u2212]\s*\d+[a-z]?)*")

def find_bytes(bytes data, bytes needle, Py_ssize_t start=0, Py_ssize_t end=-1) -> int:
    """``data.find(needle, start, end)`` for a non-empty needle and non-negative bounds (``end=-1``:
    to the end), with libc's ``memmem``: several times faster than ``bytes.find`` on whole documents."""
    cdef Py_ssize_t size = len(data)
    if end < 0 or end > size:
        end = size
    if not needle or start < 0:
        raise ValueError("find_bytes: a non-empty needle and a non-negative start")
    if start >= end:
        return -1
    cdef const char* base = data
    cdef void* at = memmem(base + start, end - start, <const char*>needle, len(needle))
    return -1 if at is NULL else <const char*>at - base


# --- what each element is ---------------------------------------------------------------------------
#
# Element names are classified once per node by a switch on the name: bits below. The sets are the
# text rules of docs/jats.md: blocks are separated by whitespace, floats and notes never enter the
# running text, formulas are read once.

cdef enum:
    K_BLOCK = 1 << 0  # text separated from its neighbours by whitespace
    K_FLOAT = 1 << 1  # floats and notes: rows (or places) of their own, never running text
    K_FORMULA = 1 << 2  # inline-formula, disp-formula
    K_FORMULA_PART = 1 << 3  # formulas and what renders one: alternatives, tex-math, mml:math
    K_NESTED_FLOAT = 1 << 4  # floats that leave a <p> holding them (fig, table-wrap, ...)
    K_SKIP = 1 << 5  # never walked for paragraphs
    K_SUP = 1 << 6
    K_XREF = 1 << 7
    K_TABLE = 1 << 8
    K_P = 1 << 9
    K_SEC = 1 << 10
    K_CELL = 1 << 11  # td, th
    K_TR = 1 << 12

cdef int SPECIAL_OR_XREF = K_BLOCK | K_FLOAT | K_FORMULA_PART | K_SUP | K_XREF
cdef int NOT_INLINE = K_FORMULA_PART | K_BLOCK | K_FLOAT | K_SUP | K_XREF | K_TABLE

cdef const char* C_MML_NS = b"http://www.w3.org/1998/Math/MathML"
cdef const char* C_ALI_NS = b"http://www.niso.org/schemas/ali/1.0/"
cdef const char* C_XLINK_NS = b"http://www.w3.org/1999/xlink"


cdef inline bint _eq(const char* a, const char* b) noexcept nogil:
    return strcmp(a, b) == 0


cdef inline const char* _href(xmlNode* n) noexcept nogil:
    return <const char*>n.ns.href if n.ns is not NULL else NULL


cdef int _kind(xmlNode* n) noexcept nogil:
    """The K_ bits of an element node (0 for any other node)."""
    if n.type != tree.XML_ELEMENT_NODE:
        return 0
    cdef const char* s = <const char*>n.name
    cdef const char* href = _href(n)
    if href is not NULL:
        if _eq(href, C_MML_NS) and _eq(s, b"math"):
            return K_FORMULA_PART | K_SKIP
        if _eq(href, C_ALI_NS) and _eq(s, b"license_ref"):
            return K_SKIP
        return 0
    cdef char c = s[0]
    if c == b"p":
        if s[1] == 0:
            return K_BLOCK | K_P
        if _eq(s, b"preformat"):
            return K_BLOCK
    elif c == b"s":
        if _eq(s, b"sec"):
            return K_SEC
        if _eq(s, b"sup"):
            return K_SUP
        if _eq(s, b"statement") or _eq(s, b"speech"):
            return K_BLOCK
        if _eq(s, b"supplementary-material"):
            return K_FLOAT | K_NESTED_FLOAT | K_SKIP
        if _eq(s, b"sub-article"):
            return K_FLOAT | K_SKIP
        if _eq(s, b"sec-meta"):
            return K_SKIP
    elif c == b"x":
        if _eq(s, b"xref"):
            return K_XREF
    elif c == b"t":
        if s[1] == b"d" and s[2] == 0 or s[1] == b"h" and s[2] == 0:
            return K_BLOCK | K_CELL
        if s[1] == b"r" and s[2] == 0:
            return K_BLOCK | K_TR
        if _eq(s, b"title"):
            return K_BLOCK | K_SKIP
        if _eq(s, b"table"):
            return K_BLOCK | K_TABLE
        if _eq(s, b"thead") or _eq(s, b"tbody") or _eq(s, b"tfoot") or _eq(s, b"term"):
            return K_BLOCK
        if _eq(s, b"table-wrap") or _eq(s, b"table-wrap-group"):
            return K_FLOAT | K_NESTED_FLOAT | K_SKIP
        if _eq(s, b"tex-math"):
            return K_FORMULA_PART
    elif c == b"l":
        if _eq(s, b"list") or _eq(s, b"list-item"):
            return K_BLOCK
        if _eq(s, b"label"):
            return K_BLOCK | K_SKIP
    elif c == b"f":
        if _eq(s, b"fig") or _eq(s, b"fig-group"):
            return K_FLOAT | K_NESTED_FLOAT | K_SKIP
        if _eq(s, b"fn") or _eq(s, b"fn-group"):
            return K_FLOAT | K_SKIP
    elif c == b"d":
        if _eq(s, b"def") or _eq(s, b"def-item") or _eq(s, b"def-list") or _eq(s, b"disp-quote"):
            return K_BLOCK
        if _eq(s, b"disp-formula"):
            return K_FORMULA | K_FORMULA_PART | K_SKIP
    elif c == b"i":
        if _eq(s, b"inline-formula"):
            return K_FORMULA | K_FORMULA_PART | K_SKIP
        if _eq(s, b"inline-supplementary-material"):
            return K_FLOAT | K_SKIP
    elif c == b"c":
        if _eq(s, b"caption"):
            return K_BLOCK | K_SKIP
        if _eq(s, b"chem-struct-wrap") or _eq(s, b"code"):
            return K_BLOCK
    elif c == b"b":
        if _eq(s, b"boxed-text") or _eq(s, b"break"):
            return K_BLOCK
        if _eq(s, b"back"):
            return K_SKIP
    elif c == b"a":
        if _eq(s, b"alternatives"):
            return K_FORMULA_PART
        if _eq(s, b"address") or _eq(s, b"array") or _eq(s, b"attrib"):
            return K_BLOCK
    elif c == b"g":
        if _eq(s, b"graphic"):
            return K_FLOAT | K_SKIP
        if _eq(s, b"glossary"):
            return K_SKIP
    elif c == b"m":
        if _eq(s, b"media"):
            return K_FLOAT | K_SKIP
    elif c == b"r":
        if _eq(s, b"ref-list") or _eq(s, b"response"):
            return K_FLOAT | K_SKIP
    elif c == b"v":
        if _eq(s, b"verse-group") or _eq(s, b"verse-line"):
            return K_BLOCK
    return 0


cdef inline bint _is_named(xmlNode* n, const char* name) noexcept nogil:
    """An element of no namespace named ``name`` (what lxml's ``find("name")`` matches)."""
    return (
        n.type == tree.XML_ELEMENT_NODE
        and n.name[0] == name[0]
        and (n.ns is NULL or n.ns.href is NULL)
        and _eq(<const char*>n.name, name)
    )


cdef inline bint _is_text(xmlNode* n) noexcept nogil:
    return n.type == tree.XML_TEXT_NODE or n.type == tree.XML_CDATA_SECTION_NODE


cdef inline xmlNode* _next_in(xmlNode* n, xmlNode* top) noexcept nogil:
    """The node after ``n`` in document order within ``top``'s subtree (NULL past its end)."""
    if n.type == tree.XML_ELEMENT_NODE and n.children is not NULL:
        return n.children
    while n is not top:
        if n.next is not NULL:
            return n.next
        n = n.parent
    return NULL


cdef inline xmlNode* _skip_subtree(xmlNode* n, xmlNode* top) noexcept nogil:
    """The node after ``n``'s subtree in document order within ``top``'s subtree."""
    while n is not top:
        if n.next is not NULL:
            return n.next
        n = n.parent
    return NULL


cdef xmlNode* _child(xmlNode* n, const char* name) noexcept nogil:
    """The first child element of no namespace named ``name`` (``el.find(name)``)."""
    cdef xmlNode* c = n.children
    while c is not NULL:
        if _is_named(c, name):
            return c
        c = c.next
    return NULL


cdef bint _has_element_child(xmlNode* n) noexcept nogil:
    cdef xmlNode* c = n.children
    while c is not NULL:
        if c.type == tree.XML_ELEMENT_NODE:
            return True
        c = c.next
    return False


cdef inline str _decode(const char* s):
    return PyUnicode_DecodeUTF8(s, strlen(s), NULL)


# --- a growing UTF-8 buffer --------------------------------------------------------------------------

cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _buf_add_n(Buf* buf, const char* s, Py_ssize_t n) except -1:
    cdef Py_ssize_t capacity
    cdef char* grown
    if buf.size + n > buf.capacity:
        capacity = max(2 * buf.capacity, buf.size + n, 256)
        grown = <char*>PyMem_Realloc(buf.data, capacity)
        if grown is NULL:
            raise MemoryError()
        buf.data, buf.capacity = grown, capacity
    memcpy(buf.data + buf.size, s, n)
    buf.size += n
    return 0


cdef inline int _buf_add(Buf* buf, const char* s) except -1:
    return _buf_add_n(buf, s, strlen(s))


cdef inline int _buf_add_str(Buf* buf, str text) except -1:
    cdef Py_ssize_t n
    cdef const char* s = PyUnicode_AsUTF8AndSize(text, &n)
    return _buf_add_n(buf, s, n)


cdef int _buf_add_all_text(Buf* buf, xmlNode* el) except -1:
    """Append the text of every text node under ``el`` (``"".join(el.itertext())``)."""
    cdef xmlNode* n = el.children
    while n is not NULL:
        if _is_text(n) and n.content is not NULL:
            _buf_add(buf, <const char*>n.content)
        n = _next_in(n, el)
    return 0


cdef unsigned char _CLASS[256]  # 1: XML whitespace; 2: other ASCII controls ``str.split()`` splits on
cdef unsigned char _SPACED[256]  # each byte as written: XML whitespace as a space
for _c in range(256):
    _SPACED[_c] = _c
for _c in (0x20, 0x09, 0x0A, 0x0D):
    _CLASS[_c] = 1
    _SPACED[_c] = 0x20
for _c in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x1F):  # never in XML 1.0 text; ``norm`` treats them itself
    _CLASS[_c] = 2


cdef Py_ssize_t _squeeze(char* data, Py_ssize_t size, Py_ssize_t* spaces) noexcept nogil:
    """Collapse runs of XML whitespace into one space and strip both ends, in place (``norm``); the new
    size, and in ``spaces`` the spaces left. -1 when the text holds a control character that ``norm``
    treats differently in ASCII and non-ASCII text (left to ``norm`` itself).

    Branch-free: each byte is written, and kept unless it is whitespace following whitespace."""
    cdef Py_ssize_t i, out = 0, count = 0
    cdef unsigned char c, kind, white, previous = 1, odd = 0
    for i in range(size):
        c = <unsigned char>data[i]
        kind = _CLASS[c]
        white = kind & 1
        odd |= kind
        data[out] = _SPACED[c]
        out += 1 - (white & previous)
        count += white & (previous ^ 1)
        previous = white
    if odd & 2:
        return -1
    if previous and out > 0:  # a trailing run of whitespace
        out -= 1
        count -= 1
    spaces[0] = count
    return out


cdef str _finish(Buf* buf, Py_ssize_t* spaces):
    """The buffer's text whitespace-normalized (``norm``), and its spaces counted."""
    cdef Py_ssize_t size = _squeeze(buf.data, buf.size, spaces)
    if size == 0:
        return ""
    if size > 0:
        return PyUnicode_DecodeUTF8(buf.data, size, NULL)
    return _normalized(buf, spaces)


cdef str _normalized(Buf* buf, Py_ssize_t* spaces):
    """The buffer's text through ``norm`` (what ``_squeeze`` leaves to it), and its spaces counted."""
    text = norm(PyUnicode_DecodeUTF8(buf.data, buf.size, NULL))
    spaces[0] = text.count(" ")
    return text


cdef Py_UCS4 _first_char(const char* s) noexcept:
    """The first character of a non-empty UTF-8 string."""
    cdef unsigned char b = <unsigned char>s[0]
    cdef unsigned int cp
    cdef Py_ssize_t extra, j
    if b < 0x80:
        return <Py_UCS4>b
    if b >= 0xF0:
        cp, extra = b & 0x07, 3
    elif b >= 0xE0:
        cp, extra = b & 0x0F, 2
    else:
        cp, extra = b & 0x1F, 1
    for j in range(1, 1 + extra):
        cp = (cp << 6) | ((<unsigned char>s[j]) & 0x3F)
    return <Py_UCS4>cp


cdef bint _tail_starts_alnum(xmlNode* el) noexcept:
    """Whether the text after ``el`` (its lxml ``tail``) starts with a letter or digit."""
    cdef xmlNode* n = el.next
    while n is not NULL and _is_text(n):
        if n.content is not NULL and n.content[0] != 0:
            return Py_UNICODE_ISALNUM(_first_char(<const char*>n.content))
        n = n.next
    return False


cdef str _all_text(xmlNode* el):
    """The text of every text node under ``el``, as ``"".join(el.itertext())`` reads it."""
    cdef Buf buf = Buf(NULL, 0, 0)
    cdef xmlNode* n = el.children
    try:
        while n is not NULL:
            if _is_text(n) and n.content is not NULL:
                _buf_add(&buf, <const char*>n.content)
            n = _next_in(n, el)
        return PyUnicode_DecodeUTF8(buf.data, buf.size, NULL) if buf.size else ""
    finally:
        PyMem_Free(buf.data)


cdef str _run_text(xmlNode* n):
    """The text of the text nodes from ``n`` up to the next element: an lxml ``.text`` or ``.tail``."""
    cdef Buf buf = Buf(NULL, 0, 0)
    try:
        while n is not NULL and _is_text(n):
            if n.content is not NULL:
                _buf_add(&buf, <const char*>n.content)
            n = n.next
        return PyUnicode_DecodeUTF8(buf.data, buf.size, NULL) if buf.size else ""
    finally:
        PyMem_Free(buf.data)


cdef Py_UCS4 _last_char(const char* s, Py_ssize_t n) noexcept:
    """The last character of ``n`` bytes of UTF-8."""
    cdef Py_ssize_t i = n - 1
    while i > 0 and (<unsigned char>s[i]) & 0xC0 == 0x80:
        i -= 1
    cdef unsigned char b = <unsigned char>s[i]
    cdef unsigned int cp
    cdef Py_ssize_t extra
    if b < 0x80:
        return <Py_UCS4>b
    if b >= 0xF0:
        cp, extra = b & 0x07, 3
    elif b >= 0xE0:
        cp, extra = b & 0x0F, 2
    else:
        cp, extra = b & 0x1F, 1
    cdef Py_ssize_t j
    for j in range(i + 1, i + 1 + extra):
        cp = (cp << 6) | ((<unsigned char>s[j]) & 0x3F)
    return <Py_UCS4>cp


cdef bint _glued_before(xmlNode* el) noexcept:
    """Whether the text just before ``el`` (back to its previous sibling element) ends with a letter
    or digit."""
    cdef xmlNode* n = el.prev
    cdef Py_ssize_t size
    while n is not NULL and _is_text(n):
        if n.content is not NULL:
            size = strlen(<const char*>n.content)
            if size:
                return Py_UNICODE_ISALNUM(_last_char(<const char*>n.content, size))
        n = n.prev
    return False


# --- text of one element -----------------------------------------------------------------------------


def norm(str text) -> str:
    """Collapse runs of XML whitespace (space, tab, CR, LF) into one space; other characters stay."""
    if "  " in text or "\n" in text or "\t" in text or "\r" in text:
        if text.isascii():  # then str.split() splits exactly where XML whitespace is, and is fastest
            return " ".join(text.split())
        text = text.replace("\n", " ").replace("\t", " ").replace("\r", " ")
        while "  " in text:
            text = text.replace("  ", " ")
    return text.strip(" ")


cdef class Extraction:
    """The text rules for one ``parse`` call: how citations are written (``"marker"`` or ``"drop"``),
    and the text of each ``<table>``, read once although a table inside a paragraph is read for the
    paragraph and again for its own row."""

    cdef readonly bint dropping
    cdef dict tables
    cdef _Document doc
    cdef Buf buf  # the text of the element being read, reused from one to the next
    cdef Py_ssize_t spaces  # spaces in the last text read (a paragraph's words are one more)

    def __init__(self, str citations="marker"):
        if citations not in CITATION_MODES:
            raise ValueError(f"citations must be one of {', '.join(CITATION_MODES)}, not {citations!r}")
        self.dropping = citations == "drop"
        self.tables = {}

    def __dealloc__(self):
        PyMem_Free(self.buf.data)

    # -- element access for the Python side -------------------------------------------------------

    cdef inline xmlNode* _node(self, _Element el) except NULL:
        self.doc = el._doc
        return el._c_node

    cdef _Element _proxy(self, xmlNode* n):
        return cetree.elementFactory(self.doc, n)

    cdef object _attr(self, xmlNode* n, const char* name, const char* href):
        """The value of attribute ``name`` (of namespace ``href``, or none), or None: what lxml's
        ``get`` returns, including a default an internal DTD subset declares (read through lxml)."""
        cdef xmlAttr* a = n.properties
        cdef const char* a_href
        cdef Buf buf
        cdef xmlNode* t
        while a is not NULL:
            a_href = <const char*>a.ns.href if a.ns is not NULL else NULL
            if _eq(<const char*>a.name, name) and (
                (href is NULL and a_href is NULL) or (href is not NULL and a_href is not NULL and _eq(a_href, href))
            ):
                t = a.children
                if t is not NULL and t.next is NULL and t.content is not NULL:
                    return _decode(<const char*>t.content)
                buf = Buf(NULL, 0, 0)
                try:
                    while t is not NULL:
                        if t.content is not NULL:
                            _buf_add(&buf, <const char*>t.content)
                        t = t.next
                    return PyUnicode_DecodeUTF8(buf.data, buf.size, NULL) if buf.size else ""
                finally:
                    PyMem_Free(buf.data)
            a = a.next
        if n.doc is not NULL and n.doc.intSubset is not NULL:
            key = _decode(name) if href is NULL else f"{{{_decode(href)}}}{_decode(name)}"
            return self._proxy(n).get(key)
        return None

    cdef inline bint _is_bibr(self, xmlNode* n) except -1:
        return self._attr(n, b"ref-type", NULL) == "bibr"

    # -- text -----------------------------------------------------------------------------------------

    def text(self, _Element el not None) -> str:
        """The text of an element by the fidelity rules, whitespace-normalized."""
        return self._text(self._node(el))

    cdef str _text(self, xmlNode* el):
        """The text of ``el`` (``_utf8_text``) as a string."""
        text = self._utf8_text(el)
        if text is not None:
            return text
        return PyUnicode_DecodeUTF8(self.buf.data, self.buf.size, NULL) if self.buf.size else ""

    cdef str _utf8_text(self, xmlNode* el):
        """The text of ``el``, whitespace-normalized: None when it is left in ``self.buf`` as UTF-8
        (a paragraph's text goes to Arrow as those bytes, ``Paragraphs``), else the string.

        Most elements hold only inline markup: their text nodes are read straight into one buffer.
        The others (superscripts, glued or dropped citations, blocks, formulas, nested floats…) go
        through ``_collect``."""
        cdef Buf* buf = &self.buf
        cdef xmlNode* n = el.children
        cdef int kind
        cdef Py_ssize_t size
        buf.size = 0
        while n is not NULL:
            if n.type == tree.XML_ELEMENT_NODE:
                kind = _kind(n)
                if kind & SPECIAL_OR_XREF and (
                    not kind & K_XREF or (self._is_bibr(n) and (self.dropping or _glued_before(n)))
                ):
                    return self._collected_text(el)
            elif _is_text(n) and n.content is not NULL:
                _buf_add(buf, <const char*>n.content)
            n = _next_in(n, el)
        size = _squeeze(buf.data, buf.size, &self.spaces)
        if size >= 0:
            buf.size = size
            return None
        return _normalized(buf, &self.spaces)

    cdef str _collected_text(self, xmlNode* el):
        """The text of an element that holds more than inline markup, as ``_utf8_text`` gives it (read
        into a buffer of its own: reading a table's cells reuses ``self.buf``, which then takes it)."""
        cdef Buf buf = Buf(NULL, 0, 0)
        cdef Py_ssize_t size
        try:
            self._collect(el, &buf)
            if buf.size and memchr(buf.data, 0, buf.size) is not NULL:  # dropped citations
                text = norm(_DROPPED_GROUP.sub("", PyUnicode_DecodeUTF8(buf.data, buf.size, NULL)))
                self.spaces = text.count(" ")
                return text
            size = _squeeze(buf.data, buf.size, &self.spaces)
            if size < 0:
                return _normalized(&buf, &self.spaces)
            buf.size = size
            buf, self.buf = self.buf, buf  # the text is self.buf's now; the finally frees the old one
            return None
        finally:
            PyMem_Free(buf.data)

    cdef int _collect(self, xmlNode* el, Buf* buf) except -1:
        """Append the text of ``el``'s content by the text rules (not yet whitespace-normalized)."""
        cdef xmlNode* child = el.children
        cdef int kind
        while child is not NULL:
            if _is_text(child):
                if child.content is not NULL:
                    _buf_add(buf, <const char*>child.content)
            elif child.type == tree.XML_ELEMENT_NODE:
                kind = _kind(child)
                if not kind & NOT_INLINE or (kind & K_XREF and not self._is_bibr(child)):
                    self._collect(child, buf)
                elif kind & K_FORMULA_PART:
                    _buf_add(buf, b" ")
                    _buf_add_str(buf, self._formula_text(child))
                    _buf_add(buf, b" ")
                elif kind & K_NESTED_FLOAT:
                    _buf_add(buf, b" ")
                elif kind & K_SUP:
                    self._superscript(child, buf)
                elif kind & K_XREF:  # a bibliography citation
                    self._citation(child, buf)
                elif kind & K_TABLE:  # a table nested in a paragraph: cells are blocks
                    _buf_add(buf, b" ")
                    _buf_add_str(buf, self._table_text(child))
                    _buf_add(buf, b" ")
                else:  # a block or a float: whitespace around it
                    _buf_add(buf, b" ")
                    self._collect(child, buf)
                    _buf_add(buf, b" ")
            child = child.next
        return 0

    cdef int _superscript(self, xmlNode* sup, Buf* buf) except -1:
        """``10<sup>4</sup>`` → ``10^4``, ``<sup>13</sup>C`` → ``^{13}C``; a superscript citation → `` [1]``."""
        if self._is_citation_group(sup):
            return self._citation_marker(_all_text(sup), buf)
        cdef Buf inner = Buf(NULL, 0, 0)
        cdef Py_ssize_t size, spaces
        try:
            self._collect(sup, &inner)
            size = _squeeze(inner.data, inner.size, &spaces)
            if size < 0:  # a control character: normalized by ``norm``
                text = norm(PyUnicode_DecodeUTF8(inner.data, inner.size, NULL))
                if text:
                    braced = " " in text or (_tail_starts_alnum(sup) and text[-1:].isalnum())
                    _buf_add_str(buf, f"^{{{text}}}" if braced else f"^{text}")
                return 0
            if size == 0:
                return 0
            braced = spaces > 0 or (
                _tail_starts_alnum(sup) and Py_UNICODE_ISALNUM(_last_char(inner.data, size))
            )
            _buf_add(buf, b"^{" if braced else b"^")
            _buf_add_n(buf, inner.data, size)
            if braced:
                _buf_add(buf, b"}")
            return 0
        finally:
            PyMem_Free(inner.data)

    cdef bint _is_citation_group(self, xmlNode* sup) except -1:
        """A ``<sup>`` holding only bibliography xrefs and the punctuation between them (``1,2``, ``[3–5]``)."""
        if not _has_element_child(sup) or not _CITATION_PUNCTUATION.fullmatch(_run_text(sup.children)):
            return False
        cdef xmlNode* child = sup.children
        while child is not NULL:
            if child.type == tree.XML_ELEMENT_NODE:
                if not _is_named(child, b"xref") or not self._is_bibr(child):
                    return False
                tail = _run_text(child.next)
                if tail and not _CITATION_PUNCTUATION.fullmatch(tail):
                    return False
            child = child.next
        return True

    cdef int _citation(self, xmlNode* xref, Buf* buf) except -1:
        """A bibliography xref: its visible text, made a `` [n]`` marker when a number would glue to a word."""
        if self.dropping:
            return _buf_add_n(buf, DROPPED_BYTE, 1)
        if buf.size and Py_UNICODE_ISALNUM(_last_char(buf.data, buf.size)):
            text = _all_text(xref)
            if _NUMBERED_CITATION.fullmatch(text.strip()):
                return self._citation_marker(text, buf)
            return _buf_add_str(buf, text)
        return _buf_add_all_text(buf, xref)

    cdef int _citation_marker(self, str text, Buf* buf) except -1:
        if self.dropping:
            return _buf_add_n(buf, DROPPED_BYTE, 1)
        text = norm(text)
        if text:
            _buf_add_str(buf, f" {text}" if text[0] in "[(" else f" [{text}]")
        return 0

    # -- formulas ---------------------------------------------------------------------------------

    def formula_text(self, _Element el not None) -> str:
        """A formula once: see the module function ``formula_text``."""
        return self._formula_text(self._node(el))

    cdef str _formula_text(self, xmlNode* el):
        math = self._formula_math(el)
        cdef xmlNode* label = _child(el, b"label") if _is_named(el, b"disp-formula") else NULL
        if label is not NULL:
            label_text = norm(_all_text(label))
            if label_text:
                return f"{math} {label_text}" if math else label_text
        return math

    cdef str _formula_math(self, xmlNode* el):
        cdef xmlNode* n = el
        while n is not NULL and not _is_named(n, b"tex-math"):
            n = _next_in(n, el)
        if n is not NULL:
            return tex_body(_all_text(n))
        n = el
        while n is not NULL and not (
            n.type == tree.XML_ELEMENT_NODE and _href(n) is not NULL and _eq(_href(n), C_MML_NS)
            and _eq(<const char*>n.name, b"math")
        ):
            n = _next_in(n, el)
        if n is not NULL:
            alttext = self._attr(n, b"alttext", NULL)
            return norm(mathml_text(self._proxy(n))) or norm(alttext if alttext is not None else "")
        cdef Buf buf = Buf(NULL, 0, 0)
        cdef Py_ssize_t spaces
        cdef xmlNode* child = el.children
        try:
            while child is not NULL:
                if _is_text(child):
                    if child.content is not NULL:
                        _buf_add(&buf, <const char*>child.content)
                elif child.type == tree.XML_ELEMENT_NODE and not _kind(child) & K_FLOAT and not _is_named(
                    child, b"label"
                ):
                    self._collect(child, &buf)
                child = child.next
            return _finish(&buf, &spaces)
        finally:
            PyMem_Free(buf.data)

    # -- tables -----------------------------------------------------------------------------------

    cdef str _table_text(self, xmlNode* table):
        """Cells tab-separated, rows newline-separated."""
        key = <size_t>table
        cached = self.tables.get(key)
        if cached is not None:
            return cached
        cdef list rows = []
        cdef list cells
        cdef xmlNode* row = table
        cdef xmlNode* cell
        while row is not NULL:
            if _kind(row) & K_TR:
                cells = []
                cell = row.children
                while cell is not NULL:
                    if _kind(cell) & K_CELL:
                        cells.append(self._text(cell))
                    cell = cell.next
                rows.append("\t".join(cells))
            row = _next_in(row, table)
        text = "\n".join(rows)
        self.tables[key] = text
        return text

    # -- paragraphs -------------------------------------------------------------------------------

    def walk(
        self,
        _Element el not None,
        str path,
        Section section,
        str article_id,
        Paragraphs paragraphs,
        dict rids,
    ):
        """Emit a row for every paragraph below ``el`` (docs/jats.md, "Paragraphs") into ``paragraphs``,
        recording in ``rids`` the paragraphs each ``xref/@rid`` target is cited by."""
        self._walk(self._node(el), path, section, article_id, paragraphs, rids)

    cdef int _walk(
        self, xmlNode* el, str path, Section section, str article_id, Paragraphs paragraphs, dict rids
    ) except -1:
        prefix = f"{path}/" if path else ""
        cdef xmlNode* child
        cdef xmlNode* title_el
        cdef int kind
        for node, step in _child_steps(el):
            child = <xmlNode*><size_t>node
            kind = _kind(child)
            if kind & K_P:
                self._emit_paragraph(child, prefix + step, section, article_id, paragraphs, rids)
            elif kind & K_SKIP:
                continue
            elif kind & K_SEC or (_href(child) is not NULL and _child(child, b"title") is not NULL):
                title_el = _child(child, b"title")
                title = self._text(title_el) if title_el is not NULL else ""
                sec_type = self._attr(child, b"sec-type", NULL)
                self._walk(
                    child,
                    prefix + step,
                    section.enter(title, sec_type if sec_type is not None else ""),
                    article_id,
                    paragraphs,
                    rids,
                )
            else:
                self._walk(child, prefix + step, section, article_id, paragraphs, rids)
        return 0

    cdef int _emit_paragraph(
        self, xmlNode* p, str path, Section section, str article_id, Paragraphs paragraphs, dict rids
    ) except -1:
        cdef const char* data
        cdef Py_ssize_t size
        text = self._utf8_text(p)
        if text is None:
            data, size = self.buf.data, self.buf.size
        else:
            data = PyUnicode_AsUTF8AndSize(text, &size)
        if size == 0:
            return 0
        pid = f"{article_id}/{path}"
        paragraphs._add(pid, path, section, data, size, self.spaces + 1)
        cdef xmlNode* n = p.children
        while n is not NULL:
            if _is_named(n, b"xref"):
                rid = self._attr(n, b"rid", NULL)
                for target in (rid or "").split():
                    cited = rids.setdefault(target, [])
                    if not cited or cited[-1] != pid:
                        cited.append(pid)
            n = _next_in(n, p)
        return 0

    # -- figures and tables -----------------------------------------------------------------------

    def float_rows(self, _Element article not None, bint include_sub_articles, str article_id, dict rids):
        """The rows of every ``fig`` and ``table-wrap`` of the article, wherever it sits (sub-articles
        optional): (figure rows, table rows), each in document order."""
        cdef xmlNode* top = self._node(article)
        cdef xmlNode* n = top
        cdef dict steps = {}  # parent node -> its children's steps: floats share their ancestors'
        cdef list figures = []
        cdef list tables = []
        while n is not NULL:
            if n.type == tree.XML_ELEMENT_NODE and (_is_named(n, b"fig") or _is_named(n, b"table-wrap")):
                if include_sub_articles or not _in_sub_article(n):
                    path = _path_of(n, top, steps)
                    if _is_named(n, b"fig"):
                        figures.append(self._figure_row(n, path, article_id, rids))
                    else:
                        tables.append(self._table_row(n, path, article_id, rids))
            n = _next_in(n, top)
        return figures, tables

    cdef object _text_or_none(self, xmlNode* el):
        if el is NULL:
            return None
        return self._text(el) or None

    cdef list _graphics(self, xmlNode* el):
        cdef list found = []
        cdef xmlNode* n = el
        while n is not NULL:
            if _is_named(n, b"graphic"):
                href = self._attr(n, b"href", C_XLINK_NS)
                if href:
                    found.append(href)
            n = _next_in(n, el)
        return found

    cdef dict _figure_row(self, xmlNode* fig, str path, str article_id, dict rids):
        xml_id = self._attr(fig, b"id", NULL)
        return {
            "figure_id": f"{article_id}/{path}",
            "article_id": article_id,
            "path": path,
            "xml_id": xml_id,
            "label": self._text_or_none(_child(fig, b"label")),
            "caption": self._text_or_none(_child(fig, b"caption")),
            "mention_ids": list(rids.get(xml_id, [])) if xml_id else [],
            "graphics": self._graphics(fig),
        }

    cdef dict _table_row(self, xmlNode* wrap, str path, str article_id, dict rids):
        xml_id = self._attr(wrap, b"id", NULL)
        cdef list texts = []
        cdef xmlNode* n = wrap
        while n is not NULL:
            if _is_named(n, b"table"):
                texts.append(self._table_text(n))
            n = _next_in(n, wrap)
        return {
            "table_id": f"{article_id}/{path}",
            "article_id": article_id,
            "path": path,
            "xml_id": xml_id,
            "label": self._text_or_none(_child(wrap, b"label")),
            "caption": self._text_or_none(_child(wrap, b"caption")),
            "text": "\n".join(texts) or None,
            "footer": self._text_or_none(_child(wrap, b"table-wrap-foot")),
            "mention_ids": list(rids.get(xml_id, [])) if xml_id else [],
            "graphics": self._graphics(wrap),
        }


    # -- authors --------------------------------------------------------------------------------

    def authors(self, _Element meta not None) -> list:
        """The authors of ``article-meta``: ``contrib`` elements of ``contrib-group``s whose
        ``contrib-type`` is ``author`` (or unstated), each with its name, ORCID and affiliations
        (``xref ref-type="aff"`` resolved against every ``aff`` of ``article-meta``, or its own ``aff``)."""
        cdef xmlNode* top = self._node(meta)
        cdef xmlNode* n = top
        cdef dict affiliations = {}
        while n is not NULL:
            if _is_named(n, b"aff"):
                aff_id = self._attr(n, b"id", NULL)
                if aff_id:
                    affiliations[aff_id] = _aff_text(n)
            n = _next_in(n, top)
        cdef list authors = []
        cdef xmlNode* group = top.children
        cdef xmlNode* contrib
        while group is not NULL:
            if _is_named(group, b"contrib-group"):
                contrib = group.children
                while contrib is not NULL:
                    if _is_named(contrib, b"contrib") and (
                        self._attr(contrib, b"contrib-type", NULL) or "author"
                    ) == "author":
                        author = self._author(contrib, affiliations)
                        if author:
                            authors.append(author)
                    contrib = contrib.next
            group = group.next
        return authors

    cdef object _author(self, xmlNode* contrib, dict affiliations):
        """One ``contrib`` as an author row, reading its children once; None when it names nobody."""
        surname = given = collab = orcid = None
        cdef list affs = []
        cdef xmlNode* child = contrib.children
        cdef xmlNode* name
        cdef xmlNode* part
        while child is not NULL:
            if child.type != tree.XML_ELEMENT_NODE:
                pass
            elif (_is_named(child, b"name") or _is_named(child, b"name-alternatives")) and (
                surname is None and given is None
            ):
                name = child if _is_named(child, b"name") else _child(child, b"name")
                if name is not NULL:
                    part = _child(name, b"surname")
                    surname = norm(_run_text(part.children)) if part is not NULL else ""
                    part = _child(name, b"given-names")
                    given = norm(_run_text(part.children)) if part is not NULL else ""
            elif _is_named(child, b"collab"):
                collab = self._text(child) or None
            elif _is_named(child, b"contrib-id") and (
                self._attr(child, b"contrib-id-type", NULL) or ""
            ).lower() == "orcid":
                orcid = norm(_run_text(child.children))
            elif _is_named(child, b"xref") and self._attr(child, b"ref-type", NULL) == "aff":
                affs.extend(affiliations.get(rid) for rid in (self._attr(child, b"rid", NULL) or "").split())
            elif _is_named(child, b"aff"):
                affs.append(_aff_text(child))
            child = child.next
        full = " ".join(x for x in (given, surname) if x) or collab
        if not full:
            return None
        return {
            "name": full,
            "surname": surname or None,
            "given_names": given or None,
            "orcid": orcid,
            "affiliations": [a for a in affs if a],
        }


cdef object _aff_text(xmlNode* aff):
    """An affiliation's text: its children other than ``label``, each set off by spaces."""
    cdef Buf buf = Buf(NULL, 0, 0)
    cdef Py_ssize_t spaces
    cdef xmlNode* child = aff.children
    try:
        while child is not NULL:
            if _is_text(child):
                if child.content is not NULL:
                    _buf_add(&buf, <const char*>child.content)
            elif child.type == tree.XML_ELEMENT_NODE and not _is_named(child, b"label"):
                _buf_add(&buf, b" ")
                _buf_add_all_text(&buf, child)
                _buf_add(&buf, b" ")
            child = child.next
        return _finish(&buf, &spaces).strip(" ,;") or None
    finally:
        PyMem_Free(buf.data)


cdef bint _in_sub_article(xmlNode* n) noexcept nogil:
    """Whether an ancestor is a ``sub-article`` or a ``response``."""
    n = n.parent
    while n is not NULL and n.type == tree.XML_ELEMENT_NODE:
        if _is_named(n, b"sub-article") or _is_named(n, b"response"):
            return True
        n = n.parent
    return False


# --- paths and sections ------------------------------------------------------------------------------


cdef list _child_steps(xmlNode* el):
    """Each element child (its address) with its path step: ``tag`` when alone of its name, else
    ``tag[n]`` (1-based); a namespaced tag's step is ``prefix:local`` for the known namespaces."""
    cdef list kids = []
    cdef dict counts = {}
    cdef xmlNode* c = el.children
    while c is not NULL:
        if c.type == tree.XML_ELEMENT_NODE:
            tag = _tag(c)
            kids.append((<size_t>c, tag))
            counts[tag] = counts.get(tag, 0) + 1
        c = c.next
    cdef dict seen = {}
    cdef list steps = []
    for address, tag in kids:
        name = tag if tag[0] != "{" else _step_name(tag)
        if counts[tag] == 1:
            steps.append((address, name))
        else:
            seen[tag] = n = seen.get(tag, 0) + 1
            steps.append((address, f"{name}[{n}]"))
    return steps


cdef str _tag(xmlNode* n):
    """lxml's ``tag``: ``{namespace}local`` or ``local``."""
    cdef const char* href = _href(n)
    if href is NULL:
        return _decode(<const char*>n.name)
    return f"{{{_decode(href)}}}{_decode(<const char*>n.name)}"


def _step_name(str tag) -> str:
    ns, local = tag[1:].split("}", 1)
    prefix = _PREFIXES.get(ns)
    return f"{prefix}:{local}" if prefix else local


cdef str _path_of(xmlNode* el, xmlNode* top, dict memo):
    """The XPath-like path of ``el`` below ``top`` with the steps of ``_child_steps``."""
    cdef list path = []
    cdef xmlNode* parent
    while el is not top:
        parent = el.parent
        key = <size_t>parent
        by_child = memo.get(key)
        if by_child is None:
            by_child = memo[key] = dict(_child_steps(parent))
        path.append(by_child[<size_t>el])
        el = parent
    return "/".join(reversed(path))


def child_steps(_Element el not None) -> list:
    """Each element child of ``el`` with its path step (``body``, ``sec[2]``, ``tp:treatment-sec``)."""
    cdef _Document doc = el._doc
    return [(cetree.elementFactory(doc, <xmlNode*><size_t>a), step) for a, step in _child_steps(el._c_node)]


def path_of(_Element el not None, _Element top not None) -> str:
    """The XPath-like path of ``el`` below ``top``: ``body/sec[2]/p``, an index only where siblings
    share the element's name."""
    return _path_of(el._c_node, top._c_node, {})


SECTION_TYPE_BY_SEC_TYPE = {
    "intro": "introduction",
    "introduction": "introduction",
    "background": "introduction",
    "methods": "methods",
    "materials": "methods",
    "materials|methods": "methods",
    "subjects": "methods",
    "results": "results",
    "discussion": "discussion",
    "results|discussion": "results",
    "conclusions": "conclusion",
    "conclusion": "conclusion",
    "cases": "case",
    "case-report": "case",
}
_SECTION_TITLE_RULES = [
    (
        "case",
        re.compile(
            r"\bcase\b|clinical (presentation|history|description)|patient (presentation|description)", re.I
        ),
    ),
    ("introduction", re.compile(r"^\W*(\d+\.?\s*)?(introduction|background|overview|rationale)\b", re.I)),
    (
        "methods",
        re.compile(
            r"method|material|experimental (procedure|section|design)|study design|patients and"
            r"|participants|procedures",
            re.I,
        ),
    ),
    ("results", re.compile(r"\bresults?\b|findings", re.I)),
    ("discussion", re.compile(r"discussion", re.I)),
    ("conclusion", re.compile(r"conclu|summary|concluding remarks|perspectives", re.I)),
]


@lru_cache(maxsize=4096)
def section_type(tuple titles, tuple sec_types) -> str:
    """The normalized section type from the outermost section that says what it is."""
    for title, sec_type in zip(titles, sec_types, strict=True):
        if sec_type:
            for part in (sec_type.lower(), *sec_type.lower().split("|")):
                if part in SECTION_TYPE_BY_SEC_TYPE:
                    return SECTION_TYPE_BY_SEC_TYPE[part]
        if title:
            for kind, rule in _SECTION_TITLE_RULES:
                if rule.search(title):
                    return kind
    return "other"


cdef class Paragraphs:
    """The paragraph rows of one article as columns (``schema.PARAGRAPHS``), their texts as UTF-8.

    The walk writes a paragraph's text once, as the UTF-8 it reads, into ``text`` (``ends``: where
    each one ends): the harvest hands those bytes to Arrow as they are (``store``), instead of a
    string per paragraph that Arrow would encode again. ``rows()`` gives the rows as dicts."""

    cdef readonly str article_id
    cdef readonly list paragraph_id
    cdef readonly list path
    cdef readonly list section_title
    cdef readonly list section_path
    cdef readonly list section_type
    cdef readonly list n_words
    cdef readonly list ends
    cdef readonly bytearray text

    def __init__(self, str article_id):
        self.article_id = article_id
        self.paragraph_id, self.path, self.section_title, self.section_path = [], [], [], []
        self.section_type, self.n_words, self.ends = [], [], []
        self.text = bytearray()

    def __len__(self):
        return len(self.paragraph_id)

    cdef int _add(
        self, str pid, str path, Section section, const char* text, Py_ssize_t size, Py_ssize_t words
    ) except -1:
        cdef Py_ssize_t start = PyByteArray_GET_SIZE(self.text)
        PyByteArray_Resize(self.text, start + size)
        memcpy(PyByteArray_AS_STRING(self.text) + start, text, size)
        named = section.path
        self.paragraph_id.append(pid)
        self.path.append(path)
        self.section_title.append(named[-1] if named else None)
        self.section_path.append(named)
        self.section_type.append(section.type)
        self.n_words.append(words)
        self.ends.append(start + size)
        return 0

    def rows(self) -> list:
        """The rows, as dicts keyed by column name."""
        cdef const char* data = PyByteArray_AS_STRING(self.text)
        cdef Py_ssize_t start = 0, end
        cdef list rows = []
        for i in range(len(self.paragraph_id)):
            end = self.ends[i]
            rows.append(
                {
                    "paragraph_id": self.paragraph_id[i],
                    "article_id": self.article_id,
                    "path": self.path[i],
                    "ordinal": i,
                    "section_title": self.section_title[i],
                    "section_path": self.section_path[i],
                    "section_type": self.section_type[i],
                    "text": PyUnicode_DecodeUTF8(data + start, end - start, NULL),
                    "n_words": self.n_words[i],
                }
            )
            start = end
        return rows


cdef class Section:
    """Where a paragraph sits: the enclosing section titles and ``sec-type``s, outermost first.

    Built once per section, so the normalized type and the named path (``path``, ``type``) are
    worked out once for all of its paragraphs. ``fixed_type`` forces the type (``abstract``).
    """

    cdef readonly tuple titles
    cdef readonly tuple sec_types
    cdef readonly object fixed_type
    cdef readonly list path
    cdef readonly str type

    def __init__(self, tuple titles=(), tuple sec_types=(), fixed_type=None):
        self.titles = titles
        self.sec_types = sec_types
        self.fixed_type = fixed_type
        self.path = [t for t in titles if t]
        self.type = fixed_type or section_type(titles, sec_types)

    cpdef Section enter(self, str title, str sec_type):
        return Section((*self.titles, title), (*self.sec_types, sec_type), self.fixed_type)


# --- formulas read from proxies (rare: MathML) ---------------------------------------------------------


def formula_text(_Element el not None) -> str:
    """A formula once: the math of its TeX when the XML has ``tex-math``, else its MathML read
    linearly, else its text; a display formula's label (``(13)``) follows it.

    PMC wraps much TeX in a whole ``\\documentclass … \\begin{document}`` document, the same
    preamble in every formula: only the math between ``\\begin{document}`` and ``\\end{document}``
    is kept (``tex_body``). Of an ``<alternatives>``, one rendering is read, never two.
    """
    return Extraction().formula_text(el)


_TEX_DOCUMENT = re.compile(r"\\begin\{document\}(.*?)\\end\{document\}", re.S)


def tex_body(str tex) -> str:
    """The math of a ``tex-math`` value, without the ``\\documentclass`` preamble PMC often wraps it in."""
    match = _TEX_DOCUMENT.search(tex)
    body = match.group(1) if match else tex
    body = body.strip()
    while body.startswith("$") and body.endswith("$") and len(body) > 1:
        body = body[1:-1].strip()
    return norm(body.replace("\\[", "").replace("\\]", "") if body.startswith("\\[") else body)


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def mathml_text(el) -> str:
    """MathML as linear text: ``x^2``, ``a_i``, ``(a)/(b)``, ``sqrt(x)``; tokens keep their characters,
    and two tokens that would read as one word (``2``, ``x``) are separated by a space."""
    name = _local(el.tag)
    kids = [c for c in el if isinstance(c.tag, str)]
    if name in ("mi", "mn", "mo", "mtext", "ms"):
        return "".join(el.itertext())
    if name == "annotation" or name == "annotation-xml":
        return ""
    if name == "semantics":
        return mathml_text(kids[0]) if kids else ""
    parts = [mathml_text(k) for k in kids]
    if name in ("msup", "msub", "msubsup") and len(parts) == (3 if name == "msubsup" else 2):
        scripts = [_script(p) for p in parts[1:]]
        marks = ("_", "^") if name == "msubsup" else (("^",) if name == "msup" else ("_",))
        return parts[0] + "".join(m + s for m, s in zip(marks, scripts, strict=True))
    if name == "mfrac" and len(parts) == 2:
        return f"({parts[0]})/({parts[1]})"
    if name == "msqrt":
        return f"sqrt({_joined(parts)})"
    if name == "mroot" and len(parts) == 2:
        return f"root({parts[1]})({parts[0]})"
    if name in ("mtr", "mlabeledtr", "mtd"):
        return " ".join(p for p in parts if p)
    if name == "mtable":
        return " ".join(p for p in parts if p)
    return _joined(parts)


def _script(str text) -> str:
    return f"{{{text}}}" if " " in text else text


def _joined(list parts) -> str:
    """Parts side by side, with a space only where two would otherwise glue into one word."""
    out = ""
    for part in parts:
        if part:
            if out and out[-1].isalnum() and part[0].isalnum():
                out += " "
            out += part
    return out
