# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled half of the language identifier: py3langid's byte-level DFA walked in C over a batch,
the naive-Bayes scores summed, and each text's language decided where the sums settle it.

py3langid (``LanguageIdentifier.classify``) walks its DFA over a text's UTF-8 bytes in a Python
loop (``visit_counts``: ``state = nextmove[rowbase[state] + byte]``, and a feature wherever
``output[state] >= 0``), counts the features, scores each language as
``log1p(counts) @ ptc[features] + pc``, normalizes and takes the argmax. ``Walker`` does the same
walk for many texts at once, in C, over the same model, and sums the scores one of two ways:

- quantized (the first pass): each feature's row of ``ptc`` is stored as its excess over the
  column's smallest value, in steps of ``step``, one byte per language (144 bytes a row instead of
  284: the rows are most of the memory traffic), and summed as integers, features grouped by their
  count (one weight a group); each row's rounding error is known, so a text's scores come with a
  bound on how far they are from the exact sums (``spread``);
- exact (for the few texts the first pass leaves open): the model's float16 values summed in float32.

``Walker.identify`` then decides each text (``decide_row``): the best language and whether the
scores surely give py3langid's answer. The error argument is in ``pmcurate.filters.language``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport exp, fabs, log1p, sqrt
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

BUILT_FROM_SHA256 = PYX_SHA256  # this file's SHA-256, given by setup.py at build time (compiled.check_build)

cdef enum:
    LANES = 16  # texts walked at once (langid_walk's LANGID_LANES; 16 beat 8, 12 and 32 on 2 cores of an EPYC)
    ROW = 144  # bytes of a quantized row: the languages, padded to a multiple of 16 (LANGID_WIDTH)
    GROUP = 257  # rows summed in uint16 before a flush: 257 × 255 < 2^16
    KIND_FAST = 0
    KIND_NO_LETTER = 1
    KIND_IN_PYTHON = 2

WIDTH = ROW
"""Bytes of a quantized row (``Walker``): the model's languages, padded with 0."""
FAST = KIND_FAST
"""``heads``'s kind of a text whose head is its own UTF-8 bytes (``_encode`` would not change it)."""
NO_LETTER = KIND_NO_LETTER
"""``heads``'s kind of a null or empty text, or an ASCII head without a letter: undetermined."""
IN_PYTHON = KIND_IN_PYTHON
"""``heads``'s kind of a text Python prepares (``_encode``): non-ASCII beyond U+02FF, or no lowercase ASCII letter."""

