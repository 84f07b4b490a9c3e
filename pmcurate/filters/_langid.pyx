# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled half of the language identifier: py3langid's byte-level DFA walked in C over a batch.

py3langid (``LanguageIdentifier.classify``) walks its DFA over a text's UTF-8 bytes in a Python
loop (``visit_counts``: ``state = nextmove[rowbase[state] + byte]``, and a feature wherever
``output[state] >= 0``), counts the features, and scores each language as
``log1p(counts) @ ptc[features] + pc``. ``feature_scores`` does the same walk and the same sum for
many texts at once, in C, over the same model; the decision (normalization, aliased labels,
argmax) and the check that the answer cannot differ from py3langid's are in
``pmcurate.filters.language``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.math cimport log1p
from libc.stdint cimport int32_t, int64_t, uint16_t, uint64_t
from libc.stdlib cimport calloc, free, malloc

BUILT_FROM_SHA256 = PYX_SHA256  # this file's SHA-256, given by setup.py at build time (compiled.check_build)

cdef enum:
    LANES = 4  # texts walked at once (langid_walk's LANGID_LANES)

cdef extern from *:
    """
    #include <string.h>

    #define LANGID_LANES 4

    /* Walk the packed DFA over LANGID_LANES texts at once, writing each text's features (with
       repeats) to found[lane]. A text's steps depend on each other; different texts' steps do not,
       so walking several in turn overlaps their loads, which miss the caches often (the table is
       tens of MB). A lane with a shorter text is finished alone. */
    static void langid_walk(const uint64_t *transitions, uint64_t start,
                            const unsigned char *const *data, const Py_ssize_t *length,
                            int32_t *const *found, Py_ssize_t *n_found)
    {
        uint64_t entry[LANGID_LANES];
        Py_ssize_t n[LANGID_LANES];
        Py_ssize_t shortest = length[0];
        for (int lane = 0; lane < LANGID_LANES; lane++) {
            entry[lane] = start;
            n[lane] = 0;
            if (length[lane] < shortest) shortest = length[lane];
        }
        for (Py_ssize_t i = 0; i < shortest; i++) {
            for (int lane = 0; lane < LANGID_LANES; lane++) {
                entry[lane] = transitions[(entry[lane] & 0xFFFFFFFFu) + data[lane][i]];
                int32_t f = (int32_t) (entry[lane] >> 32) - 1;
                found[lane][n[lane]] = f;
                n[lane] += f >= 0;
            }
        }
        for (int lane = 0; lane < LANGID_LANES; lane++) {
            for (Py_ssize_t i = shortest; i < length[lane]; i++) {
                entry[lane] = transitions[(entry[lane] & 0xFFFFFFFFu) + data[lane][i]];
                int32_t f = (int32_t) (entry[lane] >> 32) - 1;
                found[lane][n[lane]] = f;
                n[lane] += f >= 0;
            }
            n_found[lane] = n[lane];
        }
    }

    /* Ask the caches for a feature's row of ptc (float16 values) ahead of the sum that reads it. */
    static inline void langid_prefetch(const uint16_t *row, Py_ssize_t classes) {
    #if defined(__GNUC__) || defined(__clang__)
        for (Py_ssize_t c = 0; c < classes; c += 64 / sizeof *row) __builtin_prefetch(row + c);
    #endif
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

    static int langid_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    #else
    #define langid_score_avx2 langid_score_portable
    static int langid_has_avx2(void) { return 0; }
    #endif

    typedef void (*langid_scorer)(float *, const uint16_t *, Py_ssize_t, const int32_t *, const float *, Py_ssize_t);

    static langid_scorer langid_pick_scorer(int fast) {
        return fast ? langid_score_avx2 : langid_score_portable;
    }
    """
    void langid_walk(
        const uint64_t* transitions, uint64_t start, const unsigned char* const* data,
        const Py_ssize_t* length, int32_t* const* found, Py_ssize_t* n_found
    ) nogil
    ctypedef void (*langid_scorer)(
        float* acc, const uint16_t* ptc, Py_ssize_t classes, const int32_t* row, const float* weight, Py_ssize_t k
    ) noexcept nogil
    void langid_prefetch(const uint16_t* row, Py_ssize_t classes) nogil
    int langid_has_avx2()
    langid_scorer langid_pick_scorer(int fast)

SIMD = bool(langid_has_avx2())
"""Whether this CPU sums with AVX2, F16C and FMA (x86-64 since about 2013) rather than the portable loop."""


def has_letter(str text, Py_ssize_t limit):
    """Whether one of the first ``limit`` characters of ``text`` is a letter (``str.isalpha``)."""
    cdef Py_ssize_t i, n = min(len(text), limit)
    cdef Py_UCS4 ch
    for i in range(n):
        ch = text[i]
        if ch.isalpha():
            return True
    return False


