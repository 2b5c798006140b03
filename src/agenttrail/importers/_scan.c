/* The usage-only reader's native line scanner (agenttrail.importers._scan). See docs/importers.md,
 * "The native reader".
 *
 * scan(buf, first_line_no, mode, skip_prefixes, needle, keep_prefixes, spec) walks the complete lines
 * of `buf` (each ends with '\n'), drops the lines the parser's byte check would drop (the same rules as
 * the Python predicates, mode 1: Claude Code's prefixes and needle, mode 2: Codex's `_CANNOT_COUNT`
 * pattern), validates each remaining line as JSON and builds only the parts of it that `spec` names.
 *
 * The scanner never decides that a line is damaged: where it is not *sure* that orjson would accept
 * the line and give the same values (a number with an exponent, a float or a 19-digit integer where a
 * value is built, a surrogate escape, invalid UTF-8, a syntax error, deep nesting, anything but an
 * object), it hands the line's bytes back and orjson decides, as on the plain path. So a damaged line
 * is reported with orjson's words and never counted, and an accepted line's values are orjson's.
 *
 * Returns (items, lines, consumed): items is a flat list [line_no, value, line_no, value, ...] where
 * value is the built dict or, when unsure, the line's bytes; lines is the number of complete lines
 * walked; consumed the bytes up to and including the last newline.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>
#include <limits.h>
#include <stdlib.h>
#include <openssl/evp.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <string.h>

#define MAX_DEPTH 64     /* deeper lines go to orjson (its limit is 1024) */
#define MAX_DIGITS 300   /* longer numbers go to orjson (it rejects those that overflow a double) */
#define MAX_KEYS 24
#define MAX_NODES 16

enum { SKIP = 0, FULL = 1, SHAPE = 2, OBJECT = 3 };

typedef struct Spec Spec;
typedef struct {
    const char *key;
    Py_ssize_t len;
    int kind;
    Spec *child;
    PyObject *pykey; /* borrowed from the spec dict: the built dict's key */
} Entry;
struct Spec {
    int n;
    Entry e[MAX_KEYS];
};

typedef struct {
    const unsigned char *p, *end;
    int depth;
    int pyerr; /* a Python exception is set (memory): stop */
} P;

/* ------------------------------------------------------------------------------------------ spec */

static int build_spec(PyObject *d, Spec *pool, int *used, Spec **out) {
    if (*used >= MAX_NODES) {
        PyErr_SetString(PyExc_ValueError, "spec too large");
        return -1;
    }
    Spec *s = &pool[(*used)++];
    s->n = 0;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (s->n >= MAX_KEYS || !PyUnicode_Check(k)) {
            PyErr_SetString(PyExc_ValueError, "spec keys must be at most 24 strings per object");
            return -1;
        }
        Entry *e = &s->e[s->n++];
        e->key = PyUnicode_AsUTF8AndSize(k, &e->len);
        if (e->key == NULL) return -1;
        e->pykey = k;
        e->child = NULL;
        if (v == Py_None) {
            e->kind = FULL;
        } else if (PyDict_Check(v)) {
            e->kind = OBJECT;
            if (build_spec(v, pool, used, &e->child) < 0) return -1;
        } else {
            e->kind = SHAPE;
        }
    }
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------------------------------ JSON */

#define UNSURE 1
#define ERR 2

static inline void skip_ws(P *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static inline int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Validate a string at s->p (just after its opening quote). On success s->p is past the closing quote,
 * start and len span the raw contents, escaped says whether it holds backslashes. */
static int scan_string(P *s, const unsigned char **start, Py_ssize_t *len, int *escaped) {
    const unsigned char *p = s->p, *end = s->end;
    *start = p;
    *escaped = 0;
    while (p < end) {
        /* Plain ASCII bytes (no quote, backslash, control or non-ASCII byte) sixteen and eight at a time:
         * the long texts of a transcript line are mostly that. */
#ifdef __SSE2__
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            /* signed: a byte >= 0x80 is negative, so below 0x20 as a control character is */
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                       _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
            int m = _mm_movemask_epi8(hit);
            if (m) {
                p += __builtin_ctz(m);
                break;
            }
            p += 16;
        }
#endif
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t quote = v ^ 0x2222222222222222ULL, bslash = v ^ 0x5C5C5C5C5C5C5C5CULL;
            uint64_t special = ((quote - 0x0101010101010101ULL) & ~quote) | ((bslash - 0x0101010101010101ULL) & ~bslash) |
                               (v - 0x2020202020202020ULL) | v;
            if (special & 0x8080808080808080ULL) break;
            p += 8;
        }
        if (p >= end) break;
        unsigned char c = *p;
        if (c == '"') {
            *len = p - *start;
            s->p = p + 1;
            return 0;
        }
        if (c < 0x20) return UNSURE;
        if (c == '\\') {
            *escaped = 1;
            if (p + 1 >= end) return UNSURE;
            unsigned char e = p[1];
            if (e == 'u') {
                if (p + 6 > end) return UNSURE;
                int h0 = hexval(p[2]), h1 = hexval(p[3]), h2 = hexval(p[4]), h3 = hexval(p[5]);
                if ((h0 | h1 | h2 | h3) < 0) return UNSURE;
                int cp = (h0 << 12) | (h1 << 8) | (h2 << 4) | h3;
                if (cp >= 0xD800 && cp <= 0xDFFF) return UNSURE; /* surrogates: orjson's rules decide */
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
                       e == 't') {
                p += 2;
            } else {
                return UNSURE;
            }
            continue;
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        /* UTF-8, strictly: no overlong forms, no encoded surrogates, nothing past U+10FFFF. */
        Py_ssize_t left = end - p;
        if (c >= 0xC2 && c <= 0xDF) {
            if (left < 2 || (p[1] & 0xC0) != 0x80) return UNSURE;
            p += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return UNSURE;
            if (c == 0xE0 && p[1] < 0xA0) return UNSURE;
            if (c == 0xED && p[1] > 0x9F) return UNSURE;
            p += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
                return UNSURE;
            if (c == 0xF0 && p[1] < 0x90) return UNSURE;
            if (c == 0xF4 && p[1] > 0x8F) return UNSURE;
            p += 4;
        } else {
            return UNSURE;
        }
    }
    return UNSURE; /* no closing quote */
}

static void put_utf8(unsigned char **o, int cp) {
    unsigned char *q = *o;
    if (cp < 0x80) {
        *q++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *q++ = (unsigned char)(0xC0 | (cp >> 6));
        *q++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *q++ = (unsigned char)(0xE0 | (cp >> 12));
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *q++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *o = q;
}

/* A validated string's contents as a Python str (escapes decoded; surrogate escapes never get here). */
static PyObject *make_string(const unsigned char *start, Py_ssize_t len, int escaped) {
    if (!escaped) return PyUnicode_DecodeUTF8((const char *)start, len, NULL);
    unsigned char *buf = PyMem_Malloc(len ? len : 1), *o = buf; /* decoding never lengthens */
    if (buf == NULL) return PyErr_NoMemory();
    const unsigned char *p = start, *end = start + len;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        unsigned char e = p[1];
        switch (e) {
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u':
                put_utf8(&o, (hexval(p[2]) << 12) | (hexval(p[3]) << 8) | (hexval(p[4]) << 4) | hexval(p[5]));
                p += 4;
                break;
            default: *o++ = e; /* " \ / */
        }
        p += 2;
    }
    PyObject *r = PyUnicode_DecodeUTF8((const char *)buf, o - buf, NULL);
    PyMem_Free(buf);
    return r;
}

static int value(P *s, int kind, const Spec *spec, PyObject **out);

/* Keys of built objects repeat on every line (`input_tokens`, …): a small direct-mapped cache of their
 * str objects, as orjson keeps, saves decoding, hashing and freeing them each time. The GIL guards it. */
#define KEY_CACHE 256
#define KEY_MAX 48
static struct {
    Py_ssize_t len;
    char bytes[KEY_MAX];
    PyObject *str;
} key_cache[KEY_CACHE];

static PyObject *make_key(const unsigned char *start, Py_ssize_t len, int escaped) {
    if (escaped || len > KEY_MAX) return make_string(start, len, escaped);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ start[i]) * 16777619u;
    h ^= h >> 16;
    h &= KEY_CACHE - 1;
    if (key_cache[h].str != NULL && key_cache[h].len == len && memcmp(key_cache[h].bytes, start, len) == 0)
        return Py_NewRef(key_cache[h].str);
    PyObject *str = make_string(start, len, 0);
    if (str == NULL) return NULL;
    PyUnicode_InternInPlace(&str); /* its hash is then computed once */
    Py_XSETREF(key_cache[h].str, Py_NewRef(str));
    key_cache[h].len = len;
    memcpy(key_cache[h].bytes, start, len);
    return str;
}

static int number(P *s, int kind, PyObject **out) {
    const unsigned char *p = s->p, *end = s->end, *start = p;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    const unsigned char *digits = p;
    if (p >= end || *p < '0' || *p > '9') return UNSURE;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    Py_ssize_t ndig = p - digits;
    int frac = 0;
    if (p < end && *p == '.') {
        frac = 1;
        p++;
        const unsigned char *f = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == f) return UNSURE;
        ndig += p - f;
    }
    if (p < end && (*p == 'e' || *p == 'E')) return UNSURE; /* may overflow a double: orjson decides */
    if (ndig > MAX_DIGITS) return UNSURE;
    s->p = p;
    if (kind == SKIP) return 0;
    if (frac || ndig > 18) return UNSURE; /* build only what is exactly an int64 */
    long long v = 0;
    for (const unsigned char *q = digits; q < digits + ndig; q++) v = v * 10 + (*q - '0');
    (void)start;
    *out = PyLong_FromLongLong(neg ? -v : v);
    if (*out == NULL) {
        s->pyerr = 1;
        return ERR;
    }
    return 0;
}

static int string_value(P *s, int kind, PyObject **out) {
    const unsigned char *start;
    Py_ssize_t len;
    int escaped, r;
    s->p++; /* the opening quote */
    if ((r = scan_string(s, &start, &len, &escaped))) return r;
    if (kind == SKIP) return 0;
    *out = kind == SHAPE ? PyUnicode_New(0, 0) : make_string(start, len, escaped);
    if (*out == NULL) {
        s->pyerr = 1;
        return ERR;
    }
    return 0;
}

static int array(P *s, int kind, PyObject **out) {
    int build = kind == FULL || kind == OBJECT; /* an array where an object was expected: all of it */
    PyObject *list = NULL;
    if (++s->depth > MAX_DEPTH) return UNSURE;
    s->p++;
    if (build || kind == SHAPE) {
        list = PyList_New(0);
        if (list == NULL) goto pyerr;
    }
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        goto done;
    }
    for (;;) {
        PyObject *item = NULL;
        int r = value(s, build ? FULL : SKIP, NULL, build ? &item : NULL);
        if (r) {
            Py_XDECREF(list);
            return r;
        }
        if (build) {
            int a = PyList_Append(list, item);
            Py_DECREF(item);
            if (a < 0) goto pyerr;
        }
        skip_ws(s);
        if (s->p >= s->end) goto unsure;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == ']') {
            s->p++;
            break;
        }
        goto unsure;
    }
done:
    s->depth--;
    if (list != NULL) *out = list;
    return 0;
unsure:
    Py_XDECREF(list);
    return UNSURE;
pyerr:
    Py_XDECREF(list);
    s->pyerr = 1;
    return ERR;
}

/* A member's key and the colon after it: s->p is then at its value. */
static int member_key(P *s, const unsigned char **key, Py_ssize_t *len, int *escaped) {
    int r;
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"') return UNSURE;
    s->p++;
    if ((r = scan_string(s, key, len, escaped))) return r;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':') return UNSURE;
    s->p++;
    skip_ws(s);
    return 0;
}

/* After a member's value: 0 when a comma says another follows, END at the object's end, else UNSURE. */
#define END (-1)
static int member_end(P *s) {
    skip_ws(s);
    if (s->p >= s->end) return UNSURE;
    if (*s->p == ',') {
        s->p++;
        return 0;
    }
    if (*s->p == '}') {
        s->p++;
        return END;
    }
    return UNSURE;
}

static int object(P *s, int kind, const Spec *spec, PyObject **out) {
    PyObject *dict = NULL;
    if (kind == SHAPE) kind = FULL; /* only strings and arrays are shapes */
    if (++s->depth > MAX_DEPTH) return UNSURE;
    s->p++;
    if (kind != SKIP) {
        dict = PyDict_New();
        if (dict == NULL) goto pyerr;
    }
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        goto done;
    }
    for (;;) {
        const unsigned char *kstart;
        Py_ssize_t klen;
        int kesc, r;
        if ((r = member_key(s, &kstart, &klen, &kesc))) goto fail_r;
        PyObject *v = NULL;
        if (kind == OBJECT) {
            const Entry *hit = NULL;
            if (kesc) goto unsure; /* an escaped key might spell one the spec names */
            for (int i = 0; i < spec->n; i++) {
                const Entry *e = &spec->e[i];
                if (e->len == klen && memcmp(e->key, kstart, klen) == 0) {
                    hit = e;
                    break;
                }
            }
            if (hit == NULL) {
                if ((r = value(s, SKIP, NULL, NULL))) goto fail_r;
            } else {
                if ((r = value(s, hit->kind, hit->child, &v))) goto fail_r;
                /* Duplicate keys: the last one wins, as in orjson. */
                int a = PyDict_SetItem(dict, hit->pykey, v);
                Py_DECREF(v);
                if (a < 0) goto pyerr;
            }
        } else if (kind == FULL) {
            PyObject *key = make_key(kstart, klen, kesc);
            if (key == NULL) goto pyerr;
            if ((r = value(s, FULL, NULL, &v))) {
                Py_DECREF(key);
                goto fail_r;
            }
            int a = PyDict_SetItem(dict, key, v);
            Py_DECREF(key);
            Py_DECREF(v);
            if (a < 0) goto pyerr;
        } else if ((r = value(s, SKIP, NULL, NULL))) {
            goto fail_r;
        }
        if ((r = member_end(s)) == END) break;
        if (r == 0) continue;
        goto unsure;
    fail_r:
        Py_XDECREF(dict);
        return r;
    }