cdef extern from *:
    """
    #include <string.h>

    #define LANGID_LANES 16
    #define LANGID_WIDTH 144

    /* Walk the packed DFA over LANGID_LANES texts at once, writing each step's feature plus one
       (0: none) to found[lane][i] for each byte i of text lane. A text's steps depend on each
       other; different texts' steps do not, so walking several in turn overlaps their loads, which
       miss the caches often (the table is tens of MB). Each step stores what it found without a
       test or a count (``distinct`` drops the zeros): the loop keeps few values live. A lane with a
       shorter text is finished alone. */
    static void langid_walk(const uint64_t *transitions, uint64_t start,
                            const unsigned char *const *data, const Py_ssize_t *length,
                            uint32_t *const *found)
    {
        uint64_t entry[LANGID_LANES];
        Py_ssize_t shortest = length[0];
        for (int lane = 0; lane < LANGID_LANES; lane++) {
            entry[lane] = start;
            if (length[lane] < shortest) shortest = length[lane];
        }
        for (Py_ssize_t i = 0; i < shortest; i++) {
            for (int lane = 0; lane < LANGID_LANES; lane++) {
                entry[lane] = transitions[(uint32_t) entry[lane] + data[lane][i]];
                found[lane][i] = (uint32_t) (entry[lane] >> 32);
            }
        }
        for (int lane = 0; lane < LANGID_LANES; lane++) {
            for (Py_ssize_t i = shortest; i < length[lane]; i++) {
                entry[lane] = transitions[(uint32_t) entry[lane] + data[lane][i]];
                found[lane][i] = (uint32_t) (entry[lane] >> 32);
            }
        }
    }

    /* Kind of one text s[0:n] (UTF-8) for the walk, and in *head the bytes of its first `limit`
       characters: 0 (fast) when those have a lowercase ASCII letter and only characters whose bit is
       set in `stable` (a bitmap of the BMP: characters NFC leaves as they are wherever they stand);
       1 (no letter) when they are ASCII without a letter; 2 (Python prepares it) otherwise. Surrogates
       are not in `stable`. */
    static int langid_head(const uint8_t *s, Py_ssize_t n, Py_ssize_t limit, const uint8_t *stable,
                           Py_ssize_t *head)
    {
        Py_ssize_t i = 0, chars = 0;
        int lower = 0, letter = 0, ascii = 1;
        while (i < n && chars < limit) {
            if (lower && i + 8 <= n && chars + 8 <= limit) {  /* eight ASCII characters at once */
                uint64_t word;
                memcpy(&word, s + i, sizeof word);
                if (!(word & 0x8080808080808080ull)) {
                    i += 8;
                    chars += 8;
                    continue;
                }
            }
            uint8_t b = s[i];
            chars++;
            if (b < 0x80) {
                lower |= (uint8_t) (b - 0x61) < 26;
                letter |= (uint8_t) ((b | 0x20) - 0x61) < 26;
                i++;
                continue;
            }
            ascii = 0;
            uint32_t cp;
            Py_ssize_t size;
            if (b >= 0xC2 && b < 0xE0) { size = 2; cp = b & 0x1Fu; }
            else if (b >= 0xE0 && b < 0xF0) { size = 3; cp = b & 0x0Fu; }
            else { *head = n; return 2; }  /* outside the BMP, or not UTF-8: Python's */
            if (i + size > n) { *head = n; return 2; }
            for (Py_ssize_t j = 1; j < size; j++) {
                if ((s[i + j] & 0xC0) != 0x80) { *head = n; return 2; }
                cp = (cp << 6) | (s[i + j] & 0x3Fu);
            }
            if (size == 3 && cp < 0x800) { *head = n; return 2; }  /* overlong: not UTF-8 */
            if (cp > 0xFFFFu || !((stable[cp >> 3] >> (cp & 7)) & 1)) { *head = n; return 2; }
            i += size;
        }
        while (i < n && chars == limit && (s[i] & 0xC0) == 0x80) i++;  /* never splits a character */
        *head = i;
        if (lower) return 0;
        if (ascii && !letter) return 1;
        return 2;
    }

    /* A float16 as a float32, for the normal numbers that make up the model (``language.check_layout``
       refuses zeros, subnormals, infinities and NaNs): bit operations, for CPUs without F16C. */
    static inline float langid_half(uint16_t h) {
        uint32_t bits = ((uint32_t) (h & 0x8000u) << 16) | (((uint32_t) (h & 0x7FFFu) << 13) + (112u << 23));
        float value;
        memcpy(&value, &bits, sizeof value);
        return value;
    }

    /* One text's naive-Bayes sum in float32: acc[c] = sum over j < k of weight[j] * ptc[row[j]][c]
       (ptc: the model's float16 values, features x classes). */
    static void langid_score_portable(float *acc, const uint16_t *ptc, Py_ssize_t classes,
                                      const int32_t *row, const float *weight, Py_ssize_t k)
    {
        for (Py_ssize_t c = 0; c < classes; c++) acc[c] = 0.0f;
        for (Py_ssize_t j = 0; j < k; j++) {
            const uint16_t *p = ptc + (Py_ssize_t) row[j] * classes;
            for (Py_ssize_t c = 0; c < classes; c++) acc[c] += weight[j] * langid_half(p[c]);
        }
    }

    /* sum[c] += q[row[j]][c] for j < k, c < LANGID_WIDTH, in uint16 (k <= 257: no overflow). */
    static void langid_add_portable(uint16_t *sum, const uint8_t *q, const int32_t *row, Py_ssize_t k)
    {
        for (Py_ssize_t j = 0; j < k; j++) {
            const uint8_t *p = q + (Py_ssize_t) row[j] * LANGID_WIDTH;
            for (int c = 0; c < LANGID_WIDTH; c++) sum[c] += p[c];
        }
    }

    /* wide[c] += weight * narrow[c] for c < LANGID_WIDTH. */
    static void langid_flush_portable(double *wide, const uint16_t *narrow, double weight)
    {
        for (int c = 0; c < LANGID_WIDTH; c++) wide[c] += weight * narrow[c];
    }

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    /* The same sum eight languages at a time, float16 converted by F16C: about 8 times the
       portable loop's speed (which the compiler vectorizes only to SSE2, and without F16C). */
    __attribute__((target("avx2,f16c,fma")))
    static void langid_score_avx2(float *acc, const uint16_t *ptc, Py_ssize_t classes,
                                  const int32_t *row, const float *weight, Py_ssize_t k)
    {
        for (Py_ssize_t c = 0; c < classes; c++) acc[c] = 0.0f;
        for (Py_ssize_t j = 0; j < k; j++) {
            const uint16_t *p = ptc + (Py_ssize_t) row[j] * classes;
            __m256 w = _mm256_set1_ps(weight[j]);
            Py_ssize_t c = 0;
            for (; c + 8 <= classes; c += 8) {
                __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (p + c)));
                _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(w, x, _mm256_loadu_ps(acc + c)));
            }
            for (; c < classes; c++) acc[c] += weight[j] * langid_half(p[c]);
        }
    }

    /* langid_add_portable, two rows at a time: their bytes interleaved (unpack) and each pair summed
       by one multiply-add with ones (vpmaddubsw: a + b, at most 510), into sums held in registers;
       half the byte-widening shuffles of widening each row alone. An unpack of 32 bytes works within
       each 16-byte half: lo[b] holds the sums of languages 32b + 0-7 and 32b + 16-23, hi[b] of
       32b + 8-15 and 32b + 24-31 (put in order at the end); the last 16 languages, in tail. */
    __attribute__((target("avx2")))
    static void langid_add_avx2(uint16_t *sum, const uint8_t *q, const int32_t *row, Py_ssize_t k)
    {
        const __m256i ones = _mm256_set1_epi8(1);
        __m256i lo[4], hi[4], tail = _mm256_setzero_si256();
        for (int b = 0; b < 4; b++) lo[b] = hi[b] = _mm256_setzero_si256();
        Py_ssize_t j = 0;
        for (; j + 2 <= k; j += 2) {
            const uint8_t *p = q + (Py_ssize_t) row[j] * LANGID_WIDTH;
            const uint8_t *r = q + (Py_ssize_t) row[j + 1] * LANGID_WIDTH;
            for (int b = 0; b < 4; b++) {
                __m256i x = _mm256_loadu_si256((const __m256i *) (p + 32 * b));
                __m256i y = _mm256_loadu_si256((const __m256i *) (r + 32 * b));
                lo[b] = _mm256_add_epi16(lo[b], _mm256_maddubs_epi16(_mm256_unpacklo_epi8(x, y), ones));
                hi[b] = _mm256_add_epi16(hi[b], _mm256_maddubs_epi16(_mm256_unpackhi_epi8(x, y), ones));
            }
            __m128i x = _mm_loadu_si128((const __m128i *) (p + 128));
            __m128i y = _mm_loadu_si128((const __m128i *) (r + 128));
            __m256i z = _mm256_set_m128i(_mm_unpackhi_epi8(x, y), _mm_unpacklo_epi8(x, y));
            tail = _mm256_add_epi16(tail, _mm256_maddubs_epi16(z, ones));
        }
        for (int b = 0; b < 4; b++) {
            __m256i *out = (__m256i *) (sum + 32 * b);
            __m256i first = _mm256_permute2x128_si256(lo[b], hi[b], 0x20);
            __m256i second = _mm256_permute2x128_si256(lo[b], hi[b], 0x31);
            _mm256_storeu_si256(out, _mm256_add_epi16(_mm256_loadu_si256(out), first));
            _mm256_storeu_si256(out + 1, _mm256_add_epi16(_mm256_loadu_si256(out + 1), second));
        }
        __m256i *end = (__m256i *) (sum + 128);
        _mm256_storeu_si256(end, _mm256_add_epi16(_mm256_loadu_si256(end), tail));
        if (j < k) langid_add_portable(sum, q, row + j, k - j);  /* an odd row */
    }

    /* wide[c] += weight * narrow[c], four languages at a time. */
    __attribute__((target("avx2,fma")))
    static void langid_flush_avx2(double *wide, const uint16_t *narrow, double weight)
    {
        __m256d w = _mm256_set1_pd(weight);
        for (int c = 0; c < LANGID_WIDTH; c += 4) {
            __m256d x = _mm256_cvtepi32_pd(_mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *) (narrow + c))));
            _mm256_storeu_pd(wide + c, _mm256_fmadd_pd(w, x, _mm256_loadu_pd(wide + c)));
        }
    }

    static int langid_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    #else
    #define langid_score_avx2 langid_score_portable
    #define langid_add_avx2 langid_add_portable
    #define langid_flush_avx2 langid_flush_portable

    static int langid_has_avx2(void) { return 0; }
    #endif

    typedef void (*langid_scorer)(float *, const uint16_t *, Py_ssize_t, const int32_t *, const float *, Py_ssize_t);
    typedef void (*langid_adder)(uint16_t *, const uint8_t *, const int32_t *, Py_ssize_t);

    static langid_scorer langid_pick_scorer(int fast) {
        return fast ? langid_score_avx2 : langid_score_portable;
    }

    static langid_adder langid_pick_adder(int fast) {
        return fast ? langid_add_avx2 : langid_add_portable;
    }

    typedef void (*langid_flusher)(double *, const uint16_t *, double);

    static langid_flusher langid_pick_flusher(int fast) {
        return fast ? langid_flush_avx2 : langid_flush_portable;
    }
    """
    void langid_walk(
        const uint64_t* transitions, uint64_t start, const unsigned char* const* data,
        const Py_ssize_t* length, uint32_t* const* found
    ) nogil
    ctypedef void (*langid_scorer)(
        float* acc, const uint16_t* ptc, Py_ssize_t classes, const int32_t* row, const float* weight, Py_ssize_t k
    ) noexcept nogil
    ctypedef void (*langid_adder)(uint16_t* sum, const uint8_t* q, const int32_t* row, Py_ssize_t k) noexcept nogil
    int langid_head(const uint8_t* s, Py_ssize_t n, Py_ssize_t limit, const uint8_t* stable, Py_ssize_t* head) nogil
    int langid_has_avx2()
    langid_scorer langid_pick_scorer(int fast)
    langid_adder langid_pick_adder(int fast)
    ctypedef void (*langid_flusher)(double* wide, const uint16_t* narrow, double weight) noexcept nogil
    langid_flusher langid_pick_flusher(int fast) nogil