cdef Py_ssize_t distinct(
    const int32_t* found, Py_ssize_t n, int32_t* counts, const float* log1p_of,
    const double* feature_bound, const uint16_t* ptc, Py_ssize_t classes,
    int32_t* row, float* weight, double* bound,
) noexcept nogil:
    """The distinct features of ``found[:n]`` into ``row``, ``log1p`` of their counts into ``weight``,
    ``bound`` = the sum of weight × feature_bound; returns how many. ``counts`` comes and goes zeroed.
    Each new feature's row of ``ptc`` is prefetched: the sum reads them next."""
    cdef Py_ssize_t i, k = 0
    cdef int32_t f
    for i in range(n):
        f = found[i]
        if counts[f] == 0:
            row[k] = f
            k += 1
            langid_prefetch(ptc + f * classes, classes)
        counts[f] += 1
    bound[0] = 0.0
    for i in range(k):
        f = row[i]
        weight[i] = log1p_of[counts[f]]
        bound[0] += weight[i] * feature_bound[f]
        counts[f] = 0
    return k


def feature_scores(
    list texts,
    const uint64_t[::1] transitions,
    uint64_t start,
    const uint16_t[:, ::1] ptc,
    const double[::1] feature_bound,
    double[:, ::1] scores,
    double[::1] bound,
    int64_t[::1] features,
    bint simd=SIMD,
):
    """Walk the DFA over each of ``texts`` (UTF-8 ``bytes``) and score its features.

    The DFA is packed so that a step is one load: an entry describes the state a byte leads to,
    its row offset in the low 32 bits and its feature plus one (0: none) in the high 32 bits, and
    the next entry is ``transitions[low 32 bits of the entry + byte]``; ``start`` describes the
    first state. ``ptc`` holds the model's float16 values as their bits. For text ``r`` with
    distinct features ``f`` seen ``c_f`` times: ``scores[r] = sum over f of log1p(c_f) * ptc[f]``
    (summed in float32), ``bound[r] = sum of log1p(c_f) * feature_bound[f]`` and ``features[r]`` =
    the number of distinct features. ``simd=False`` sums with the portable loop even where the
    CPU has AVX2 (the tests compare the two). The model is trusted to be consistent
    (``pmcurate.filters.language`` checks it once, when it builds it): every row offset plus 255
    indexes ``transitions`` and every feature is a row of ``ptc``.
    """
    cdef Py_ssize_t rows = len(texts), classes = ptc.shape[1], n_features = ptc.shape[0]
    cdef Py_ssize_t r, r0, i, c, lane, k, longest = 0
    cdef const unsigned char* data[LANES]
    cdef Py_ssize_t length[LANES]
    cdef int32_t* found[LANES]
    cdef Py_ssize_t n_found[LANES]
    cdef bytes text
    cdef langid_scorer score = langid_pick_scorer(simd)
    if scores.shape[0] < rows or scores.shape[1] != classes or bound.shape[0] < rows or features.shape[0] < rows:
        raise ValueError("output arrays do not match the texts and the model")
    if feature_bound.shape[0] != n_features:
        raise ValueError("feature_bound needs one value per feature")
    for text in texts:
        longest = max(longest, PyBytes_GET_SIZE(text))
    cdef int32_t* counts = <int32_t*> calloc(n_features, sizeof(int32_t))
    cdef int32_t* buffer = <int32_t*> malloc((LANES + 1) * (longest + 1) * sizeof(int32_t))
    cdef float* log1p_of = <float*> malloc((longest + 1) * sizeof(float))
    cdef float* weight = <float*> malloc((longest + 1) * sizeof(float))
    cdef float* acc = <float*> malloc(classes * sizeof(float))
    if counts == NULL or buffer == NULL or log1p_of == NULL or weight == NULL or acc == NULL:
        free(counts)
        free(buffer)
        free(log1p_of)
        free(weight)
        free(acc)
        raise MemoryError()
    for i in range(longest + 1):
        log1p_of[i] = <float> log1p(<double> i)
    cdef int32_t* row = buffer + LANES * (longest + 1)
    for lane in range(LANES):
        found[lane] = buffer + lane * (longest + 1)
    try:
        for r0 in range(0, rows, LANES):
            for lane in range(LANES):
                length[lane] = 0
                if r0 + lane < rows:
                    text = texts[r0 + lane]
                    data[lane] = <const unsigned char*> PyBytes_AS_STRING(text)
                    length[lane] = PyBytes_GET_SIZE(text)
            with nogil:
                langid_walk(&transitions[0], start, data, length, found, n_found)
                for lane in range(min(LANES, rows - r0)):
                    r = r0 + lane
                    k = distinct(
                        found[lane], n_found[lane], counts, log1p_of, &feature_bound[0], &ptc[0, 0], classes,
                        row, weight, &bound[r],
                    )
                    score(acc, &ptc[0, 0], classes, row, weight, k)
                    features[r] = k
                    for c in range(classes):
                        scores[r, c] = acc[c]
    finally:
        free(counts)
        free(buffer)
        free(log1p_of)
        free(weight)
        free(acc)