done:
    s->depth--;
    if (dict != NULL) *out = dict;
    return 0;
unsure:
    Py_XDECREF(dict);
    return UNSURE;
pyerr:
    Py_XDECREF(dict);
    s->pyerr = 1;
    return ERR;
}

static int literal(P *s, const char *word, Py_ssize_t n, PyObject *v, int kind, PyObject **out) {
    if (s->end - s->p < n || memcmp(s->p, word, n) != 0) return UNSURE;
    s->p += n;
    if (kind != SKIP) *out = Py_NewRef(v);
    return 0;
}

static int value(P *s, int kind, const Spec *spec, PyObject **out) {
    if (s->p >= s->end) return UNSURE;
    switch (*s->p) {
        case '{': return object(s, kind, spec, out);
        case '[': return array(s, kind, out);
        case '"': return string_value(s, kind, out);
        case 't': return literal(s, "true", 4, Py_True, kind, out);
        case 'f': return literal(s, "false", 5, Py_False, kind, out);
        case 'n': return literal(s, "null", 4, Py_None, kind, out);
        default:
            if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return number(s, kind, out);
            return UNSURE;
    }
}

/* ----------------------------------------------------------------------------------------- filters */

static int starts_with_any(const unsigned char *line, Py_ssize_t len, PyObject *prefixes) {
    Py_ssize_t n = PyTuple_GET_SIZE(prefixes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyTuple_GET_ITEM(prefixes, i);
        Py_ssize_t bl = PyBytes_GET_SIZE(b);
        if (bl <= len && memcmp(line, PyBytes_AS_STRING(b), bl) == 0) return 1;
    }
    return 0;
}

/* Mode 2: codex.`_CANNOT_COUNT.match(line)`, spelled out:
 *   {"timestamp":"[^"\\\n]*",(?:"ordinal":\d+,)?"type":"
 *   (?:response_item"|event_msg","payload":{"type":"(?!token_count")[^"\\\n]*") */
static int lit(const unsigned char **p, const unsigned char *end, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(end - *p) < n || memcmp(*p, w, n) != 0) return 0;
    *p += n;
    return 1;
}

static int plain_run(const unsigned char **p, const unsigned char *end) {
    /* [^"\\\n]* then a quote */
    const unsigned char *q = *p;
    while (q < end && *q != '"' && *q != '\\' && *q != '\n') q++;
    if (q >= end || *q != '"') return 0;
    *p = q;
    return 1;
}

static int codex_cannot_count(const unsigned char *line, Py_ssize_t len) {
    const unsigned char *p = line, *end = line + len;
    if (!lit(&p, end, "{\"timestamp\":\"") || !plain_run(&p, end) || !lit(&p, end, "\",")) return 0;
    const unsigned char *q = p;
    if (lit(&q, end, "\"ordinal\":")) {
        const unsigned char *d = q;
        while (q < end && *q >= '0' && *q <= '9') q++;
        if (q > d && q < end && *q == ',') p = q + 1;
    }
    if (!lit(&p, end, "\"type\":\"")) return 0;
    if (lit(&p, end, "response_item\"")) return 1;
    if (!lit(&p, end, "event_msg\",\"payload\":{\"type\":\"")) return 0;
    const unsigned char *t = p;
    if (!plain_run(&p, end)) return 0;
    return !(p - t == 11 && memcmp(t, "token_count", 11) == 0);
}

/* ------------------------------------------------------------------------------------------ SHA-256 */

/* The call ids are `events.stable_id`: sha256 of the parts joined by U+001F, its first 32 hex digits.
 * The parts are gathered here (a few dozen bytes: ids, a time, counts) and hashed by OpenSSL's libcrypto,
 * the library Python's own hashlib uses. */
typedef struct {
    unsigned char small[256];
    unsigned char *buf;
    size_t len, cap;
    int failed; /* out of memory while gathering: sha_id reports it */
} Sha;

static void sha_init(Sha *c) {
    c->buf = c->small;
    c->len = 0;
    c->cap = sizeof c->small;
    c->failed = 0;
}

static void sha_drop(Sha *c) {
    if (c->buf != c->small) free(c->buf);
    c->buf = c->small;
}

static void sha_add(Sha *c, const void *data, size_t n) {
    if (c->failed) return;
    if (c->len + n > c->cap) {
        size_t cap = 2 * (c->len + n);
        unsigned char *grown = malloc(cap);
        if (grown == NULL) {
            c->failed = 1;
            return;
        }
        memcpy(grown, c->buf, c->len);
        sha_drop(c);
        c->buf = grown;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
}

/* The digest's context, made once: OpenSSL 3 looks the algorithm up on every call given EVP_sha256()
 * (an implicit fetch), which cost more than the hashing. Used only with the GIL held (the ids are str). */
static EVP_MD *sha_md;
static EVP_MD_CTX *sha_ctx;

/* The digest's first 16 bytes (sha_id shows them as hex; the tally keeps them); the parts are freed either way. */
static int sha_digest(Sha *c, unsigned char out[16]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (sha_md == NULL) sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha_ctx == NULL) sha_ctx = EVP_MD_CTX_new();
    int ok = !c->failed && sha_md != NULL && sha_ctx != NULL && EVP_DigestInit_ex2(sha_ctx, sha_md, NULL) == 1 &&
             EVP_DigestUpdate(sha_ctx, c->buf, c->len) == 1 && EVP_DigestFinal_ex(sha_ctx, md, &n) == 1 && n >= 16;
    int failed = c->failed;
    sha_drop(c);
    if (!ok) {
        if (failed) PyErr_NoMemory();
        else PyErr_SetString(PyExc_RuntimeError, "agenttrail scanner: libcrypto's SHA-256 failed");
        return -1;
    }
    memcpy(out, md, 16);
    return 0;
}

/* The first 32 hex digits of the digest, as a str; the gathered parts are freed either way. */
static PyObject *sha_id(Sha *c) {
    unsigned char md[16];
    if (sha_digest(c, md) < 0) return NULL;
    char hex[32];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    return PyUnicode_FromStringAndSize(hex, 32);
}

/* Add "\x1f" then a str part (its UTF-8; the strings reaching here were validated or built as UTF-8). */
static int sha_str(Sha *c, PyObject *s) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) return -1;
    sha_add(c, "\x1f", 1);
    sha_add(c, u, (size_t)n);
    return 0;
}

static void sha_ints(Sha *c, const long long *v, int n) {
    char tmp[32];
    for (int i = 0; i < n; i++) {
        int k = snprintf(tmp, sizeof tmp, "\x1f%lld", v[i]);
        sha_add(c, tmp, (size_t)k);
    }
}

/* ------------------------------------------------------------------------------------------ times */

/* A timestamp as its UTC fields, and `key` ordering them. Only the form both agents write,
 * `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z` with valid fields, is read here (datetime.fromisoformat gives
 * the same instant); any other value sends the line to the parser's Python (parse_ts decides). */
typedef struct {
    long long key;
    int y, mo, d, h, mi, s, us;
} TS;

static void ts_key(TS *t) {
    t->key = ((((((long long)t->y * 16 + t->mo) * 32 + t->d) * 32 + t->h) * 64 + t->mi) * 64 + t->s) * 1000000LL + t->us;
}