SIMD = bool(langid_has_avx2())
"""Whether this CPU sums with AVX2, F16C and FMA (x86-64 since about 2013) rather than the portable loop."""

cdef double FLOAT32_UNIT = 2.0 ** -24
cdef double FLOAT64_UNIT = 2.0 ** -53


def has_letter(str text, Py_ssize_t limit):
    """Whether one of the first ``limit`` characters of ``text`` is a letter (``str.isalpha``)."""
    cdef Py_ssize_t i, n = min(len(text), limit)
    cdef Py_UCS4 ch
    for i in range(n):
        ch = text[i]
        if ch.isalpha():
            return True
    return False


def heads(
    const uint8_t[::1] data,
    const int64_t[::1] offsets,
    const uint8_t[::1] valid,
    Py_ssize_t first,
    Py_ssize_t limit,
    const uint8_t[::1] stable,
    int64_t[::1] starts,
    int64_t[::1] lengths,
    int8_t[::1] kinds,
):
    """Each text's head (its first ``limit`` characters) in an Arrow string array's buffers, and
    whether it is ready for the walk as it stands.

    Text ``r`` is ``data[offsets[first + r]:offsets[first + r + 1]]`` (UTF-8), null where bit
    ``first + r`` of ``valid`` is 0 (``valid`` empty: no nulls). ``kinds[r]`` is ``FAST`` when the
    head has a lowercase ASCII letter and only characters of the BMP whose bit is set in ``stable``
    (``language.nfc_stable``: characters NFC leaves as they are wherever they stand): py3langid's
    ``_encode`` then returns its UTF-8 bytes unchanged (not all capitals, so not lowercased; already
    NFC), and it has a letter; its bytes are ``data[starts[r]:starts[r] + lengths[r]]``.
    ``NO_LETTER``: null, empty, or an ASCII head without a letter. ``IN_PYTHON``: anything else
    (``language`` prepares it).
    """
    cdef Py_ssize_t rows = kinds.shape[0], r, head
    cdef int64_t begin, end
    if offsets.shape[0] < first + rows + 1 or starts.shape[0] < rows or lengths.shape[0] < rows:
        raise ValueError("offsets, starts and lengths do not cover the rows")
    if valid.shape[0] and valid.shape[0] * 8 < first + rows:
        raise ValueError("the validity bitmap does not cover the rows")
    if stable.shape[0] != 0x10000 // 8:
        raise ValueError("stable is a bitmap of the BMP")
    for r in range(rows + 1):
        if offsets[first + r] < 0 or offsets[first + r] > data.shape[0]:
            raise ValueError("offsets point outside the data")
    with nogil:
        for r in range(rows):
            begin = offsets[first + r]
            end = offsets[first + r + 1]
            starts[r] = begin
            lengths[r] = 0
            kinds[r] = KIND_NO_LETTER
            if (valid.shape[0] and not (valid[(first + r) >> 3] >> ((first + r) & 7)) & 1) or end <= begin:
                continue
            kinds[r] = langid_head(&data[begin], end - begin, limit, &stable[0], &head)
            lengths[r] = head
    return None


