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
#include <stdint.h>
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
        /* Eight plain ASCII bytes at a time (no quote, backslash, control or non-ASCII byte): the long
         * texts of a transcript line are mostly that. */
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
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') goto unsure;
        s->p++;
        if ((r = scan_string(s, &kstart, &klen, &kesc))) goto fail_r;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') goto unsure;
        s->p++;
        skip_ws(s);
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
        skip_ws(s);
        if (s->p >= s->end) goto unsure;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == '}') {
            s->p++;
            break;
        }
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

/* ------------------------------------------------------------------------------------------- scan */

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    Py_ssize_t line_no;
    int mode;
    PyObject *skip_prefixes, *needle, *keep_prefixes, *spec_dict;
    if (!PyArg_ParseTuple(args, "y*niO!OO!O!", &buf, &line_no, &mode, &PyTuple_Type, &skip_prefixes, &needle,
                          &PyTuple_Type, &keep_prefixes, &PyDict_Type, &spec_dict))
        return NULL;
    PyObject *items = NULL;
    int gc_was_enabled = 0;
    Spec pool[MAX_NODES];
    int used = 0;
    Spec *spec;
    const char *nd = NULL;
    Py_ssize_t ndlen = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(skip_prefixes); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(skip_prefixes, i))) goto badarg;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keep_prefixes); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(keep_prefixes, i))) goto badarg;
    if (needle != Py_None) {
        if (!PyBytes_Check(needle)) goto badarg;
        nd = PyBytes_AS_STRING(needle);
        ndlen = PyBytes_GET_SIZE(needle);
    }
    if (mode != 1 && mode != 2) goto badarg;
    if (build_spec(spec_dict, pool, &used, &spec) < 0) goto fail;
    items = PyList_New(0);
    if (items == NULL) goto fail;

    /* No cyclic collection while building: the built values are trees of fresh objects, and a chunk
     * builds thousands of dicts, each collection walking all of them again (most of the time, measured). */
    gc_was_enabled = PyGC_Disable();
    const unsigned char *base = buf.buf, *p = base, *end = base + buf.len;
    /* The next occurrence of the needle at or after the current line: one pass over the buffer, not a
     * search per line (the needle holds no newline, so an occurrence lies within one line). */
    const unsigned char *next_needle = NULL;
    int search = 1; /* whether next_needle must be searched again (none searched yet, or passed) */
    if (nd != NULL && ndlen > 0 && memchr(nd, '\n', ndlen) != NULL) goto badarg;
    Py_ssize_t lines = 0;
    for (;;) {
        const unsigned char *nl = memchr(p, '\n', end - p);
        if (nl == NULL) break;
        const unsigned char *line = p;
        Py_ssize_t len = nl + 1 - line;
        p = nl + 1;
        lines++;
        if (mode == 1) {
            /* jsonl.read_file's skip_prefixes rule, then the parser's `_cannot_count`. */
            if (len >= 2 && line[len - 2] == '}' && starts_with_any(line, len, skip_prefixes)) continue;
            int has_needle = 0;
            if (nd != NULL) {
                if (search || (next_needle != NULL && next_needle < line)) {
                    next_needle = memmem(line, end - line, nd, ndlen);
                    search = 0;
                }
                has_needle = next_needle != NULL && next_needle < line + len;
            }
            if (!has_needle && !starts_with_any(line, len, keep_prefixes)) continue;
        } else if (codex_cannot_count(line, len)) {
            continue;
        }
        P s = {line, line + len, 0, 0};
        PyObject *obj = NULL;
        skip_ws(&s);
        int r = (s.p < s.end && *s.p == '{') ? object(&s, OBJECT, spec, &obj) : UNSURE;
        if (r == 0) {
            skip_ws(&s);
            if (s.p != s.end) {
                Py_CLEAR(obj);
                r = UNSURE;
            }
        }
        if (s.pyerr) goto fail;
        if (r) obj = PyBytes_FromStringAndSize((const char *)line, len);
        if (obj == NULL) goto fail;
        PyObject *n = PyLong_FromSsize_t(line_no + lines);
        if (n == NULL || PyList_Append(items, n) < 0 || PyList_Append(items, obj) < 0) {
            Py_XDECREF(n);
            Py_DECREF(obj);
            goto fail;
        }
        Py_DECREF(n);
        Py_DECREF(obj);
    }
    if (gc_was_enabled) PyGC_Enable();
    PyBuffer_Release(&buf);
    return Py_BuildValue("(Nnn)", items, lines, (Py_ssize_t)(p - base));
badarg:
    PyErr_SetString(PyExc_TypeError, "scan: bad arguments");
fail:
    if (gc_was_enabled) PyGC_Enable();
    Py_XDECREF(items);
    PyBuffer_Release(&buf);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Walk complete lines, filter, validate and build the spec'd parts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