static int digits_at(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

static int ts_parse(const char *p, Py_ssize_t n, TS *t) {
    if (n != 20 && n != 24 && n != 27) return 0;
    if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' || p[n - 1] != 'Z') return 0;
    if (!digits_at(p, 4, &t->y) || !digits_at(p + 5, 2, &t->mo) || !digits_at(p + 8, 2, &t->d) ||
        !digits_at(p + 11, 2, &t->h) || !digits_at(p + 14, 2, &t->mi) || !digits_at(p + 17, 2, &t->s))
        return 0;
    t->us = 0;
    if (n > 20) {
        int f;
        if (p[19] != '.' || !digits_at(p + 20, (int)n - 21, &f)) return 0;
        t->us = n == 24 ? f * 1000 : f;
    }
    static const int dim[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (t->y < 1 || t->mo < 1 || t->mo > 12 || t->d < 1 || t->h > 23 || t->mi > 59 || t->s > 59) return 0;
    int leap = (t->y % 4 == 0 && t->y % 100 != 0) || t->y % 400 == 0;
    if (t->d > dim[t->mo] + (t->mo == 2 && leap)) return 0;
    ts_key(t);
    return 1;
}

/* A datetime the parser handed over (always aware UTC: parse_ts and the mtime fallback make it so). */
static int ts_from_datetime(PyObject *dt, TS *t) {
    if (!PyDateTime_Check(dt)) {
        PyErr_SetString(PyExc_TypeError, "scan: a timestamp in the state is not a datetime");
        return -1;
    }
    t->y = PyDateTime_GET_YEAR(dt), t->mo = PyDateTime_GET_MONTH(dt), t->d = PyDateTime_GET_DAY(dt);
    t->h = PyDateTime_DATE_GET_HOUR(dt), t->mi = PyDateTime_DATE_GET_MINUTE(dt);
    t->s = PyDateTime_DATE_GET_SECOND(dt), t->us = PyDateTime_DATE_GET_MICROSECOND(dt);
    ts_key(t);
    return 0;
}

static PyObject *ts_datetime(const TS *t) {
    return PyDateTimeAPI->DateTime_FromDateAndTime(t->y, t->mo, t->d, t->h, t->mi, t->s, t->us,
                                                   PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
}

/* ------------------------------------------------------------------------------------------ rules */

/* With a `state` list, scan applies the parser's whole usage-only rule to each line itself (mode 1:
 * ClaudeCodeParser, mode 2: CodexParser; the list's layout is theirs, `native_state`), so the parser's
 * Python runs for no line the rule here could decide. Such a line is validated as JSON as above but
 * nothing of it is built: the few members the rule reads are noted as slots (their type and bytes).
 * A line the rule is not sure of (a shape the parser would reject, a timestamp not in the agents'
 * usual form, a count that is not a plain non-negative int, a rare line type) is handed back as bytes
 * with everything before it applied; the parser takes the state back (`native_done`) and reads the
 * line through orjson, as the plain reader would. The rule changes nothing for such a line. */
#define BAIL 1

enum { J_ABSENT = 0, J_NULL, J_STR, J_INT, J_OBJ, J_ARR, J_OTHER };
typedef struct {
    int type, esc;
    const unsigned char *s; /* J_STR: the contents between the quotes; J_OBJ, J_ARR: the whole value */
    Py_ssize_t len;
    long long i; /* J_INT: an integer of at most 18 digits */
} Slot;

typedef struct Node Node;
typedef struct {
    const char *key;
    Py_ssize_t klen;
    int slot;
    const Node *child;
} Field;
struct Node {
    int n, lo, hi; /* lo..hi: the slots of the members below this object, cleared when it is met again */
    Field f[10];
};
#define F(k, slot, child) {k, sizeof(k) - 1, slot, child}

static int fobject(P *s, const Node *node, Slot *slots);

static int fvalue(P *s, const Field *f, Slot *slots) {
    Slot *sl = &slots[f->slot];
    if (f->child)
        for (int i = f->child->lo; i < f->child->hi; i++) slots[i].type = J_ABSENT; /* duplicate keys: last wins */
    if (s->p >= s->end) return UNSURE;
    const unsigned char *start = s->p;
    unsigned char c = *start;
    int r;
    sl->esc = 0;
    if (c == '"') {
        s->p++;
        if ((r = scan_string(s, &sl->s, &sl->len, &sl->esc))) return r;
        sl->type = J_STR;
        return 0;
    }
    r = c == '{' && f->child ? fobject(s, f->child, slots) : value(s, SKIP, NULL, NULL);
    if (r) return r;
    sl->s = start;
    sl->len = s->p - start;
    if (c == '{') {
        sl->type = J_OBJ;
    } else if (c == '[') {
        sl->type = J_ARR;
    } else if (c == 'n') {
        sl->type = J_NULL;
    } else if (c == 't' || c == 'f') {
        sl->type = J_OTHER;
    } else { /* a number (value validated it): an int of at most 18 digits, or something else */
        const unsigned char *d = start + (c == '-');
        Py_ssize_t n = s->p - d;
        sl->type = J_OTHER;
        if (n <= 18 && memchr(d, '.', n) == NULL) {
            long long v = 0;
            for (Py_ssize_t i = 0; i < n; i++) v = v * 10 + (d[i] - '0');
            sl->i = c == '-' ? -v : v;
            sl->type = J_INT;
        }
    }
    return 0;
}

static int fobject(P *s, const Node *node, Slot *slots) {
    if (++s->depth > MAX_DEPTH) return UNSURE;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        const unsigned char *k;
        Py_ssize_t kl;
        int esc, r;
        if ((r = member_key(s, &k, &kl, &esc))) return r;
        if (esc) return UNSURE; /* it might spell a key noted here */
        const Field *hit = NULL;
        for (int i = 0; i < node->n; i++)
            if (node->f[i].klen == kl && memcmp(node->f[i].key, k, kl) == 0) {
                hit = &node->f[i];
                break;
            }
        if ((r = hit ? fvalue(s, hit, slots) : value(s, SKIP, NULL, NULL))) return r;
        if ((r = member_end(s)) == END) break;
        if (r) return r;
    }
    s->depth--;
    return 0;
}

/* The members each rule reads. Codex: */
enum { XS_TYPE, XS_TS, XS_PAYLOAD, XS_PTYPE, XS_MODEL, XS_CWD, XS_RID, XS_PID, XS_PTS, XS_VERSION, XS_GIT, XS_REPO,
       XS_COMMIT, XS_BRANCH, XS_USAGE, XS_U0, XS_INFO = XS_U0 + 5, XS_TOTAL, XS_T0, XS_LAST = XS_T0 + 5, XS_L0,
       XS_N = XS_L0 + 5 };
#define FIVE(s0)                                                                                              \
    {5, s0, s0 + 5, {F("input_tokens", s0, NULL), F("cached_input_tokens", s0 + 1, NULL),                     \
                     F("cache_write_input_tokens", s0 + 2, NULL), F("output_tokens", s0 + 3, NULL),           \
                     F("reasoning_output_tokens", s0 + 4, NULL)}}
static const Node XN_USAGE = FIVE(XS_U0), XN_TOTAL = FIVE(XS_T0), XN_LAST = FIVE(XS_L0);
static const Node XN_INFO = {2, XS_TOTAL, XS_N, {F("total_token_usage", XS_TOTAL, &XN_TOTAL), F("last_token_usage", XS_LAST, &XN_LAST)}};
static const Node XN_GIT = {3, XS_REPO, XS_BRANCH + 1, {F("repository_url", XS_REPO, NULL), F("commit_hash", XS_COMMIT, NULL),
                                                        F("branch", XS_BRANCH, NULL)}};
static const Node XN_PAYLOAD = {10, XS_PTYPE, XS_N, {F("type", XS_PTYPE, NULL), F("model", XS_MODEL, NULL),
                                                     F("cwd", XS_CWD, NULL), F("response_id", XS_RID, NULL),
                                                     F("usage", XS_USAGE, &XN_USAGE), F("info", XS_INFO, &XN_INFO),
                                                     F("id", XS_PID, NULL), F("timestamp", XS_PTS, NULL),
                                                     F("cli_version", XS_VERSION, NULL), F("git", XS_GIT, &XN_GIT)}};
static const Node XN_ROOT = {3, 0, XS_N, {F("type", XS_TYPE, NULL), F("timestamp", XS_TS, NULL), F("payload", XS_PAYLOAD, &XN_PAYLOAD)}};

/* Claude Code: */
enum { CS_TYPE, CS_SID, CS_TS, CS_CWD, CS_BRANCH, CS_VERSION, CS_RID, CS_AGENT, CS_MESSAGE, CS_MODEL, CS_MID,
       CS_CONTENT, CS_USAGE, CS_IN, CS_READ, CS_WRITE, CS_OUT, CS_DETAIL, CS_W5, CS_W1, CS_N };
static const Node CN_DETAIL = {2, CS_W5, CS_N, {F("ephemeral_5m_input_tokens", CS_W5, NULL), F("ephemeral_1h_input_tokens", CS_W1, NULL)}};
static const Node CN_USAGE = {5, CS_IN, CS_N, {F("input_tokens", CS_IN, NULL), F("cache_read_input_tokens", CS_READ, NULL),
                                               F("cache_creation_input_tokens", CS_WRITE, NULL), F("output_tokens", CS_OUT, NULL),
                                               F("cache_creation", CS_DETAIL, &CN_DETAIL)}};
static const Node CN_MESSAGE = {4, CS_MODEL, CS_N, {F("model", CS_MODEL, NULL), F("id", CS_MID, NULL),
                                                    F("content", CS_CONTENT, NULL), F("usage", CS_USAGE, &CN_USAGE)}};
static const Node CN_ROOT = {9, 0, CS_N, {F("type", CS_TYPE, NULL), F("sessionId", CS_SID, NULL), F("timestamp", CS_TS, NULL),
                                          F("cwd", CS_CWD, NULL), F("gitBranch", CS_BRANCH, NULL), F("version", CS_VERSION, NULL),
                                          F("requestId", CS_RID, NULL), F("agentId", CS_AGENT, NULL),
                                          F("message", CS_MESSAGE, &CN_MESSAGE)}};
#define MAX_SLOTS ((int)XS_N > (int)CS_N ? (int)XS_N : (int)CS_N)

static inline int slot_is(const Slot *sl, const char *lit) {
    Py_ssize_t n = (Py_ssize_t)strlen(lit);
    return sl->type == J_STR && !sl->esc && sl->len == n && memcmp(sl->s, lit, n) == 0;
}
static inline int nonempty(const Slot *sl) { return sl->type == J_STR && sl->len > 0; }
static inline PyObject *slot_str(const Slot *sl) { return make_string(sl->s, sl->len, sl->esc); }

/* Whether a string slot holds the str `o` (0 for anything else; -1 on error). */
static int slot_eq(const Slot *sl, PyObject *o) {
    if (sl->type != J_STR || o == NULL || !PyUnicode_CheckExact(o)) return 0;
    if (sl->esc) {
        PyObject *t = slot_str(sl);
        if (t == NULL) return -1;
        int same = PyUnicode_Compare(t, o) == 0;
        Py_DECREF(t);
        return same;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(o, &n);
    if (u == NULL) {
        PyErr_Clear(); /* a str that is no UTF-8 (a lone surrogate) is no JSON string's */
        return 0;
    }
    return n == sl->len && memcmp(u, sl->s, n) == 0;
}

/* The str of a string slot, reusing *cache when it holds the same (new reference). */
static PyObject *cached_str(const Slot *sl, PyObject **cache) {
    int same = slot_eq(sl, *cache);
    if (same < 0) return NULL;
    if (!same) {
        PyObject *s = slot_str(sl);
        if (s == NULL) return NULL;
        Py_XSETREF(*cache, s);
    }
    return Py_NewRef(*cache);
}

/* ------------------------------------------------------------------------------ records, directly */

/* TranscriptCall and Usage are slotted dataclasses whose __init__ (Python bytecode, ~1 µs a call) only
 * stores its arguments: a call record is made here by copying a template instance's slots (the
 * defaults) and storing the given leading fields, in field order (= __slots__ order). The tests
 * compare the records with the plain reader's. */
typedef struct {
    PyTypeObject *type;
    int n;
    Py_ssize_t off[24];
} Layout;
static Layout LAYOUTS[2];

static int layout_of(PyObject *tmpl, Layout *L) {
    PyTypeObject *t = Py_TYPE(tmpl);
    if (L->type == t) return 0;
    PyObject *names = PyObject_GetAttrString((PyObject *)t, "__slots__");
    if (names == NULL) return -1;
    int rc = -1;
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) > 24) goto bad;
    L->n = (int)PyTuple_GET_SIZE(names);
    for (int i = 0; i < L->n; i++) {
        PyObject *d = PyObject_GetAttr((PyObject *)t, PyTuple_GET_ITEM(names, i));
        if (d == NULL) goto done;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) L->off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) goto bad;
    }
    L->type = t;
    Py_INCREF(t);
    rc = 0;
    goto done;
bad:
    PyErr_SetString(PyExc_TypeError, "scan: a record template is not a slotted dataclass");
done:
    Py_DECREF(names);
    return rc;
}

static PyObject *from_template(const Layout *L, PyObject *tmpl, PyObject *const *first, int n) {
    PyTypeObject *t = Py_TYPE(tmpl);
    PyObject *o = t->tp_alloc(t, 0);
    if (o == NULL) return NULL;
    for (int i = 0; i < L->n; i++) {
        PyObject *v = i < n ? first[i] : *(PyObject **)((char *)tmpl + L->off[i]);
        *(PyObject **)((char *)o + L->off[i]) = Py_XNewRef(v);
    }
    return o;
}

static PyObject *usage_of(PyObject *tmpl, const long long *v, int n) {
    PyObject *ints[6] = {NULL};
    PyObject *o = NULL;
    for (int i = 0; i < n; i++)
        if ((ints[i] = PyLong_FromLongLong(v[i])) == NULL) goto done;
    o = from_template(&LAYOUTS[1], tmpl, ints, n);
done:
    for (int i = 0; i < n; i++) Py_XDECREF(ints[i]);
    return o;
}

/* ------------------------------------------------------------------------------------- rule state */

enum { K_claude_code, K_anthropic, K_codex, K_openai, K_None, K_cwd, K_branch, K_agent_version, K_started_at,
       K_ended_at, K_models, K_source_path, K_merge, K_merge_usage, K_model, K_request_id, K_message_id,
       K_git_branch, K_subagent_id, K_COUNT };
static const char *KEY_NAMES[K_COUNT] = {
    "claude-code", "anthropic", "codex", "openai", "None", "cwd", "branch", "agent_version", "started_at",
    "ended_at", "models", "source_path", "merge", "merge_usage", "model", "request_id", "message_id",
    "git_branch", "subagent_id"};
static PyObject *K[K_COUNT];

/* ------------------------------------------------------------------------------------------ tally */

/* A dry run's calls without a record each (`Tally`, codex.CodexParser's `tally`): per call its id's
 * digest (the 16 bytes `stable_id` shows as 32 hex digits), provider, model and usage (Usage's six
 * counts), kept the way the records would have been:
 *
 * - within a file, as the parser keeps them: `token_usage_record` calls merged by id (each count's
 *   maximum, a missing model filled), `token_count` calls first reading wins; at the file's end the
 *   records are its calls if it had any, else the token_count calls (`end_file`);
 * - across files, as the store and the dry run's totals merge a call read again (a copy of a rollout):
 *   each count's maximum, a missing model filled.
 *
 * `groups()` then gives per (provider, model) the calls, their summed usage and the largest of each
 * prompt part (Pricer.cost_of_group prices the sum at once when no call can reach a tier), and
 * `usages(i)` a group's usages when one might. A count that is not a non-negative int below 2**63,
 * or sums past 64 bits, mark the tally `spoiled`: the caller then counts that import with records. */
typedef struct {
    unsigned char key[16];
    unsigned gen;
    int provider, model; /* indexes into the tally's lists; model -1: None */
    long long u[6];
} TEnt;

typedef struct {
    TEnt *e;
    size_t cap, n;
    unsigned gen;
    size_t *order; /* the slots in use, in insertion order (n of them) */
} Table;

typedef struct {
    PyObject_HEAD
    Table all, rec, cnt; /* the whole run's calls; the file's usage records and token_count calls */
    PyObject *providers, *models; /* lists of str */
    PyObject *last_model;         /* owned, its index below: most calls repeat the previous model */
    int last_model_i;
    int spoiled;
} Tally;

static PyTypeObject TallyType;

static void table_free(Table *t) {
    free(t->e);
    free(t->order);
    memset(t, 0, sizeof *t);
}

static inline size_t table_hash(const unsigned char *k) {
    size_t h;
    memcpy(&h, k, sizeof h); /* a digest: its bytes are already uniform */
    return h;
}

/* The entry for key, NULL when absent (*slot: where it would go). */
static TEnt *table_find(Table *t, const unsigned char *key, size_t *slot) {
    if (t->cap == 0) return NULL;
    size_t mask = t->cap - 1, i = table_hash(key) & mask;
    while (t->e[i].gen == t->gen) {
        if (memcmp(t->e[i].key, key, 16) == 0) return &t->e[i];
        i = (i + 1) & mask;
    }
    *slot = i;
    return NULL;
}

static int table_grow(Table *t) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    TEnt *e = calloc(cap, sizeof *e);
    size_t *order = malloc(cap / 2 * sizeof *order);
    if (e == NULL || order == NULL) {
        free(e);
        free(order);
        PyErr_NoMemory();
        return -1;
    }
    unsigned gen = t->gen ? t->gen : 1;
    for (size_t k = 0; k < t->n; k++) {
        const TEnt *old = &t->e[t->order[k]];
        size_t i = table_hash(old->key) & (cap - 1);
        while (e[i].gen == gen) i = (i + 1) & (cap - 1);
        e[i] = *old;
        e[i].gen = gen;
        order[k] = i;
    }
    free(t->e);
    free(t->order);
    t->e = e;
    t->order = order;
    t->cap = cap;
    t->gen = gen;
    return 0;
}

/* A new entry for key (absent); NULL on memory. */
static TEnt *table_add(Table *t, const unsigned char *key) {
    size_t slot = 0;
    if (2 * (t->n + 1) > t->cap) {
        if (table_grow(t) < 0) return NULL;
    }
    TEnt *have = table_find(t, key, &slot);
    if (have != NULL) return have;
    TEnt *e = &t->e[slot];
    memcpy(e->key, key, 16);
    e->gen = t->gen;
    t->order[t->n++] = slot;
    return e;
}

/* Empty (a file's table between files): no entry has the new generation. */
static void table_clear(Table *t) {
    if (t->n == 0) return;
    t->n = 0;
    if (++t->gen == 0) { /* wrapped: every slot's stamp could be current */
        memset(t->e, 0, t->cap * sizeof *t->e);
        t->gen = 1;
    }
}