cdef Py_ssize_t blank_text(const uint8_t* text, Py_ssize_t n, const uint8_t* blank, uint8_t* out) noexcept nogil:
    """``text[:n]`` (UTF-8) into ``out`` with every character whose bit is set in ``blank`` (a bitmap
    of the BMP) turned into one ASCII space; returns the bytes written (``n`` at most)."""
    cdef Py_ssize_t i = 0, j, size, written = 0
    cdef uint8_t b
    cdef uint32_t cp
    cdef uint8_t ascii[128]
    for j in range(128):
        ascii[j] = 0x20 if (blank[j >> 3] >> (j & 7)) & 1 else j
    while i < n:
        b = text[i]
        if b < 0x80:
            out[written] = ascii[b]
            written += 1
            i += 1
            continue
        size = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
        if i + size > n:
            size = n - i
        cp = 0x10000  # outside the BMP (or not UTF-8): kept
        if size == 2:
            cp = ((b & 0x1F) << 6) | (text[i + 1] & 0x3F)
        elif size == 3:
            cp = ((b & 0x0F) << 12) | ((text[i + 1] & 0x3F) << 6) | (text[i + 2] & 0x3F)
        if cp < 0x10000 and (blank[cp >> 3] >> (cp & 7)) & 1:
            out[written] = 0x20
            written += 1
        else:
            for j in range(size):
                out[written + j] = text[i + j]
            written += size
        i += size
    return written


def blank_characters(
    const uint8_t[::1] data,
    const int64_t[::1] offsets,
    Py_ssize_t first,
    const uint8_t[::1] blank,
    uint8_t[::1] out,
    int64_t[::1] out_offsets,
):
    """Texts ``first`` to ``first + len(out_offsets) - 2`` of an Arrow (large) string array's
    buffers with every character whose bit is set in ``blank`` (a bitmap of the BMP, like
    ``language.nfc_stable``) turned into one ASCII space, the others kept: into ``out`` (as many
    bytes as the texts at most) and ``out_offsets`` (from 0). What ``str.replace_many`` of those
    characters with a space gives, in one pass (``student.normalize``). UTF-8 is trusted (Arrow's)."""
    cdef Py_ssize_t rows = out_offsets.shape[0] - 1, r, begin, end
    cdef int64_t written = 0
    _check_texts(data, offsets, first, rows, blank)
    if rows and out.shape[0] < offsets[first + rows] - offsets[first]:
        raise ValueError("out is shorter than the texts")
    out_offsets[0] = 0
    with nogil:
        for r in range(rows):
            begin = offsets[first + r]
            end = max(begin, offsets[first + r + 1])
            written += blank_text(&data[0] + begin, end - begin, &blank[0], &out[0] + written)
            out_offsets[r + 1] = written
    return None


cdef Py_ssize_t lower_text(
    const uint8_t* text, Py_ssize_t n, const uint8_t* table, bint ascii_to_one, uint8_t* out
) noexcept nogil:
    """``text[:n]`` (UTF-8) into ``out`` with each character replaced by its entry of ``table``: four
    bytes a character of the BMP, the length of its replacement (1 to 3) then its UTF-8 bytes. Returns
    the bytes written, or -1 at a character without one (length 0, or outside the BMP). ``out`` holds
    three bytes a byte of ``text`` plus three. ``ascii_to_one``: every ASCII character's replacement
    is one byte, so eight ASCII characters in a row are replaced without a branch."""
    cdef Py_ssize_t i = 0, written = 0, j
    cdef uint8_t b
    cdef uint32_t cp
    cdef uint64_t word
    cdef const uint8_t* entry
    while i < n:
        if ascii_to_one and i + 8 <= n:
            memcpy(&word, text + i, 8)
            if not (word & 0x8080808080808080ULL):
                for j in range(8):
                    out[written + j] = table[4 * text[i + j] + 1]
                written += 8
                i += 8
                continue
        b = text[i]
        if b < 0x80:
            cp = b
            i += 1
        elif b < 0xE0:
            if i + 2 > n:
                return -1
            cp = ((b & 0x1F) << 6) | (text[i + 1] & 0x3F)
            i += 2
        elif b < 0xF0:
            if i + 3 > n:
                return -1
            cp = ((b & 0x0F) << 12) | ((text[i + 1] & 0x3F) << 6) | (text[i + 2] & 0x3F)
            i += 3
        else:
            return -1
        entry = table + 4 * cp
        if entry[0] == 0:
            return -1
        memcpy(out + written, entry + 1, 3)
        written += entry[0]
    return written