/* A merged reading: each count's maximum, a missing model filled. */
static void tent_merge(TEnt *e, int model, const long long u[6]) {
    for (int i = 0; i < 6; i++)
        if (u[i] > e->u[i]) e->u[i] = u[i];
    if (e->model < 0) e->model = model;
}

static int tally_stage(Table *t, const unsigned char *key, int provider, int model, const long long u[6], int merge) {
    size_t slot;
    TEnt *e = table_find(t, key, &slot);
    if (e != NULL) {
        if (merge) tent_merge(e, model, u);
        return 0;
    }
    if ((e = table_add(t, key)) == NULL) return -1;
    e->provider = provider;
    e->model = model;
    memcpy(e->u, u, sizeof e->u);
    return 0;
}

/* The index of a str (or None: -1) in one of the tally's lists, appended when new. */
static int tally_index(PyObject *list, PyObject *s) {
    if (s == Py_None) return -1;
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(list, i);
        if (x == s) return (int)i;
        int eq = PyUnicode_Check(s) ? PyUnicode_Compare(x, s) : -2;
        if (eq == -1 && PyErr_Occurred()) return -2;
        if (eq == 0) return (int)i;
    }
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "Tally: a provider or model must be a str or None");
        return -2;
    }
    if (n >= INT_MAX / 2 || PyList_Append(list, s) < 0) return -2;
    return (int)n;
}

static int tally_model(Tally *t, PyObject *model) {
    if (model == t->last_model) return t->last_model_i;
    int i = tally_index(t->models, model);
    if (i >= -1) {
        Py_XSETREF(t->last_model, Py_NewRef(model));
        t->last_model_i = i;
    }
    return i;
}

/* Codex: its provider is always the first ("openai"). */
static int tally_codex(Tally *t, const unsigned char *key, PyObject *model, const long long u[6], int record) {
    int m = tally_model(t, model);
    if (m < -1) return -1;
    if (PyList_GET_SIZE(t->providers) == 0 && tally_index(t->providers, K[K_openai]) < -1) return -1;
    return tally_stage(record ? &t->rec : &t->cnt, key, 0, m, u, record);
}

static PyObject *tally_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw)) {
    Tally *t = (Tally *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    t->providers = PyList_New(0);
    t->models = PyList_New(0);
    t->last_model = NULL;
    if (t->providers == NULL || t->models == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static void tally_dealloc(Tally *t) {
    table_free(&t->all);
    table_free(&t->rec);
    table_free(&t->cnt);
    Py_XDECREF(t->providers);
    Py_XDECREF(t->models);
    Py_XDECREF(t->last_model);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* The 16 bytes of a call id (32 hex digits); -1 with TypeError for anything else. */
static int id_bytes(PyObject *id, unsigned char out[16]) {
    Py_ssize_t n;
    const char *s = PyUnicode_Check(id) ? PyUnicode_AsUTF8AndSize(id, &n) : NULL;
    if (s != NULL && n == 32) {
        for (int i = 0; i < 16; i++) {
            int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
            if (hi < 0 || lo < 0 || (s[2 * i] >= 'A' && s[2 * i] <= 'F') || (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F'))
                goto bad;
            out[i] = (unsigned char)(hi << 4 | lo);
        }
        return 0;
    }
bad:
    PyErr_Clear();
    PyErr_SetString(PyExc_TypeError, "Tally: a call id must be 32 lowercase hex digits");
    return -1;
}

/* add(call_id, provider, model, counts, record): a call the parser's Python read (a line the native rule
 * handed back): staged as the rule stages its own. Counts that do not fit spoil the tally. */
static PyObject *tally_add(Tally *t, PyObject *args) {
    PyObject *id, *provider, *model, *counts;
    int record;
    unsigned char key[16];
    long long u[6];
    if (!PyArg_ParseTuple(args, "OOOO!p", &id, &provider, &model, &PyTuple_Type, &counts, &record)) return NULL;
    if (id_bytes(id, key) < 0) return NULL;
    if (PyTuple_GET_SIZE(counts) != 6) {
        PyErr_SetString(PyExc_TypeError, "Tally.add: six counts");
        return NULL;
    }
    for (int i = 0; i < 6; i++) {
        PyObject *c = PyTuple_GET_ITEM(counts, i);
        int overflow = 0;
        u[i] = PyLong_CheckExact(c) ? PyLong_AsLongLongAndOverflow(c, &overflow) : -1;
        if (u[i] == -1 && PyErr_Occurred()) return NULL;
        if (overflow || u[i] < 0) {
            t->spoiled = 1;
            Py_RETURN_NONE;
        }
    }
    int p = tally_index(t->providers, provider), m = tally_model(t, model);
    if (p < -1 || m < -1) return NULL;
    if (p < 0) {
        PyErr_SetString(PyExc_TypeError, "Tally.add: a provider must be a str");
        return NULL;
    }
    if (tally_stage(record ? &t->rec : &t->cnt, key, p, m, u, record) < 0) return NULL;
    Py_RETURN_NONE;
}

/* has(call_id, record) -> bool: whether this file's records (or token_count calls) hold the id. */
static PyObject *tally_has(Tally *t, PyObject *args) {
    PyObject *id;
    int record;
    unsigned char key[16];
    size_t slot;
    if (!PyArg_ParseTuple(args, "Op", &id, &record)) return NULL;
    if (id_bytes(id, key) < 0) return NULL;
    return PyBool_FromLong(table_find(record ? &t->rec : &t->cnt, key, &slot) != NULL);
}

/* end_file(records) -> int: the file's calls into the run's: its usage records when `records` (it had
 * some), else its token_count calls; returns how many; both staged sets are emptied. */
static PyObject *tally_end_file(Tally *t, PyObject *arg) {
    int records = PyObject_IsTrue(arg);
    if (records < 0) return NULL;
    Table *f = records ? &t->rec : &t->cnt;
    Py_ssize_t n = (Py_ssize_t)f->n;
    for (size_t k = 0; k < f->n; k++) {
        const TEnt *e = &f->e[f->order[k]];
        size_t slot;
        TEnt *have = table_find(&t->all, e->key, &slot);
        if (have != NULL) {
            tent_merge(have, e->model, e->u);
            continue;
        }
        TEnt *added = table_add(&t->all, e->key);
        if (added == NULL) return NULL;
        added->provider = e->provider;
        added->model = e->model;
        memcpy(added->u, e->u, sizeof added->u);
    }
    table_clear(&t->rec);
    table_clear(&t->cnt);
    return PyLong_FromSsize_t(n);
}

static PyObject *model_obj(Tally *t, int m) {
    return m < 0 ? Py_NewRef(Py_None) : Py_NewRef(PyList_GET_ITEM(t->models, m));
}

/* groups() -> [(provider, model, calls, sums, largest prompt parts)] | None (sums past 64 bits: spoiled),
 * one per (provider, model), in the order first seen. */
static PyObject *tally_groups(Tally *t, PyObject *Py_UNUSED(ignored)) {
    Py_ssize_t np = PyList_GET_SIZE(t->providers), nm = PyList_GET_SIZE(t->models) + 1;
    size_t ng = (size_t)(np * nm);
    typedef struct {
        long long n, sum[6], max[4];
        size_t first;
    } G;
    G *g = ng ? calloc(ng, sizeof *g) : NULL;
    if (ng && g == NULL) return PyErr_NoMemory();
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    for (size_t k = 0; k < t->all.n; k++) {
        const TEnt *e = &t->all.e[t->all.order[k]];
        G *x = &g[(size_t)e->provider * (size_t)nm + (size_t)(e->model + 1)];
        if (x->n++ == 0) x->first = k;
        for (int i = 0; i < 6; i++)
            if (__builtin_add_overflow(x->sum[i], e->u[i], &x->sum[i])) {
                t->spoiled = 1;
                free(g);
                Py_DECREF(out);
                Py_RETURN_NONE;
            }
        for (int i = 0; i < 4; i++)
            if (e->u[i] > x->max[i]) x->max[i] = e->u[i];
    }
    /* In the order each group's first call was seen. */
    for (size_t k = 0; k < t->all.n; k++) {
        const TEnt *e = &t->all.e[t->all.order[k]];
        G *x = &g[(size_t)e->provider * (size_t)nm + (size_t)(e->model + 1)];
        if (x->first != k) continue;
        PyObject *m = model_obj(t, e->model);
        PyObject *item = Py_BuildValue("(ONL(LLLLLL)(LLLL))", PyList_GET_ITEM(t->providers, e->provider), m, x->n,
                                       x->sum[0], x->sum[1], x->sum[2], x->sum[3], x->sum[4], x->sum[5], x->max[0],
                                       x->max[1], x->max[2], x->max[3]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    free(g);
    return out;
fail:
    free(g);
    Py_XDECREF(out);
    return NULL;
}

/* usages(provider, model) -> [six counts]: that group's calls' usages (to find their tiers). */
static PyObject *tally_usages(Tally *t, PyObject *args) {
    PyObject *provider, *model;
    if (!PyArg_ParseTuple(args, "OO", &provider, &model)) return NULL;
    int p = tally_index(t->providers, provider), m = tally_index(t->models, model);
    if (p < -1 || m < -1) return NULL;
    PyObject *out = PyList_New(0);
    for (size_t k = 0; out != NULL && k < t->all.n; k++) {
        const TEnt *e = &t->all.e[t->all.order[k]];
        if (e->provider != p || e->model != m) continue;
        PyObject *u = Py_BuildValue("(LLLLLL)", e->u[0], e->u[1], e->u[2], e->u[3], e->u[4], e->u[5]);
        if (u == NULL || PyList_Append(out, u) < 0) Py_CLEAR(out);
        Py_XDECREF(u);
    }
    return out;
}

static PyObject *tally_get_calls(Tally *t, void *Py_UNUSED(c)) { return PyLong_FromSize_t(t->all.n); }
static PyObject *tally_get_spoiled(Tally *t, void *Py_UNUSED(c)) { return PyBool_FromLong(t->spoiled); }
static PyObject *tally_get_records(Tally *t, void *Py_UNUSED(c)) { return PyBool_FromLong(t->rec.n > 0); }

static PyMethodDef tally_methods[] = {
    {"add", (PyCFunction)tally_add, METH_VARARGS, "Stage a call the parser's Python read."},
    {"has", (PyCFunction)tally_has, METH_VARARGS, "Whether the file's staged calls hold an id."},
    {"end_file", (PyCFunction)tally_end_file, METH_O, "The file's calls into the run's."},
    {"groups", (PyCFunction)tally_groups, METH_NOARGS, "Per (provider, model): calls, sums, largest prompt parts."},
    {"usages", (PyCFunction)tally_usages, METH_VARARGS, "A group's usages."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tally_getset[] = {
    {"calls", (getter)tally_get_calls, NULL, "Calls counted (each id once).", NULL},
    {"spoiled", (getter)tally_get_spoiled, NULL, "A count the tally cannot hold was given.", NULL},
    {"file_has_records", (getter)tally_get_records, NULL, "The file being read has usage records.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "agenttrail.importers._scan.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_dealloc = (destructor)tally_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A dry run's calls, counted without a record each.",
    .tp_methods = tally_methods,
    .tp_getset = tally_getset,
    .tp_new = tally_new,
};

/* The state lists' layouts (claude_code.ClaudeCodeParser.native_state, codex.CodexParser.native_state). */
enum { C_CALL, C_USAGE, C_SESSION, C_SESSIONS, C_CALLS, C_SEEN, C_SEEN_RAW, C_FILE_SESSION, C_FILE_AGENT,
       C_SOURCE_PATH, C_LAST_TS, C_FROM_ANTHROPIC, C_SIZE };
enum { X_CALL, X_USAGE, X_LINE_ERROR, X_WARNINGS, X_PATH, X_SID, X_MODEL, X_CWD, X_BRANCH, X_PREV, X_HAS_RECORDS,
       X_LAST_TS, X_RECORD_CALLS, X_COUNT_CALLS, X_TOUCHED, X_FIRST_TS, X_LATEST_TS, X_MODELS, X_FIRST_CWD,
       X_OPEN, X_META, X_TALLY, X_SIZE };

typedef struct {
    int mode;
    PyObject *st;                     /* the state list: v[] below are its items */
    PyObject **v;
    PyObject *model, *cwd, *first_cwd; /* Codex: owned, written back */
    PyObject *sid_cache, *model_cache; /* Claude Code: owned */
    Tally *tally;                      /* Codex: the dry run's tally (borrowed from the state), or NULL */
    long long prev[5];
    int has_prev, prev_big, touched, have_span, last_changed, model_listed;
    TS last, lo, hi;
} R;

static int r_load(R *r, PyObject *st, int mode) {
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->st = st;
    Py_ssize_t want = mode == 1 ? C_SIZE : X_SIZE;
    if (!PyList_CheckExact(st) || PyList_GET_SIZE(st) != want) goto bad;
    PyObject **v = r->v = ((PyListObject *)st)->ob_item;
    if (layout_of(v[0], &LAYOUTS[0]) < 0 || layout_of(v[1], &LAYOUTS[1]) < 0) return -1;
    if (mode == 1) {
        if (!PyDict_CheckExact(v[C_SESSIONS]) || !PyDict_CheckExact(v[C_CALLS]) || !PyDict_CheckExact(v[C_SEEN]) ||
            !PyDict_CheckExact(v[C_SEEN_RAW]) || !PyUnicode_Check(v[C_FILE_SESSION]))
            goto bad;
        return ts_from_datetime(v[C_LAST_TS], &r->last);
    }
    if (!PyDict_CheckExact(v[X_RECORD_CALLS]) || !PyDict_CheckExact(v[X_COUNT_CALLS]) ||
        !PyList_CheckExact(v[X_MODELS]) || !PyList_CheckExact(v[X_WARNINGS]) ||
        (v[X_TALLY] != Py_None && !Py_IS_TYPE(v[X_TALLY], &TallyType)))
        goto bad;
    r->tally = v[X_TALLY] == Py_None ? NULL : (Tally *)v[X_TALLY];
    if (ts_from_datetime(v[X_LAST_TS], &r->last) < 0) return -1;
    r->model = Py_NewRef(v[X_MODEL]);
    r->cwd = Py_NewRef(v[X_CWD]);
    r->first_cwd = Py_NewRef(v[X_FIRST_CWD]);
    r->touched = v[X_TOUCHED] == Py_True;
    if (v[X_FIRST_TS] != Py_None) {
        if (ts_from_datetime(v[X_FIRST_TS], &r->lo) < 0 || ts_from_datetime(v[X_LATEST_TS], &r->hi) < 0) return -1;
        r->have_span = 1;
    }
    PyObject *prev = v[X_PREV];
    if (prev != Py_None) {
        if (!PyTuple_CheckExact(prev) || PyTuple_GET_SIZE(prev) != 5) goto bad;
        r->has_prev = 1;
        for (int i = 0; i < 5; i++) {
            int overflow;
            r->prev[i] = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(prev, i), &overflow);
            if (r->prev[i] == -1 && PyErr_Occurred()) return -1;
            if (overflow) r->prev_big = 1; /* a count past 64 bits: its token_count lines go to Python */
        }
    }
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError, "scan: bad state");
    return -1;
}

static int set_item(PyObject *st, Py_ssize_t i, PyObject *v) {
    if (v == NULL) return -1;
    return PyList_SetItem(st, i, v); /* steals */
}

/* Write the scalars back into the state list (when ok); releases what r owns. */
static int r_store(R *r, int ok) {
    int rc = 0;
    PyObject *st = r->st;
    if (ok && r->mode == 1) {
        if (r->last_changed) rc = set_item(st, C_LAST_TS, ts_datetime(&r->last));
    } else if (ok) {
        if (set_item(st, X_MODEL, Py_NewRef(r->model)) < 0 || set_item(st, X_CWD, Py_NewRef(r->cwd)) < 0 ||
            set_item(st, X_FIRST_CWD, Py_NewRef(r->first_cwd)) < 0 ||
            set_item(st, X_TOUCHED, Py_NewRef(r->touched ? Py_True : Py_False)) < 0)
            rc = -1;
        if (rc == 0 && r->last_changed) rc = set_item(st, X_LAST_TS, ts_datetime(&r->last));
        if (rc == 0 && r->have_span &&
            (set_item(st, X_FIRST_TS, ts_datetime(&r->lo)) < 0 || set_item(st, X_LATEST_TS, ts_datetime(&r->hi)) < 0))
            rc = -1;
        if (rc == 0 && r->has_prev && !r->prev_big)
            rc = set_item(st, X_PREV, Py_BuildValue("(LLLLL)", r->prev[0], r->prev[1], r->prev[2], r->prev[3], r->prev[4]));
    }
    Py_CLEAR(r->model);
    Py_CLEAR(r->cwd);
    Py_CLEAR(r->first_cwd);
    Py_CLEAR(r->sid_cache);
    Py_CLEAR(r->model_cache);
    return rc;
}

/* The line's time: 0 with it (`parsed`: the line's own), BAIL for a value parse_ts must judge. A line
 * without one takes the last time seen, as the parsers do. */
static int slot_ts(R *r, const Slot *sl, TS *ts, int *parsed) {
    *parsed = 0;
    if (sl->type == J_ABSENT || sl->type == J_NULL) {
        *ts = r->last;
        return 0;
    }
    if (sl->type != J_STR || sl->esc || !ts_parse((const char *)sl->s, sl->len, ts)) return BAIL;
    *parsed = 1;
    return 0;
}

/* -- Codex ---------------------------------------------------------------------------------------- */

static PyObject *str_or_none(const Slot *sl) { return nonempty(sl) ? slot_str(sl) : Py_NewRef(Py_None); }

/* `raw_usage`'s fast path: 0 with the five counts, -2 for "not an object" (None), BAIL for an object
 * whose counts are not all plain non-negative ints (the parser's general rule decides). */
static int codex_usage(const Slot *sl, int node, int first, long long out[5]) {
    if (sl[node].type != J_OBJ) return -2;
    for (int i = 0; i < 5; i++) {
        const Slot *c = &sl[first + i];
        if (c->type == J_ABSENT) {
            out[i] = 0;
        } else if (c->type == J_INT && c->i >= 0) {
            out[i] = c->i;
        } else {
            return BAIL;
        }
    }
    return 0;
}

static void codex_seen(R *r, const TS *ts, int parsed) {
    r->touched = 1;
    if (!r->have_span) {
        r->lo = r->hi = *ts;
        r->have_span = 1;
    } else {
        if (ts->key < r->lo.key) r->lo = *ts;
        if (ts->key > r->hi.key) r->hi = *ts;
    }
    if (parsed) {
        r->last = *ts;
        r->last_changed = 1;
    }
}

/* codex.usage_from_codex: Usage's six counts. */
static void codex_counts(const long long u[5], long long counts[6]) {
    long long inp = u[0], cached = u[1], cw = u[2];
    if (cached > inp) cached = inp;
    long long rest = inp - cached;
    if (cw > rest) cw = rest;
    counts[0] = rest - cw, counts[1] = cached, counts[2] = cw, counts[3] = 0, counts[4] = u[3], counts[5] = u[4];
}

/* A call into the dry run's tally: its id's digest instead of the id, no record. */
static int codex_tally(R *r, Sha *c, const long long u[5], int record) {
    unsigned char key[16];
    long long counts[6];
    if (sha_digest(c, key) < 0) return -1;
    codex_counts(u, counts);
    return tally_codex(r->tally, key, r->model, counts, record);
}

/* codex.CodexParser._new_call with usage_from_codex(u). */
static PyObject *codex_call(R *r, PyObject *call_id, const TS *ts, const long long u[5], PyObject *request_id) {
    PyObject **v = r->v;
    long long counts[6];
    codex_counts(u, counts);
    PyObject *usage = usage_of(v[X_USAGE], counts, 6);
    if (usage == NULL) return NULL;
    PyObject *when = ts_datetime(ts);
    if (when == NULL) {
        Py_DECREF(usage);
        return NULL;
    }
    PyObject *args[11] = {call_id, v[X_SID], K[K_codex], K[K_openai], r->model, when, usage, request_id,
                          Py_None, r->cwd, v[X_BRANCH]};
    PyObject *call = from_template(&LAYOUTS[0], v[X_CALL], args, 11);
    Py_DECREF(when);
    Py_DECREF(usage);
    return call;
}

static int eq5(const long long *a, const long long *b) {
    for (int i = 0; i < 5; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int codex_token_count(R *r, Py_ssize_t line_no, const Slot *sl, const TS *ts, int parsed) {
    PyObject **v = r->v;
    const Slot *info = &sl[XS_INFO];
    long long total[5], last[5], delta[5], prev[5];
    if (info->type == J_ABSENT || info->type == J_NULL) {
        codex_seen(r, ts, parsed); /* a rate-limit-only update */
        return 0;
    }
    if (info->type != J_OBJ) return BAIL;
    int rt = codex_usage(sl, XS_TOTAL, XS_T0, total), rl = codex_usage(sl, XS_LAST, XS_L0, last);
    if (rt == BAIL || rl == BAIL || (rt == 0 && r->prev_big)) return BAIL;
    codex_seen(r, ts, parsed);
    int has_total = rt == 0, has_last = rl == 0, has_delta = 0, had_prev = r->has_prev;
    if (!has_total && !has_last) return 0;
    if (has_total && had_prev && eq5(total, r->prev)) return 0; /* the same event written again */
    memcpy(prev, r->prev, sizeof prev);
    if (has_total) {
        if (!had_prev) {
            memcpy(delta, total, sizeof delta);
            has_delta = 1;
        } else if (total[0] >= prev[0] && total[1] >= prev[1] && total[2] >= prev[2] && total[3] >= prev[3] &&
                   total[4] >= prev[4]) {
            for (int i = 0; i < 5; i++) delta[i] = total[i] - prev[i];
            has_delta = 1;
        }
        memcpy(r->prev, total, sizeof total);
        r->has_prev = 1;
    }
    const long long *use = has_last ? last : has_delta ? delta : NULL;
    if (use == NULL) return 0;
    if (has_last && has_delta && had_prev && !eq5(last, delta)) {
        PyObject *msg = PyUnicode_FromFormat(
            "token_count last_token_usage [%lld, %lld, %lld, %lld, %lld] differs from the total_token_usage delta "
            "[%lld, %lld, %lld, %lld, %lld]; used last_token_usage",
            last[0], last[1], last[2], last[3], last[4], delta[0], delta[1], delta[2], delta[3], delta[4]);
        if (msg == NULL) return -1;
        PyObject *n = PyLong_FromSsize_t(line_no);
        PyObject *w = n == NULL ? NULL : PyObject_CallFunctionObjArgs(v[X_LINE_ERROR], v[X_PATH], n, msg, NULL);
        Py_XDECREF(n);
        Py_DECREF(msg);
        if (w == NULL) return -1;
        int a = PyList_Append(v[X_WARNINGS], w);
        Py_DECREF(w);
        if (a < 0) return -1;
    }
    if ((use[0] | use[1] | use[2] | use[3] | use[4]) == 0) return 0;
    if (v[X_HAS_RECORDS] == Py_True || PyDict_GET_SIZE(v[X_RECORD_CALLS]) > 0 || (r->tally && r->tally->rec.n > 0))
        return 0; /* records are the calls */
    Sha c;
    sha_init(&c);
    sha_add(&c, "codex\x1ftoken_count\x1f", 18);
    if (parsed)
        sha_add(&c, sl[XS_TS].s, (size_t)sl[XS_TS].len);
    else
        sha_add(&c, "None", 4);
    sha_ints(&c, has_total ? total : use, 5);
    if (r->tally) return codex_tally(r, &c, use, 0);
    PyObject *call_id = sha_id(&c);
    if (call_id == NULL) return -1;
    int have = PyDict_Contains(v[X_COUNT_CALLS], call_id), rc = have < 0 ? -1 : 0;
    if (have == 0) {
        PyObject *call = codex_call(r, call_id, ts, use, Py_None);
        rc = call == NULL ? -1 : PyDict_SetItem(v[X_COUNT_CALLS], call_id, call);
        Py_XDECREF(call);
    }
    Py_DECREF(call_id);
    return rc;
}

static int codex_usage_record(R *r, const Slot *sl, const TS *ts, int parsed) {
    PyObject **v = r->v;
    long long u[5];
    if (codex_usage(sl, XS_USAGE, XS_U0, u) != 0) return BAIL;
    codex_seen(r, ts, parsed);
    PyObject *rid = Py_None;
    Sha c;
    sha_init(&c);
    if (r->tally && nonempty(&sl[XS_RID]) && !sl[XS_RID].esc) { /* the id's bytes are its UTF-8: no str */
        sha_add(&c, "codex\x1fresponse\x1f", 15);
        sha_add(&c, sl[XS_RID].s, (size_t)sl[XS_RID].len);
        return codex_tally(r, &c, u, 1);
    }
    if (nonempty(&sl[XS_RID])) {
        if ((rid = slot_str(&sl[XS_RID])) == NULL) return -1;
        sha_add(&c, "codex\x1fresponse", 14);
        if (sha_str(&c, rid) < 0) {
            sha_drop(&c);
            Py_DECREF(rid);
            return -1;
        }
    } else {
        char iso[48];
        int n = snprintf(iso, sizeof iso, "\x1f%04d-%02d-%02dT%02d:%02d:%02d", ts->y, ts->mo, ts->d, ts->h, ts->mi, ts->s);
        if (ts->us) n += snprintf(iso + n, sizeof iso - n, ".%06d", ts->us);
        n += snprintf(iso + n, sizeof iso - n, "+00:00");
        sha_add(&c, "codex\x1fusage_record", 18);
        sha_add(&c, iso, (size_t)n);
        sha_ints(&c, u, 5);
        Py_INCREF(rid);
    }
    if (r->tally) {
        Py_DECREF(rid);
        return codex_tally(r, &c, u, 1);
    }
    PyObject *call_id = sha_id(&c), *call = NULL;
    int rc = -1;
    if (call_id != NULL && (call = codex_call(r, call_id, ts, u, rid)) != NULL) {
        PyObject *have = PyDict_GetItemWithError(v[X_RECORD_CALLS], call_id);
        if (have != NULL) {
            PyObject *m = PyObject_CallMethodOneArg(have, K[K_merge], call);
            rc = m == NULL ? -1 : 0;
            Py_XDECREF(m);
        } else if (!PyErr_Occurred()) {
            rc = PyDict_SetItem(v[X_RECORD_CALLS], call_id, call);
        }
    }
    Py_XDECREF(call);
    Py_XDECREF(call_id);
    Py_DECREF(rid);
    return rc;
}

/* CodexParser._session_meta, for the usual header: the first line that counts in a file whose session
 * is not open yet. What it sets on the session is left for native_done (X_META). */
static int codex_meta(R *r, const Slot *sl, const TS *ts, int parsed) {
    TS seen = *ts;
    const Slot *pts = &sl[XS_PTS];
    if (pts->type == J_STR) {
        if (pts->esc || !ts_parse((const char *)pts->s, pts->len, &seen)) return BAIL;
    } else if (pts->type != J_ABSENT && pts->type != J_NULL) {
        return BAIL;
    }
    PyObject *sid = slot_str(&sl[XS_PID]), *cwd = str_or_none(&sl[XS_CWD]), *version = str_or_none(&sl[XS_VERSION]);
    PyObject *repo = str_or_none(&sl[XS_REPO]), *commit = str_or_none(&sl[XS_COMMIT]);
    PyObject *branch = str_or_none(&sl[XS_BRANCH]);
    PyObject *meta = NULL;
    int rc = -1;
    if (sid && cwd && version && repo && commit && branch) meta = PyTuple_Pack(6, sid, cwd, version, repo, commit, branch);
    if (meta != NULL && set_item(r->st, X_META, meta) == 0 && set_item(r->st, X_SID, Py_NewRef(sid)) == 0 &&
        (branch == Py_None || set_item(r->st, X_BRANCH, Py_NewRef(branch)) == 0)) {
        if (cwd != Py_None) Py_SETREF(r->cwd, Py_NewRef(cwd));
        codex_seen(r, &seen, 0);
        if (parsed) {
            r->last = *ts;
            r->last_changed = 1;
        }
        rc = 0;
    }
    Py_XDECREF(sid);
    Py_XDECREF(cwd);
    Py_XDECREF(version);
    Py_XDECREF(repo);
    Py_XDECREF(commit);
    Py_XDECREF(branch);
    return rc;
}

static int codex_rule(R *r, Py_ssize_t line_no, const Slot *sl) {
    const Slot *kind = &sl[XS_TYPE], *payload = &sl[XS_PAYLOAD];
    if (payload->type == J_ABSENT || payload->type == J_NULL) return BAIL; /* early Codex's bare lines */
    if (kind->type == J_ABSENT || kind->type == J_NULL) return 0;          /* counts nothing */
    if (kind->type != J_STR || kind->esc) return BAIL;
    int which = 0;
    if (slot_is(kind, "event_msg")) {
        if (payload->type != J_OBJ) return 0;
        if (sl[XS_PTYPE].type == J_STR && sl[XS_PTYPE].esc) return BAIL;
        if (!slot_is(&sl[XS_PTYPE], "token_count")) return 0;
        which = 1;
    } else if (slot_is(kind, "turn_context")) {
        which = 2;
    } else if (slot_is(kind, "token_usage_record")) {
        which = 3;
    } else if (slot_is(kind, "session_meta")) {
        /* Any other header (a second one, one after other lines, an odd one): the parser's Python. */
        if (payload->type != J_OBJ || r->touched || r->v[X_OPEN] != Py_False || !nonempty(&sl[XS_PID])) return BAIL;
        which = 4;
    } else {
        return 0;
    }
    if (which != 1 && payload->type != J_OBJ) return BAIL;
    TS ts;
    int parsed;
    if (slot_ts(r, &sl[XS_TS], &ts, &parsed)) return BAIL;
    if (which == 1) return codex_token_count(r, line_no, sl, &ts, parsed);
    if (which == 3) return codex_usage_record(r, sl, &ts, parsed);
    if (which == 4) return codex_meta(r, sl, &ts, parsed);
    codex_seen(r, &ts, parsed); /* turn_context */
    if (nonempty(&sl[XS_MODEL])) {
        int same = slot_eq(&sl[XS_MODEL], r->model);
        if (same < 0) return -1;
        if (!same) {
            PyObject *m = slot_str(&sl[XS_MODEL]);
            if (m == NULL) return -1;
            Py_SETREF(r->model, m);
            r->model_listed = 0;
        }
        if (!r->model_listed) {
            PyObject *models = r->v[X_MODELS];
            int has = PySequence_Contains(models, r->model);
            if (has < 0 || (has == 0 && PyList_Append(models, r->model) < 0)) return -1;
            r->model_listed = 1;
        }
    }
    if (nonempty(&sl[XS_CWD])) {
        int same = slot_eq(&sl[XS_CWD], r->cwd);
        if (same < 0) return -1;
        if (!same) {
            PyObject *cwd = slot_str(&sl[XS_CWD]);
            if (cwd == NULL) return -1;
            Py_SETREF(r->cwd, cwd);
        }
        if (r->first_cwd == Py_None) Py_SETREF(r->first_cwd, Py_NewRef(r->cwd));
    }
    return 0;
}

/* -- Claude Code ---------------------------------------------------------------------------------- */

/* usage.Usage.from_anthropic: its fast path here, its general rule in Python (on the built object). */
static PyObject *claude_usage(R *r, const Slot *sl, PyObject *usage_dict) {
    const Slot *in = &sl[CS_IN], *rd = &sl[CS_READ], *wt = &sl[CS_WRITE], *out = &sl[CS_OUT], *det = &sl[CS_DETAIL];
    long long write_total = wt->type == J_ABSENT ? 0 : wt->i;
    if (in->type == J_INT && rd->type == J_INT && out->type == J_INT && (wt->type == J_ABSENT || wt->type == J_INT) &&
        in->i >= 0 && rd->i >= 0 && out->i >= 0) {
        const Slot *w5 = &sl[CS_W5], *w1 = &sl[CS_W1];
        if (det->type == J_OBJ) {
            if (w5->type == J_INT && w1->type == J_INT && w5->i >= 0 && w1->i >= 0 && w5->i + w1->i == write_total) {
                long long c[5] = {in->i, rd->i, w5->i, w1->i, out->i};
                return usage_of(r->v[C_USAGE], c, 5);
            }
        } else if ((det->type == J_ABSENT || det->type == J_NULL) && write_total >= 0) {
            long long c[5] = {in->i, rd->i, write_total, 0, out->i};
            return usage_of(r->v[C_USAGE], c, 5);
        }
    }
    return PyObject_CallOneArg(r->v[C_FROM_ANTHROPIC], usage_dict);
}

static int set_if_none(PyObject *o, int attr, PyObject *value) {
    PyObject *cur = PyObject_GetAttr(o, K[attr]);
    if (cur == NULL) return -1;
    int rc = cur == Py_None && value != Py_None ? PyObject_SetAttr(o, K[attr], value) : 0;
    Py_DECREF(cur);
    return rc;
}

/* ClaudeCodeParser._session: the line's session, its cwd, branch and version (borrowed). */
static PyObject *claude_session(R *r, const Slot *sl, PyObject *sid) {
    PyObject **v = r->v;
    PyObject *s = PyDict_GetItemWithError(v[C_SESSIONS], sid);
    if (s == NULL) {
        if (PyErr_Occurred()) return NULL;
        s = PyObject_CallFunctionObjArgs(v[C_SESSION], K[K_claude_code], sid, NULL);
        if (s == NULL) return NULL;
        if ((v[C_SOURCE_PATH] != Py_None && PyObject_SetAttr(s, K[K_source_path], v[C_SOURCE_PATH]) < 0) ||
            PyDict_SetItem(v[C_SESSIONS], sid, s) < 0) {
            Py_DECREF(s);
            return NULL;
        }
        Py_DECREF(s); /* the dict holds it */
    }
    if (nonempty(&sl[CS_CWD])) {
        PyObject *cur = PyObject_GetAttr(s, K[K_cwd]);
        if (cur == NULL) return NULL;
        int unset = cur == Py_None;
        Py_DECREF(cur);
        if (unset) {
            PyObject *cwd = slot_str(&sl[CS_CWD]);
            int rc = cwd == NULL ? -1 : PyObject_SetAttr(s, K[K_cwd], cwd);
            Py_XDECREF(cwd);
            if (rc < 0) return NULL;
        }
    }
    static const int keys[2][2] = {{CS_BRANCH, K_branch}, {CS_VERSION, K_agent_version}};
    for (int i = 0; i < 2; i++) {
        const Slot *val = &sl[keys[i][0]];
        if (!nonempty(val)) continue;
        PyObject *cur = PyObject_GetAttr(s, K[keys[i][1]]);
        if (cur == NULL) return NULL;
        int same = slot_eq(val, cur);
        Py_DECREF(cur);
        if (same < 0) return NULL;
        if (!same) {
            PyObject *nv = slot_str(val);
            int rc = nv == NULL ? -1 : PyObject_SetAttr(s, K[keys[i][1]], nv);
            Py_XDECREF(nv);
            if (rc < 0) return NULL;
        }
    }
    return s;
}

/* TranscriptSession.see */
static int session_see(PyObject *s, PyObject *when) {
    static const int attrs[2] = {K_started_at, K_ended_at};
    for (int i = 0; i < 2; i++) {
        PyObject *cur = PyObject_GetAttr(s, K[attrs[i]]);
        if (cur == NULL) return -1;
        int move = cur == Py_None ? 1 : PyObject_RichCompareBool(when, cur, i == 0 ? Py_LT : Py_GT);
        Py_DECREF(cur);
        if (move < 0 || (move && PyObject_SetAttr(s, K[attrs[i]], when) < 0)) return -1;
    }
    return 0;
}

/* What _call must know before anything changes: the dedup key, the parser's entry for it, whether the
 * usage bytes are those that entry was made from (then the usage objects are equal: nothing to do) and,
 * if not, the usage object itself. Returns UNSURE when that object cannot be built exactly here. */
typedef struct {
    PyObject *key, *entry, *usage; /* entry borrowed */
    int same_bytes;
} CallPlan;

static int claude_plan(R *r, const Slot *sl, PyObject *rid, PyObject *mid, CallPlan *cp) {
    PyObject **v = r->v;
    const Slot *u = &sl[CS_USAGE];
    if ((cp->key = PyTuple_Pack(2, rid, mid)) == NULL) return -1;
    cp->entry = PyDict_GetItemWithError(v[C_SEEN], cp->key);
    if (cp->entry == NULL && PyErr_Occurred()) return -1;
    if (cp->entry != NULL) {
        PyObject *raw = PyDict_GetItemWithError(v[C_SEEN_RAW], cp->key);
        if (raw == NULL && PyErr_Occurred()) return -1;
        /* (entry, bytes): valid while the parser's entry is still that one */
        if (raw != NULL && PyTuple_GET_ITEM(raw, 0) == cp->entry) {
            PyObject *b = PyTuple_GET_ITEM(raw, 1);
            cp->same_bytes = PyBytes_GET_SIZE(b) == u->len && memcmp(PyBytes_AS_STRING(b), u->s, u->len) == 0;
        }
    }
    if (cp->same_bytes) return 0;
    P sub = {u->s, u->s + u->len, 0, 0};
    int rc = object(&sub, FULL, NULL, &cp->usage);
    if (sub.pyerr) return -1;
    return rc ? UNSURE : 0;
}

/* ClaudeCodeParser._call, after the plan. */
static int claude_call(R *r, const Slot *sl, CallPlan *cp, PyObject *sid, PyObject *model, PyObject *when,
                       PyObject *rid, PyObject *mid) {
    PyObject **v = r->v;
    if (cp->same_bytes) return 0; /* another block of the same response repeating its usage */
    PyObject *call = NULL, *usage = NULL, *entry = NULL, *raw = NULL, *cwd = NULL, *branch = NULL, *agent = NULL;
    int rc = -1;
    if (cp->entry != NULL) {
        int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(cp->entry, 1), cp->usage, Py_EQ);
        if (same < 0) return -1;
        if (same) { /* equal objects written differently: remember these bytes too */
            entry = Py_NewRef(cp->entry);
            goto remember;
        }
    }
    cwd = str_or_none(&sl[CS_CWD]);
    branch = str_or_none(&sl[CS_BRANCH]);
    agent = nonempty(&sl[CS_AGENT]) ? slot_str(&sl[CS_AGENT]) : Py_NewRef(v[C_FILE_AGENT]);
    if (cwd == NULL || branch == NULL || agent == NULL) goto done;
    if ((usage = claude_usage(r, sl, cp->usage)) == NULL) goto done;
    if (cp->entry != NULL) {
        /* A later line of a known response (a streamed response's final usage): folded in. */
        call = Py_NewRef(PyTuple_GET_ITEM(cp->entry, 0));
        PyObject *m = PyObject_CallMethodObjArgs(call, K[K_merge_usage], usage, when, NULL);
        if (m == NULL) goto done;
        Py_DECREF(m);
        if (set_if_none(call, K_model, model) < 0 || set_if_none(call, K_request_id, rid) < 0 ||
            set_if_none(call, K_message_id, mid) < 0 || set_if_none(call, K_cwd, cwd) < 0 ||
            set_if_none(call, K_git_branch, branch) < 0 || set_if_none(call, K_subagent_id, agent) < 0)
            goto done;
    } else {
        Sha c;
        sha_init(&c);
        sha_add(&c, rid != Py_None ? "claude-code\x1frequest" : "claude-code\x1fmessage", 19);
        if (sha_str(&c, rid != Py_None ? rid : mid) < 0) {
            sha_drop(&c);
            goto done;
        }
        PyObject *call_id = sha_id(&c);
        if (call_id == NULL) goto done;
        PyObject *args[12] = {call_id, sid, K[K_claude_code], K[K_anthropic], model, when, usage, rid, mid, cwd,
                              branch, agent};
        call = from_template(&LAYOUTS[0], v[C_CALL], args, 12);
        PyObject *have = call == NULL ? NULL : PyDict_GetItemWithError(v[C_CALLS], call_id);
        int ok = call != NULL && !PyErr_Occurred();
        if (ok && have == NULL) {
            ok = PyDict_SetItem(v[C_CALLS], call_id, call) == 0;
        } else if (ok) {
            PyObject *m = PyObject_CallMethodOneArg(have, K[K_merge], call);
            ok = m != NULL;
            Py_XDECREF(m);
            Py_SETREF(call, Py_NewRef(have));
        }
        Py_DECREF(call_id);
        if (!ok) goto done;
    }
    entry = PyTuple_Pack(2, call, cp->usage);
    if (entry == NULL || PyDict_SetItem(v[C_SEEN], cp->key, entry) < 0) goto done;
remember:
    raw = Py_BuildValue("(Oy#)", entry, (const char *)sl[CS_USAGE].s, sl[CS_USAGE].len);
    if (raw != NULL && PyDict_SetItem(v[C_SEEN_RAW], cp->key, raw) == 0) rc = 0;
done:
    Py_XDECREF(raw);
    Py_XDECREF(entry);
    Py_XDECREF(usage);
    Py_XDECREF(call);
    Py_XDECREF(cwd);
    Py_XDECREF(branch);
    Py_XDECREF(agent);
    return rc;
}

static int claude_rule(R *r, const Slot *sl) {
    PyObject **v = r->v;
    const Slot *kind = &sl[CS_TYPE];
    if (kind->type != J_STR) return 0;
    if (kind->esc) return BAIL;
    if (slot_is(kind, "summary") || slot_is(kind, "cost-state")) return BAIL; /* a few a session */
    if (!slot_is(kind, "assistant")) return 0;
    if (sl[CS_MESSAGE].type != J_OBJ) return BAIL;
    if (sl[CS_CONTENT].type != J_STR && sl[CS_CONTENT].type != J_ARR) return BAIL;
    int usage = sl[CS_USAGE].type == J_OBJ;
    if (!usage && sl[CS_USAGE].type != J_ABSENT && sl[CS_USAGE].type != J_NULL) return BAIL;
    TS ts;
    int parsed;
    if (slot_ts(r, &sl[CS_TS], &ts, &parsed)) return BAIL;
    const Slot *m = &sl[CS_MODEL];
    if (nonempty(m) && m->esc) return BAIL;
    int synthetic = slot_is(m, "<synthetic>"), counts = usage && !synthetic;
    if (counts && !nonempty(&sl[CS_RID]) && !nonempty(&sl[CS_MID])) return BAIL; /* keyed by line: rare */
    PyObject *model = nonempty(m) ? cached_str(m, &r->model_cache) : Py_NewRef(Py_None);
    PyObject *rid = str_or_none(&sl[CS_RID]), *mid = str_or_none(&sl[CS_MID]);
    PyObject *sid = nonempty(&sl[CS_SID]) ? cached_str(&sl[CS_SID], &r->sid_cache) : Py_NewRef(v[C_FILE_SESSION]);
    PyObject *when = NULL;
    CallPlan cp = {NULL, NULL, NULL, 0};
    int rc = -1;
    if (model == NULL || rid == NULL || mid == NULL || sid == NULL) goto done;
    if (counts && (rc = claude_plan(r, sl, rid, mid, &cp)) != 0) goto done; /* nothing changed yet */
    rc = -1;
    PyObject *s = claude_session(r, sl, sid);
    if (s == NULL || (when = ts_datetime(&ts)) == NULL || session_see(s, when) < 0) goto done;
    if (parsed) {
        r->last = ts;
        r->last_changed = 1;
    }
    if (!synthetic && model != Py_None) {
        PyObject *models = PyObject_GetAttr(s, K[K_models]);
        int has = models == NULL ? -1 : PySequence_Contains(models, model);
        int bad = has < 0 || (has == 0 && PyList_Append(models, model) < 0);
        Py_XDECREF(models);
        if (bad) goto done;
    }
    rc = counts ? claude_call(r, sl, &cp, sid, model, when, rid, mid) : 0;
done:
    Py_XDECREF(cp.key);
    Py_XDECREF(cp.usage);
    Py_XDECREF(when);
    Py_XDECREF(model);
    Py_XDECREF(rid);
    Py_XDECREF(mid);
    Py_XDECREF(sid);
    return rc;
}

/* ------------------------------------------------------------------------------------------- scan */

/* memmem, with its first and last bytes looked for sixteen places at a time (glibc's took a tenth of
 * a Claude Code read, measured). */
static const unsigned char *find(const unsigned char *p, const unsigned char *end, const char *nd, Py_ssize_t n) {
#ifdef __SSE2__
    if (n >= 2) {
        __m128i first = _mm_set1_epi8(nd[0]), last = _mm_set1_epi8(nd[n - 1]);
        while (end - p >= 16 + n - 1) {
            __m128i a = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), first);
            __m128i b = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + n - 1)), last);
            unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(a, b));
            while (m) {
                int i = __builtin_ctz(m);
                if (memcmp(p + i + 1, nd + 1, n - 2) == 0) return p + i;
                m &= m - 1;
            }
            p += 16;
        }
    }
#endif
    return memmem(p, end - p, nd, n);
}

/* The complete lines of a buffer that the byte checks keep (jsonl.read_file's skip_prefixes rule, then
 * the parser's own: Claude Code's `_cannot_count`, Codex's `_CANNOT_COUNT`). */
typedef struct {
    const unsigned char *p, *end;
    int mode;
    PyObject *skip_prefixes, *keep_prefixes;
    const char *nd;
    Py_ssize_t ndlen, lines; /* lines: complete lines walked */
    /* The next occurrence of the needle at or after the current line: one pass over the buffer, not a
     * search per line (the needle holds no newline, so an occurrence lies within one line). */
    const unsigned char *next_needle;
    int search; /* whether next_needle must be searched again (none searched yet, or passed) */
} Walk;

static const unsigned char *walk_next(Walk *w, Py_ssize_t *len_out) {
    for (;;) {
        const unsigned char *nl = memchr(w->p, '\n', w->end - w->p);
        if (nl == NULL) return NULL;
        const unsigned char *line = w->p;
        Py_ssize_t len = nl + 1 - line;
        w->p = nl + 1;
        w->lines++;
        if (w->mode == 1) {
            if (len >= 2 && line[len - 2] == '}' && starts_with_any(line, len, w->skip_prefixes)) continue;
            int has_needle = 0;
            if (w->nd != NULL) {
                if (w->search || (w->next_needle != NULL && w->next_needle < line)) {
                    w->next_needle = find(line, w->end, w->nd, w->ndlen);
                    w->search = 0;
                }
                has_needle = w->next_needle != NULL && w->next_needle < line + len;
            }
            if (!has_needle && !starts_with_any(line, len, w->keep_prefixes)) continue;
        } else if (codex_cannot_count(line, len)) {
            continue;
        }
        *len_out = len;
        return line;
    }
}

static int walk_init(Walk *w, const unsigned char *base, Py_ssize_t size, Py_ssize_t start, int mode,
                     PyObject *skip_prefixes, PyObject *needle, PyObject *keep_prefixes) {
    memset(w, 0, sizeof *w);
    if (start < 0 || start > size) return -1;
    w->p = base + start;
    w->end = base + size;
    w->mode = mode;
    w->skip_prefixes = skip_prefixes;
    w->keep_prefixes = keep_prefixes;
    w->search = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(skip_prefixes); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(skip_prefixes, i))) return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keep_prefixes); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(keep_prefixes, i))) return -1;
    if (needle != Py_None) {
        if (!PyBytes_Check(needle)) return -1;
        w->nd = PyBytes_AS_STRING(needle);
        w->ndlen = PyBytes_GET_SIZE(needle);
        if (w->ndlen == 0 || memchr(w->nd, '\n', w->ndlen) != NULL) return -1;
    }
    if (mode != 1 && mode != 2) return -1;
    return 0;
}