def lowered_lines(
    const uint8_t[::1] data,
    const int64_t[::1] offsets,
    Py_ssize_t first,
    Py_ssize_t rows,
    const uint8_t[::1] table,
    const uint8_t[::1] prefix,
    const int64_t[::1] prefix_offsets,
    Py_ssize_t prefix_first,
    bytes end,
):
    """``[prefix[r] + lowered text[r] + end for each row]`` as UTF-8 ``bytes``, fastText's lines in
    one pass without intermediate columns (fastText reads bytes as they are: no ``str`` to decode
    here and encode again in its binding): each character of the texts replaced by its entry of ``table``
    (65,536 entries of four bytes, ``lower_text``; ``student.lowercase_table``: lowercase,
    punctuation blanked), after each its prefix (another Arrow string array's buffers, taken as they
    are; ``prefix_offsets`` empty: none); and the rows of the texts with a character that has no
    entry: their lines are ``None`` (``student.model_lines`` makes those otherwise)."""
    cdef Py_ssize_t r, begin, stop, size, longest = 0, head, written
    cdef Py_ssize_t tail = PyBytes_GET_SIZE(end)
    cdef const char* end_data = PyBytes_AS_STRING(end)
    cdef bint prefixed = prefix_offsets.shape[0] != 0
    if table.shape[0] != 0x10000 * 4:
        raise ValueError("table holds four bytes for each character of the BMP")
    _check_offsets(data, offsets, first, rows)
    if prefixed:
        _check_offsets(prefix, prefix_offsets, prefix_first, rows)
    for r in range(rows):
        size = 3 * (offsets[first + r + 1] - offsets[first + r])
        if prefixed:
            size += prefix_offsets[prefix_first + r + 1] - prefix_offsets[prefix_first + r]
        longest = max(longest, size)
    cdef bint ascii_to_one = all([table[4 * b] == 1 for b in range(0x80)])
    cdef uint8_t* line = <uint8_t*> malloc(longest + tail + 4)
    if line == NULL:
        raise MemoryError()
    cdef list lines = [None] * rows
    cdef list missing = []
    try:
        for r in range(rows):
            head = 0
            if prefixed:
                begin = prefix_offsets[prefix_first + r]
                stop = max(begin, prefix_offsets[prefix_first + r + 1])
                memcpy(line, &prefix[0] + begin, stop - begin)
                head = stop - begin
            begin = offsets[first + r]
            stop = max(begin, offsets[first + r + 1])
            written = lower_text(&data[0] + begin, stop - begin, &table[0], ascii_to_one, line + head)
            if written < 0:
                missing.append(r)
                continue
            memcpy(line + head + written, end_data, tail)
            lines[r] = PyBytes_FromStringAndSize(<const char*> line, head + written + tail)
    finally:
        free(line)
    return lines, missing


cdef _check_offsets(const uint8_t[::1] data, const int64_t[::1] offsets, Py_ssize_t first, Py_ssize_t rows):
    cdef Py_ssize_t r
    if rows < 0 or first < 0 or offsets.shape[0] < first + rows + 1:
        raise ValueError("offsets do not fit the rows")
    for r in range(rows + 1):
        if offsets[first + r] < 0 or offsets[first + r] > data.shape[0]:
            raise ValueError("offsets point outside the data")


cdef _check_texts(const uint8_t[::1] data, const int64_t[::1] offsets, Py_ssize_t first, Py_ssize_t rows, const uint8_t[::1] blank):
    cdef Py_ssize_t r
    if rows < 0 or first < 0 or offsets.shape[0] < first + rows + 1 or blank.shape[0] != 0x10000 // 8:
        raise ValueError("offsets or blank do not fit the rows")
    for r in range(rows + 1):
        if offsets[first + r] < 0 or offsets[first + r] > data.shape[0]:
            raise ValueError("offsets point outside the data")


cdef Py_ssize_t distinct(
    uint32_t* found, Py_ssize_t n, uint16_t* counts, const float* log1p_of,
    const double* feature_bound, const double* feature_error, int32_t* row, float* weight, int32_t* count, double* bound, double* error, double* total,
) noexcept nogil:
    """The distinct features of a walk (``found[:n]``: each step's feature plus one, 0 for none;
    overwritten) into ``row`` in the order they first occur, their counts into ``count`` and
    ``log1p`` of them into ``weight``; ``bound`` = the sum of weight × feature_bound, ``error`` = of
    weight × feature_error, ``total`` = of weight; returns how many. ``counts`` (indexed by feature
    plus one) comes and goes zeroed. Without a branch on the data (whether a feature is new is a
    coin toss to the branch predictor): the features are packed to the front, counted, then each
    taken where its count is still set, which it clears. (Prefetching the rows the sum reads next
    cost more than it saved: the sum's loads do not wait on each other.)"""
    cdef Py_ssize_t i, k = 0, m = 0
    cdef uint32_t f
    cdef uint16_t c
    cdef double b = 0.0, e = 0.0, t = 0.0
    for i in range(n):
        f = found[i]
        found[m] = f
        m += f != 0
    for i in range(m):
        counts[found[i]] += 1
    for i in range(m):
        f = found[i]
        c = counts[f]
        row[k] = <int32_t> f - 1
        count[k] = c
        counts[f] = 0
        k += c != 0
    for i in range(k):
        weight[i] = log1p_of[count[i]]
        b += weight[i] * feature_bound[row[i]]
        e += weight[i] * feature_error[row[i]]
        t += weight[i]
    bound[0] = b
    error[0] = e
    total[0] = t
    return k