/* A kept line's slots (sure: the line is valid JSON this rule can read; else orjson decides). */
static int slots_of(const unsigned char *line, Py_ssize_t len, int mode, Slot *slots) {
    P s = {line, line + len, 0, 0};
    memset(slots, 0, sizeof(Slot) * MAX_SLOTS);
    skip_ws(&s);
    int r = (s.p < s.end && *s.p == '{') ? fobject(&s, mode == 1 ? &CN_ROOT : &XN_ROOT, slots) : UNSURE;
    if (r == 0) {
        skip_ws(&s);
        if (s.p != s.end) r = UNSURE;
    }
    return r;
}

static int append_item(PyObject *items, Py_ssize_t n, PyObject *obj) {
    if (obj == NULL) return -1;
    PyObject *no = PyLong_FromSsize_t(n);
    int rc = no == NULL || PyList_Append(items, no) < 0 || PyList_Append(items, obj) < 0 ? -1 : 0;
    Py_XDECREF(no);
    Py_DECREF(obj);
    return rc;
}

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    Py_ssize_t line_no;
    int mode;
    PyObject *skip_prefixes, *needle, *keep_prefixes, *spec_dict, *state = Py_None;
    Py_ssize_t start = 0;
    if (!PyArg_ParseTuple(args, "y*niO!OO!O!|On", &buf, &line_no, &mode, &PyTuple_Type, &skip_prefixes, &needle,
                          &PyTuple_Type, &keep_prefixes, &PyDict_Type, &spec_dict, &state, &start))
        return NULL;
    PyObject *items = NULL;
    R rule;
    Walk w;
    int have_rule = 0, gc_was_enabled = 0, used = 0;
    Spec pool[MAX_NODES];
    Spec *spec;
    if (walk_init(&w, buf.buf, buf.len, start, mode, skip_prefixes, needle, keep_prefixes) < 0) goto badarg;
    if (build_spec(spec_dict, pool, &used, &spec) < 0) goto fail;
    if (state != Py_None) {
        if (r_load(&rule, state, mode) < 0) {
            r_store(&rule, 0);
            goto fail;
        }
        have_rule = 1;
    }
    if ((items = PyList_New(0)) == NULL) goto fail;
    /* No cyclic collection while building: the built values are trees of fresh objects, and a chunk
     * builds thousands of dicts, each collection walking all of them again (most of the time, measured). */
    gc_was_enabled = PyGC_Disable();
    const unsigned char *line;
    Py_ssize_t len;
    while ((line = walk_next(&w, &len)) != NULL) {
        PyObject *obj = NULL;
        int r;
        if (have_rule) { /* the rule reads the slots; its unsure lines go back as bytes */
            Slot slots[MAX_SLOTS];
            r = slots_of(line, len, mode, slots);
            if (r == 0) {
                r = mode == 1 ? claude_rule(&rule, slots) : codex_rule(&rule, line_no + w.lines, slots);
                if (r < 0) goto fail;
                if (r == 0) continue;
            }
        } else {
            P s = {line, line + len, 0, 0};
            skip_ws(&s);
            r = (s.p < s.end && *s.p == '{') ? object(&s, OBJECT, spec, &obj) : UNSURE;
            if (r == 0) {
                skip_ws(&s);
                if (s.p != s.end) {
                    Py_CLEAR(obj);
                    r = UNSURE;
                }
            }
            if (s.pyerr) goto fail;
        }
        if (r) obj = PyBytes_FromStringAndSize((const char *)line, len);
        if (append_item(items, line_no + w.lines, obj) < 0) goto fail;
        if (have_rule) break; /* the parser reads this line before the rule goes on */
    }
    if (gc_was_enabled) PyGC_Enable();
    if (have_rule && r_store(&rule, 1) < 0) {
        have_rule = 0;
        goto fail;
    }
    PyBuffer_Release(&buf);
    return Py_BuildValue("(Nnn)", items, w.lines, (Py_ssize_t)(w.p - (const unsigned char *)buf.buf));
badarg:
    PyErr_SetString(PyExc_TypeError, "scan: bad arguments");
fail:
    if (gc_was_enabled) PyGC_Enable();
    if (have_rule) r_store(&rule, 0);
    Py_XDECREF(items);
    PyBuffer_Release(&buf);
    return NULL;
}

/* ------------------------------------------------------------------------------------ read ahead */

/* A reader thread of its own (no Python in it, so it never waits for the GIL nor makes the parser's
 * thread wait): it reads the next files from their read positions and does the rule's reading part
 * (the walk, the byte checks, validation, slots) while the parser's thread runs the rule on the file
 * before (`apply`). jsonl's read-ahead path: a few files ahead, files of at most `max_bytes` new bytes.
 * The thread only reads the rule's tuples and bytes (held by the Ahead), never their reference counts. */
typedef struct {
    Py_ssize_t lines; /* complete lines walked up to and including this one */
    const unsigned char *line;
    Py_ssize_t len;
    int sure;
    Slot slots[MAX_SLOTS];
} Rec;

typedef struct {
    char *path;
    long long offset;
    int done, err; /* err: an errno, or -1 for a file past max_bytes (read the usual way) */
    unsigned char *data;
    Py_ssize_t size, n, next, lines, consumed, done_lines, cap, rcap;
    Rec *recs;
    int mode;
} Job;