cdef class Scratch:
    """The working memory of one batch: per-lane feature lists, counts, weights, the sums."""

    cdef uint16_t* counts
    cdef uint32_t* found
    cdef int32_t* row
    cdef int32_t* ordered
    cdef int32_t* count
    cdef Py_ssize_t size
    cdef float* log1p_of
    cdef float* weight
    cdef float* acc
    cdef double* raw
    cdef double* wide
    cdef uint16_t* narrow

    def __cinit__(self, Py_ssize_t n_features, Py_ssize_t longest, Py_ssize_t classes):
        cdef Py_ssize_t i, size = longest + 2
        self.size = size
        self.counts = <uint16_t*> calloc(n_features + 1, sizeof(uint16_t))
        self.found = <uint32_t*> malloc(LANES * size * sizeof(uint32_t))
        self.row = <int32_t*> malloc(size * sizeof(int32_t))
        self.ordered = <int32_t*> malloc(4 * size * sizeof(int32_t))
        self.count = <int32_t*> malloc(size * sizeof(int32_t))
        self.log1p_of = <float*> malloc(size * sizeof(float))
        self.weight = <float*> malloc(size * sizeof(float))
        self.acc = <float*> malloc(classes * sizeof(float))
        self.raw = <double*> malloc(ROW * sizeof(double))
        self.wide = <double*> malloc(ROW * sizeof(double))
        self.narrow = <uint16_t*> malloc(ROW * sizeof(uint16_t))
        if (
            self.counts == NULL or self.found == NULL or self.row == NULL or self.ordered == NULL
            or self.count == NULL or self.log1p_of == NULL or self.weight == NULL
            or self.acc == NULL or self.raw == NULL or self.wide == NULL or self.narrow == NULL
        ):
            raise MemoryError()
        for i in range(size):
            self.log1p_of[i] = <float> log1p(<double> i)  # py3langid: log1p of float32 counts

    def __dealloc__(self):
        free(self.counts)
        free(self.found)
        free(self.row)
        free(self.ordered)
        free(self.count)
        free(self.log1p_of)
        free(self.weight)
        free(self.acc)
        free(self.raw)
        free(self.wide)
        free(self.narrow)