/* Buffers given back by the parser's thread for the next files: fresh ones each time cost page faults
 * and zeroing in the kernel (measured: twice the system time of a read). */
#define POOL 16
typedef struct {
    unsigned char *data;
    Rec *recs;
    Py_ssize_t cap, rcap;
} Bufs;

typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop, mode, npool;
    Job *jobs;
    Py_ssize_t njobs, taken, window, max_bytes;
    PyObject *skip_prefixes, *needle, *keep_prefixes;
    PyObject *last; /* the job taken last: its buffers go back to the pool at the next take */
    Bufs pool[POOL];
} Ahead;
#define AHEAD_NAME "agenttrail.importers._scan.Ahead"
#define JOB_NAME "agenttrail.importers._scan.Job"

static void job_clear(Job *j) {
    free(j->data);
    free(j->recs);
    j->data = NULL;
    j->recs = NULL;
    j->cap = j->rcap = 0;
}

static void job_read(Ahead *a, Job *j) {
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        j->err = errno ? errno : EIO;
        return;
    }
    struct stat st;
    Py_ssize_t cap, got = 0;
    if (fstat(fd, &st) == 0 && st.st_size - j->offset > a->max_bytes) {
        j->err = -1;
        close(fd);
        return;
    }
    cap = st.st_size > j->offset ? (Py_ssize_t)(st.st_size - j->offset) + 1 : 1 << 16;
    pthread_mutex_lock(&a->mu);
    if (a->npool > 0) {
        Bufs *b = &a->pool[--a->npool];
        j->data = b->data, j->cap = b->cap, j->recs = b->recs, j->rcap = b->rcap;
    }
    pthread_mutex_unlock(&a->mu);
    if (j->cap < cap) {
        free(j->data);
        j->data = malloc(cap);
        j->cap = cap;
    }
    cap = j->cap;
    for (;;) {
        if (j->data == NULL) {
            j->err = ENOMEM;
            break;
        }
        if (got == cap) { /* the file grew since: read on to its end */
            unsigned char *more = realloc(j->data, cap * 2);
            if (more == NULL) {
                j->err = ENOMEM;
                break;
            }
            j->data = more;
            j->cap = cap *= 2;
        }
        ssize_t r = pread(fd, j->data + got, cap - got, j->offset + got);
        if (r < 0) {
            if (errno == EINTR) continue;
            j->err = errno;
            break;
        }
        if (r == 0) break;
        got += r;
        if (got > a->max_bytes) {
            j->err = -1;
            break;
        }
    }
    close(fd);
    if (j->err) {
        job_clear(j);
        return;
    }
    j->size = got;
    Walk w;
    if (walk_init(&w, j->data, got, 0, a->mode, a->skip_prefixes, a->needle, a->keep_prefixes) < 0) {
        j->err = EINVAL;
        job_clear(j);
        return;
    }
    const unsigned char *line;
    Py_ssize_t len;
    while ((line = walk_next(&w, &len)) != NULL) {
        if (j->n == j->rcap) {
            Py_ssize_t rcap = j->rcap ? 2 * j->rcap : 64;
            Rec *more = realloc(j->recs, rcap * sizeof(Rec));
            if (more == NULL) {
                j->err = ENOMEM;
                job_clear(j);
                return;
            }
            j->recs = more;
            j->rcap = rcap;
        }
        Rec *rec = &j->recs[j->n++];
        rec->lines = w.lines;
        rec->line = line;
        rec->len = len;
        rec->sure = slots_of(line, len, a->mode, rec->slots) == 0;
    }
    j->lines = w.lines;
    j->consumed = w.p - j->data;
}

static void *ahead_main(void *arg) {
    Ahead *a = arg;
    for (Py_ssize_t i = 0; i < a->njobs; i++) {
        pthread_mutex_lock(&a->mu);
        while (!a->stop && i - a->taken >= a->window) pthread_cond_wait(&a->cv, &a->mu);
        int stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        if (stop) break;
        if (a->jobs[i].path[0] != '\0') {
            job_read(a, &a->jobs[i]);
        } else {
            a->jobs[i].err = -1; /* not to be read ahead */
        }
        pthread_mutex_lock(&a->mu);
        a->jobs[i].done = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
    }
    return NULL;
}

static void ahead_free(PyObject *capsule) {
    Ahead *a = PyCapsule_GetPointer(capsule, AHEAD_NAME);
    if (a == NULL) return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(a->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < a->njobs; i++) {
        job_clear(&a->jobs[i]);
        free(a->jobs[i].path);
    }
    free(a->jobs);
    for (int i = 0; i < a->npool; i++) {
        free(a->pool[i].data);
        free(a->pool[i].recs);
    }
    Py_CLEAR(a->last);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    Py_XDECREF(a->skip_prefixes);
    Py_XDECREF(a->needle);
    Py_XDECREF(a->keep_prefixes);
    free(a);
}

/* ahead(paths, offsets, mode, skip_prefixes, needle, keep_prefixes, window, max_bytes); an empty path:
 * a file not to read ahead (take says so). */
static PyObject *ahead(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *paths, *offsets, *skip_prefixes, *needle, *keep_prefixes;
    int mode;
    Py_ssize_t window, max_bytes;
    if (!PyArg_ParseTuple(args, "O!O!iO!OO!nn", &PyList_Type, &paths, &PyList_Type, &offsets, &mode, &PyTuple_Type,
                          &skip_prefixes, &needle, &PyTuple_Type, &keep_prefixes, &window, &max_bytes))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(paths);
    Walk probe;
    if (PyList_GET_SIZE(offsets) != n || window < 1 || max_bytes < 0 ||
        walk_init(&probe, (const unsigned char *)"", 0, 0, mode, skip_prefixes, needle, keep_prefixes) < 0) {
        PyErr_SetString(PyExc_TypeError, "ahead: bad arguments");
        return NULL;
    }
    Ahead *a = calloc(1, sizeof *a);
    if (a == NULL) return PyErr_NoMemory();
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->mode = mode;
    a->window = window;
    a->max_bytes = max_bytes;
    a->skip_prefixes = Py_NewRef(skip_prefixes);
    a->needle = Py_NewRef(needle);
    a->keep_prefixes = Py_NewRef(keep_prefixes);
    PyObject *capsule = PyCapsule_New(a, AHEAD_NAME, ahead_free);
    if (capsule == NULL) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        Py_DECREF(a->skip_prefixes);
        Py_DECREF(a->needle);
        Py_DECREF(a->keep_prefixes);
        free(a);
        return NULL;
    }
    if ((a->jobs = calloc(n ? n : 1, sizeof(Job))) == NULL) goto nomem;
    a->njobs = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(paths, i);
        if (!PyBytes_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "ahead: paths must be bytes");
            goto fail;
        }
        if ((a->jobs[i].path = strdup(PyBytes_AS_STRING(p))) == NULL) goto nomem;
        a->jobs[i].offset = PyLong_AsLongLong(PyList_GET_ITEM(offsets, i));
        if (a->jobs[i].offset == -1 && PyErr_Occurred()) goto fail;
        a->jobs[i].mode = mode;
    }
    if (pthread_create(&a->thread, NULL, ahead_main, a) != 0) {
        PyErr_SetString(PyExc_OSError, "ahead: no thread");
        goto fail;
    }
    a->started = 1;
    return capsule;
nomem:
    PyErr_NoMemory();
fail:
    Py_DECREF(capsule);
    return NULL;
}

static void taken_free(PyObject *capsule) {
    Job *j = PyCapsule_GetPointer(capsule, JOB_NAME);
    if (j == NULL) return;
    job_clear(j);
    free(j);
}

/* take(ahead, i) -> (err, job, head, incomplete): file i as read ahead (waiting for it without the GIL).
 * err nonzero: not read ahead (read it the usual way). head: its first 4096 bytes read; incomplete:
 * bytes follow its last complete line. Files are taken once, in order; taking one gives the buffers
 * of the one before back (apply refuses that one from then on). */
static PyObject *take(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *capsule;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "On", &capsule, &i)) return NULL;
    Ahead *a = PyCapsule_GetPointer(capsule, AHEAD_NAME);
    if (a == NULL) return NULL;
    if (i != a->taken || i >= a->njobs) {
        PyErr_SetString(PyExc_ValueError, "take: files are taken once, in order");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&a->mu);
    while (!a->jobs[i].done) pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    Py_END_ALLOW_THREADS
    Job *j = malloc(sizeof *j);
    if (j == NULL) return PyErr_NoMemory();
    Job *last = a->last != NULL ? PyCapsule_GetPointer(a->last, JOB_NAME) : NULL;
    pthread_mutex_lock(&a->mu);
    if (last != NULL && a->npool < POOL) {
        a->pool[a->npool++] = (Bufs){last->data, last->recs, last->cap, last->rcap};
        last->data = NULL;
        last->recs = NULL;
        last->cap = last->rcap = last->n = last->next = 0;
        last->err = EINVAL;
    }
    *j = a->jobs[i];
    a->jobs[i].data = NULL; /* the taken job owns them now */
    a->jobs[i].recs = NULL;
    a->taken = i + 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    j->path = NULL;
    PyObject *job = PyCapsule_New(j, JOB_NAME, taken_free);
    if (job == NULL) {
        job_clear(j);
        free(j);
        return NULL;
    }
    Py_XSETREF(a->last, Py_NewRef(job));
    PyObject *head = PyBytes_FromStringAndSize((const char *)j->data, j->err ? 0 : (j->size < 4096 ? j->size : 4096));
    return Py_BuildValue("(iNNO)", j->err, job, head, j->err == 0 && j->consumed < j->size ? Py_True : Py_False);
}

/* apply(job, first_line_no, state) -> (items, lines, consumed): the rule over a taken file's noted lines
 * from where it stopped, up to and including the first line it is not sure of (as `scan` with a state). */
static PyObject *apply(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *capsule, *state;
    Py_ssize_t line_no;
    if (!PyArg_ParseTuple(args, "OnO", &capsule, &line_no, &state)) return NULL;
    Job *j = PyCapsule_GetPointer(capsule, JOB_NAME);
    if (j == NULL) return NULL;
    if (j->err) {
        PyErr_SetString(PyExc_ValueError, "apply: the file is not (or no longer) read ahead");
        return NULL;
    }
    R rule;
    if (r_load(&rule, state, j->mode) < 0) {
        r_store(&rule, 0);
        return NULL;
    }
    PyObject *items = PyList_New(0);
    int gc_was_enabled = PyGC_Disable();
    Py_ssize_t before = j->done_lines, through = j->lines, consumed = j->consumed;
    while (items != NULL && j->next < j->n) {
        Rec *rec = &j->recs[j->next++];
        Py_ssize_t at = line_no + rec->lines - before;
        int r = UNSURE;
        if (rec->sure) {
            r = j->mode == 1 ? claude_rule(&rule, rec->slots) : codex_rule(&rule, at, rec->slots);
            if (r < 0) {
                Py_CLEAR(items);
                break;
            }
            if (r == 0) continue;
        }
        if (append_item(items, at, PyBytes_FromStringAndSize((const char *)rec->line, rec->len)) < 0) {
            Py_CLEAR(items);
            break;
        }
        through = rec->lines; /* the parser reads this line before the rule goes on */
        consumed = rec->line + rec->len - j->data;
        break;
    }
    if (gc_was_enabled) PyGC_Enable();
    if (items == NULL) {
        r_store(&rule, 0);
        return NULL;
    }
    j->done_lines = through;
    if (r_store(&rule, 1) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    return Py_BuildValue("(Nnn)", items, through - before, consumed);
}

/* sums(records, template) -> tuple | None: the field-wise sums of slotted records of exactly the template's
 * type (Usage), every field an int; None when one is not (another type, a non-int, a sum past 64 bits):
 * the caller then sums in Python. One pass instead of a `sum(map(attrgetter))` per field. */
static Layout SUMS_LAYOUT;

static PyObject *sums(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *items, *tmpl;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &items, &tmpl)) return NULL;
    if (layout_of(tmpl, &SUMS_LAYOUT) < 0) return NULL;
    const Layout *L = &SUMS_LAYOUT;
    long long total[24] = {0};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *o = PyList_GET_ITEM(items, i);
        if (Py_TYPE(o) != L->type) Py_RETURN_NONE;
        for (int k = 0; k < L->n; k++) {
            PyObject *v = *(PyObject **)((char *)o + L->off[k]);
            if (v == NULL || !PyLong_CheckExact(v)) Py_RETURN_NONE;
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow || (x == -1 && PyErr_Occurred()) || __builtin_add_overflow(total[k], x, &total[k])) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
        }
    }
    PyObject *out = PyTuple_New(L->n);
    if (out == NULL) return NULL;
    for (int k = 0; k < L->n; k++) {
        PyObject *v = PyLong_FromLongLong(total[k]);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, k, v);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"sums", sums, METH_VARARGS, "Field-wise sums of slotted records of the template's type."},
    {"scan", scan, METH_VARARGS, "Walk complete lines, filter, validate and build the spec'd parts."},
    {"ahead", ahead, METH_VARARGS, "Start reading files ahead in a thread of its own."},
    {"take", take, METH_VARARGS, "The next file read ahead."},
    {"apply", apply, METH_VARARGS, "Run a rule over a taken file, up to the first unsure line."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    for (int i = 0; i < K_COUNT; i++)
        if ((K[i] = PyUnicode_InternFromString(KEY_NAMES[i])) == NULL) return NULL;
    if (PyType_Ready(&TallyType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