cdef class Walker:
    """py3langid's model as the walk reads it (built by ``language.Model.load``, which checks it)."""

    cdef const uint64_t[::1] transitions
    cdef uint64_t start
    cdef const uint16_t[:, ::1] ptc
    cdef const uint8_t[:, ::1] quantized
    cdef double step
    cdef const double[::1] floor
    cdef const double[::1] feature_bound
    cdef const double[::1] feature_error
    cdef const double[::1] pc
    cdef const int32_t[:, ::1] aliases
    cdef double pc_bound
    cdef double floor_bound
    cdef readonly Py_ssize_t classes
    cdef readonly bint simd

    def __init__(
        self,
        const uint64_t[::1] transitions,
        uint64_t start,
        const uint16_t[:, ::1] ptc,
        const uint8_t[:, ::1] quantized,
        double step,
        const double[::1] floor,
        const double[::1] feature_bound,
        const double[::1] feature_error,
        const double[::1] pc,
        const int32_t[:, ::1] aliases,
        bint simd=SIMD,
    ):
        """The DFA is packed so that a step is one load: an entry describes the state a byte leads
        to, its row offset in the low 32 bits and its feature plus one (0: none) in the high 32 bits,
        and the next entry is ``transitions[low 32 bits of the entry + byte]``; ``start`` describes
        the first state. ``ptc`` holds the model's float16 values as their bits, features ×
        languages; ``quantized[f, c]`` × ``step`` + ``floor[c]`` is ``ptc[f, c]`` within
        ``feature_error[f]`` (``WIDTH`` bytes a row, languages past ``classes`` 0);
        ``feature_bound[f]`` is the row's largest ``|ptc|``; ``pc`` log P(language); ``aliases``:
        (first, duplicate) columns of a label that has two. ``simd=False`` sums with the portable
        loops even where the CPU has AVX2 (the tests compare them). The model is trusted to be
        consistent (``language.check_layout``): every row offset plus 255 indexes ``transitions``
        and every feature is a row of ``ptc`` and ``quantized``."""
        cdef Py_ssize_t c
        self.classes = ptc.shape[1]
        if (
            quantized.shape[0] != ptc.shape[0] or quantized.shape[1] != ROW or self.classes > ROW
            or floor.shape[0] != self.classes or pc.shape[0] != self.classes
            or feature_bound.shape[0] != ptc.shape[0] or feature_error.shape[0] != ptc.shape[0]
            or aliases.shape[1] != 2
        ):
            raise ValueError("the model's arrays do not match each other")
        for c in range(aliases.shape[0]):
            if not (0 <= aliases[c, 0] < self.classes and 0 <= aliases[c, 1] < self.classes):
                raise ValueError("an alias names no column")
        self.transitions, self.start, self.ptc, self.quantized = transitions, start, ptc, quantized
        self.step, self.floor, self.feature_bound, self.feature_error = step, floor, feature_bound, feature_error
        self.pc, self.aliases, self.simd = pc, aliases, simd
        self.pc_bound = max([fabs(pc[c]) for c in range(self.classes)])
        self.floor_bound = max([fabs(floor[c]) for c in range(self.classes)])

    def identify(
        self,
        const uint8_t[::1] data,
        const int64_t[::1] starts,
        const int64_t[::1] lengths,
        bint quantized,
        int16_t[::1] best,
        uint8_t[::1] settled,
    ):
        """Text ``r`` is ``data[starts[r]:starts[r] + lengths[r]]`` (what py3langid's ``_encode``
        makes of it): ``best[r]`` its best language (a column of the model) and ``settled[r]``
        whether py3langid surely answers the same (``decide_row``), from the ``quantized`` sums
        or the exact ones."""
        rows = starts.shape[0]
        if best.shape[0] < rows or settled.shape[0] < rows:
            raise ValueError("output arrays do not match the texts")
        self._run(data, starts, lengths, quantized, &best[0] if rows else NULL,
                  &settled[0] if rows else NULL, None, None, None, None)

    def scores(
        self,
        const uint8_t[::1] data,
        const int64_t[::1] starts,
        const int64_t[::1] lengths,
        bint quantized,
        double[:, ::1] raw,
        double[::1] bound,
        int64_t[::1] features,
        double[::1] spread,
    ):
        """What ``identify`` decides from, for the tests: ``raw[r]`` = the sum over text ``r``'s
        distinct features ``f`` (seen ``c_f`` times) of ``log1p(c_f) * ptc[f]``, ``bound[r]`` =
        the sum of ``log1p(c_f) * feature_bound[f]``, ``features[r]`` = the number of distinct
        features, ``spread[r]``: how far each of ``raw[r]`` may be from the exact sum, besides the
        float32 rounding ``bound`` covers (0 for the exact sums)."""
        rows = starts.shape[0]
        if raw.shape[0] < rows or raw.shape[1] != self.classes or bound.shape[0] < rows:
            raise ValueError("output arrays do not match the texts and the model")
        if features.shape[0] < rows or spread.shape[0] < rows:
            raise ValueError("output arrays do not match the texts")
        self._run(data, starts, lengths, quantized, NULL, NULL, raw, bound, features, spread)

    cdef _run(
        self,
        const uint8_t[::1] data,
        const int64_t[::1] starts,
        const int64_t[::1] lengths,
        bint quantized,
        int16_t* best,
        uint8_t* settled,
        double[:, ::1] raw,
        double[::1] bound_out,
        int64_t[::1] features_out,
        double[::1] spread_out,
    ):
        cdef Py_ssize_t rows = starts.shape[0], classes = self.classes, n_features = self.ptc.shape[0]
        cdef Py_ssize_t r, r0, i, c, lane, k, longest = 0
        cdef const unsigned char* text[LANES]
        cdef Py_ssize_t length[LANES]
        cdef uint32_t* found[LANES]
        cdef double bound, error, total, spread
        cdef int16_t answer
        cdef bint sure
        cdef langid_scorer score = langid_pick_scorer(self.simd)
        cdef langid_adder add = langid_pick_adder(self.simd)
        if lengths.shape[0] != rows:
            raise ValueError("starts and lengths differ in length")
        for r in range(rows):
            if starts[r] < 0 or lengths[r] < 0 or starts[r] + lengths[r] > data.shape[0]:
                raise ValueError("a text lies outside the data")
            longest = max(longest, lengths[r])
        if longest > 65535:
            raise ValueError("a text is longer than 65,535 bytes (its counts are uint16)")
        if rows == 0:
            return
        cdef Scratch scratch = Scratch(n_features, longest, classes)
        for lane in range(LANES):
            found[lane] = scratch.found + lane * (longest + 1)
        r0 = 0
        with nogil:
            while r0 < rows:
                for lane in range(LANES):
                    length[lane] = 0
                    text[lane] = &data[0]
                    if r0 + lane < rows:
                        text[lane] = &data[0] + starts[r0 + lane]
                        length[lane] = lengths[r0 + lane]
                langid_walk(&self.transitions[0], self.start, text, length, found)
                for lane in range(min(LANES, rows - r0)):
                    r = r0 + lane
                    k = distinct(
                        found[lane], length[lane], scratch.counts, scratch.log1p_of, &self.feature_bound[0],
                        &self.feature_error[0], scratch.row, scratch.weight,
                        scratch.count, &bound, &error, &total,
                    )
                    if quantized:
                        self._sum_quantized(scratch, k, total, add)
                        # the integer sums are exact; the double arithmetic around them errs by at
                        # most (k + 2) roundings of its largest terms
                        spread = error + (k + 2) * 2.0 * FLOAT64_UNIT * total * (255.0 * self.step + self.floor_bound)
                    else:
                        score(scratch.acc, &self.ptc[0, 0], classes, scratch.row, scratch.weight, k)
                        for c in range(classes):
                            scratch.raw[c] = scratch.acc[c]
                        spread = 0.0
                    if best != NULL:
                        sure = self._decide_row(scratch.raw, bound, k, lengths[r], spread, &answer)
                        best[r] = answer
                        settled[r] = sure
                    else:
                        for c in range(classes):
                            raw[r, c] = scratch.raw[c]
                        bound_out[r] = bound
                        features_out[r] = k
                        spread_out[r] = spread
                r0 += LANES

    cdef void _sum_quantized(self, Scratch scratch, Py_ssize_t k, double total, langid_adder add) noexcept nogil:
        """``scratch.raw`` = floor × total + step × the sum of weight × quantized row, the rows
        summed as integers, one weight a count: the features seen once, twice, three times (most of
        them), then the others ordered by count (insertion sort: they are few). Most features are
        seen once: those are told from the rest without a branch on the data."""
        cdef Py_ssize_t size = scratch.size, i, j, c, n1 = 0, n2 = 0, n3 = 0, many = 0, rest = 0
        cdef int32_t* ones = scratch.ordered
        cdef int32_t* twos = scratch.ordered + size
        cdef int32_t* threes = scratch.ordered + 2 * size
        cdef int32_t* more = scratch.ordered + 3 * size  # indexes of row and count
        cdef int32_t x
        for i in range(k):
            ones[n1] = scratch.row[i]
            twos[rest] = <int32_t> i  # the indexes of the others, for now
            n1 += scratch.count[i] == 1
            rest += scratch.count[i] != 1
        for j in range(rest):
            i = twos[j]
            c = scratch.count[i]
            if c == 2:
                twos[n2] = scratch.row[i]  # n2 <= j: the indexes yet to read are not overwritten
                n2 += 1
            elif c == 3:
                threes[n3] = scratch.row[i]
                n3 += 1
            else:
                more[many] = <int32_t> i
                many += 1
        for c in range(ROW):
            scratch.wide[c] = 0.0
        self._add_group(scratch, ones, n1, scratch.log1p_of[1], add)
        self._add_group(scratch, twos, n2, scratch.log1p_of[2], add)
        self._add_group(scratch, threes, n3, scratch.log1p_of[3], add)
        for i in range(1, many):
            x = more[i]
            j = i
            while j > 0 and scratch.count[more[j - 1]] > scratch.count[x]:
                more[j] = more[j - 1]
                j -= 1
            more[j] = x
        i = 0
        while i < many:  # a run of one count: its rows gathered into ``ones`` (done with)
            c = scratch.count[more[i]]
            j = i
            while j < many and scratch.count[more[j]] == c:
                ones[j - i] = scratch.row[more[j]]
                j += 1
            self._add_group(scratch, ones, j - i, scratch.log1p_of[c], add)
            i = j
        for c in range(self.classes):
            scratch.raw[c] = self.floor[c] * total + self.step * scratch.wide[c]

    cdef void _add_group(
        self, Scratch scratch, const int32_t* features, Py_ssize_t n, double weight, langid_adder add
    ) noexcept nogil:
        """``scratch.wide`` += weight × the sum of the quantized rows of ``features[:n]``, summed in
        uint16 ``GROUP`` rows at a time."""
        cdef Py_ssize_t j = 0, done
        while j < n:
            done = min(n - j, GROUP)
            memset(scratch.narrow, 0, ROW * sizeof(uint16_t))
            add(scratch.narrow, &self.quantized[0, 0], features + j, done)
            langid_pick_flusher(self.simd)(scratch.wide, scratch.narrow, weight)
            j += done

    cdef bint _decide_row(
        self, const double* raw, double bound, Py_ssize_t k, Py_ssize_t length, double spread, int16_t* best
    ) noexcept nogil:
        """The best language of one text from its sums, and whether py3langid's answer is surely it.

        py3langid computes ``t = (raw + pc) / sqrt(length)``, ``p = softmax(t)``, adds an aliased
        label's second column into its first and takes the argmax, in float32. Here the same
        ``t`` in double, and each label's log-probability up to a common constant (``t``, or
        ``logaddexp`` of an aliased pair): the text is settled when the best exceeds the second
        best by more than the errors could make up (``language``'s module docstring: float32
        rounding of py3langid's sums and ours within ``sum_error``, of the scaling, exp and
        normalization within ``t_error`` and the ``classes + 16`` roundings, and ``spread`` of
        each quantized sum). A text without features (py3langid then scores every language 0)
        is never settled."""
        cdef double scale = 1.0 / sqrt(<double> max(length, 1))
        cdef double t[ROW]
        cdef double top = -1e308, second = -1e308, largest = 0.0, a, b
        cdef Py_ssize_t c, i, winner = 0
        for c in range(self.classes):
            t[c] = (raw[c] + self.pc[c]) * scale
            largest = max(largest, fabs(t[c]))
        cdef double low = -1e308
        for i in range(self.aliases.shape[0]):  # a label's two columns: log of the sum of their exps
            a = t[self.aliases[i, 0]]
            b = t[self.aliases[i, 1]]
            t[self.aliases[i, 0]] = max(a, b) + log1p(exp(-fabs(a - b)))
            t[self.aliases[i, 1]] = low
        for c in range(self.classes):
            if t[c] > top:
                second = top
                top = t[c]
                winner = c
            elif t[c] > second:
                second = t[c]
        best[0] = <int16_t> winner
        if k == 0:
            return False
        cdef double sum_error = 4.0 * (k + 8) * FLOAT32_UNIT * (bound + self.pc_bound)
        cdef double t_error = scale * sum_error + 4.0 * FLOAT32_UNIT * largest
        cdef double margin = 4.0 * t_error + 2.0 * (self.classes + 16) * FLOAT32_UNIT + 2.0 * scale * spread
        return top - second > margin * (1.0 + 1e-9) + 64.0 * FLOAT64_UNIT * (largest + 1.0)
