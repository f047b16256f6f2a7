/* The request path's compiled pieces: the marker scan of personalize_mw.core.markers,
 * the ASGI header decode of personalize_mw.asgi, the Cookie header split of
 * personalize_mw.core.cookies, and for the queue untrack_records and the records' ids and stamps.
 *
 * The scan has the same contract as markers._scan_py (the pure-Python fallback, which the suite
 * checks against this one on generated pages): every marker comment of a page,
 * in order, that an HTML tokenizer would see as a comment. Markers inside
 * ordinary comments and inside raw-text elements (script, style, textarea, ...)
 * are not markers. Hops from '<' to '<' with memchr, so a 50 KB page costs a few
 * microseconds; the pure-Python loop needs a regex pass over the whole page.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static const char *const RAW_TEXT[] = {
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext",
};
#define RAW_TEXT_COUNT (sizeof(RAW_TEXT) / sizeof(RAW_TEXT[0]))
#define MAX_NAME 64

static int lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
static int tag_end(unsigned char c) { return c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ' || c == '/' || c == '>'; }
static int space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int name_byte(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }

/* Length of the element name at p (case-insensitive) if it is a raw-text element
 * followed by a byte that ends a tag name, else 0. */
static Py_ssize_t raw_text_name(const unsigned char *p, Py_ssize_t left, size_t *which) {
    if (left < 4) return 0;
    switch (lower(p[0])) {  /* most tags (p, div, a, li, h2) stop here */
    case 's': case 't': case 'x': case 'i': case 'n': case 'p': break;
    default: return 0;
    }
    for (size_t i = 0; i < RAW_TEXT_COUNT; i++) {
        if (lower(p[0]) != (unsigned char)RAW_TEXT[i][0]) continue;
        Py_ssize_t n = (Py_ssize_t)strlen(RAW_TEXT[i]);
        if (left <= n) continue;
        Py_ssize_t k = 0;
        while (k < n && lower(p[k]) == (unsigned char)RAW_TEXT[i][k]) k++;
        if (k == n && tag_end(p[n])) { *which = i; return n; }
    }
    return 0;
}

/* A marker comment starting at s ('<!--' already seen): its end, else -1.
 * Fills closing, name_start and name_len. Mirrors markers._MARKER. */
static Py_ssize_t marker_at(const unsigned char *s, Py_ssize_t i, Py_ssize_t len,
                            int *closing, Py_ssize_t *name_start, Py_ssize_t *name_len) {
    Py_ssize_t j = i + 4;
    while (j < len && space(s[j])) j++;
    *closing = 0;
    if (j < len && s[j] == '/') { *closing = 1; j++; }
    if (len - j < 12 || memcmp(s + j, "personalize:", 12) != 0) return -1;
    j += 12;
    Py_ssize_t start = j;
    while (j < len && j - start < MAX_NAME && name_byte(s[j])
           && !(s[j] == '-' && j + 2 < len && s[j + 1] == '-' && s[j + 2] == '>')) j++;
    if (j == start) return -1;
    *name_start = start;
    *name_len = j - start;
    while (j < len && space(s[j])) j++;
    if (len - j < 3 || memcmp(s + j, "-->", 3) != 0) return -1;
    return j + 3;
}

/* Past the '>' that ends a start tag whose attributes begin at j, quotes
 * respected; -1 when the page ends first. */
static Py_ssize_t past_tag(const unsigned char *s, Py_ssize_t j, Py_ssize_t len) {
    while (j < len) {
        unsigned char c = s[j];
        if (c == '>') return j + 1;
        if (c == '"' || c == '\'') {
            const unsigned char *q = memchr(s + j + 1, c, (size_t)(len - j - 1));
            if (q == NULL) return -1;
            j = (q - s) + 1;
        } else {
            j++;
        }
    }
    return -1;
}

/* Past the end tag "</name" (case-insensitive, then a byte ending a tag name)
 * that closes raw text begun at j; -1 when there is none. */
static Py_ssize_t past_raw_text(const unsigned char *s, Py_ssize_t j, Py_ssize_t len, const char *name) {
    Py_ssize_t n = (Py_ssize_t)strlen(name);
    while (j < len) {
        const unsigned char *lt = memchr(s + j, '<', (size_t)(len - j));
        if (lt == NULL) return -1;
        Py_ssize_t k = lt - s;
        if (len - k > n + 2 && s[k + 1] == '/') {
            Py_ssize_t m = 0;
            while (m < n && lower(s[k + 2 + m]) == (unsigned char)name[m]) m++;
            if (m == n && tag_end(s[k + 2 + n])) return k + 2 + n;
        }
        j = k + 1;
    }
    return -1;
}

/* The next marker comment at or after *pos: 1 and its fields, or 0 at the end of the page. */
static int next_marker(const unsigned char *s, Py_ssize_t len, Py_ssize_t *pos, int *closing,
                       Py_ssize_t *name_start, Py_ssize_t *name_len, Py_ssize_t *start, Py_ssize_t *end) {
    Py_ssize_t i = *pos;
    while (i < len) {
        const unsigned char *lt = memchr(s + i, '<', (size_t)(len - i));
        if (lt == NULL) break;
        i = lt - s;
        if (len - i >= 4 && s[i + 1] == '!' && s[i + 2] == '-' && s[i + 3] == '-') {
            Py_ssize_t e = marker_at(s, i, len, closing, name_start, name_len);
            if (e >= 0) {
                *start = i;
                *end = e;
                *pos = e;
                return 1;
            }
            /* An ordinary comment: what it holds is not markup. */
            Py_ssize_t j = i + 4;
            for (;;) {
                const unsigned char *dash = memchr(s + j, '-', (size_t)(len > j ? len - j : 0));
                if (dash == NULL) { i = len; break; }
                j = dash - s;
                if (len - j >= 3 && s[j + 1] == '-' && s[j + 2] == '>') { i = j + 3; break; }
                j++;
            }
            continue;
        }
        size_t which;
        Py_ssize_t n = raw_text_name(s + i + 1, len - i - 1, &which);
        if (n > 0) {
            Py_ssize_t j = past_tag(s, i + 1 + n, len);
            if (j < 0 || which == RAW_TEXT_COUNT - 1) break;  /* unterminated tag, or plaintext: the rest is text */
            j = past_raw_text(s, j, len, RAW_TEXT[which]);
            if (j < 0) break;  /* raw text to the end of the page */
            i = j;
            continue;
        }
        i++;
    }
    *pos = len;
    return 0;
}

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t len = view.len, pos = 0, name_start, name_len, start, end;
    int closing;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    while (next_marker(s, len, &pos, &closing, &name_start, &name_len, &start, &end)) {
        PyObject *item = Py_BuildValue("(Os#nn)", closing ? Py_True : Py_False,
                                       (const char *)s + name_start, name_len, start, end);
        if (item == NULL || PyList_Append(out, item) < 0) { Py_XDECREF(item); goto fail; }
        Py_DECREF(item);
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* A Block (a tuple subclass) of three items, made as tuple.__new__ makes one: no Python call. */
static PyObject *new_block(PyTypeObject *type, PyObject *name, Py_ssize_t content_start, Py_ssize_t content_end) {
    PyObject *first = PyLong_FromSsize_t(content_start), *second = PyLong_FromSsize_t(content_end);
    PyObject *block = (first && second) ? type->tp_alloc(type, 3) : NULL;
    if (block == NULL) { Py_XDECREF(first); Py_XDECREF(second); return NULL; }
    Py_INCREF(name);
    PyTuple_SET_ITEM(block, 0, name);
    PyTuple_SET_ITEM(block, 1, first);
    PyTuple_SET_ITEM(block, 2, second);
    return block;
}

/* markers.find_blocks after its first test, in one call: markers paired into Blocks, the same
 * MarkerError messages as the Python loop (markers._pair). */
static PyObject *blocks(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyType_Check(args[1]) || !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type)
            || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "blocks(body, Block, MarkerError): Block a tuple type");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[1];
    PyObject *error = args[2];
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t len = view.len, pos = 0, name_start, name_len, start, end, open_end = 0;
    int closing;
    PyObject *open_name = NULL, *name = NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    while (next_marker(s, len, &pos, &closing, &name_start, &name_len, &start, &end)) {
        name = PyUnicode_DecodeASCII((const char *)s + name_start, name_len, NULL);
        if (name == NULL) goto fail;
        if (!closing) {
            if (open_name != NULL) {
                PyErr_Format(error, "block %R opens inside block %R (nesting is not allowed)", name, open_name);
                goto fail;
            }
            open_name = name;
            open_end = end;
            name = NULL;
            continue;
        }
        if (open_name == NULL) {
            PyErr_Format(error, "block %R closes without being opened", name);
            goto fail;
        }
        int same = PyUnicode_Compare(name, open_name);
        if (same == -1 && PyErr_Occurred()) goto fail;
        if (same != 0) {
            PyErr_Format(error, "block %R is closed by %R", open_name, name);
            goto fail;
        }
        PyObject *block = new_block(type, open_name, open_end, start);
        if (block == NULL || PyList_Append(out, block) < 0) { Py_XDECREF(block); goto fail; }
        Py_DECREF(block);
        Py_CLEAR(open_name);
        Py_CLEAR(name);
    }
    if (open_name != NULL) {
        PyErr_Format(error, "block %R is never closed", open_name);
        goto fail;
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(name);
    Py_XDECREF(open_name);
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* request_headers(raw): the ASGI scope's headers as {lower-case name: value}, both
 * latin-1 decoded; the first value of a name wins, Cookie headers are joined with "; "
 * (HTTP/2 may split them, RFC 9113 8.2.3). asgi._request_headers_py is the same in
 * Python. None for anything but a list or tuple of (bytes, bytes) pairs with ASCII
 * names: the caller then takes the Python path, which is defined for everything. */
static PyObject *request_headers(PyObject *Py_UNUSED(self), PyObject *raw) {
    if (!PyList_CheckExact(raw) && !PyTuple_CheckExact(raw)) Py_RETURN_NONE;
    PyObject *headers = PyDict_New();
    if (headers == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(raw); i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(raw, i);
        if ((!PyTuple_CheckExact(pair) && !PyList_CheckExact(pair)) || PySequence_Fast_GET_SIZE(pair) != 2) goto other;
        PyObject *name = PySequence_Fast_GET_ITEM(pair, 0), *value = PySequence_Fast_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value)) goto other;
        Py_ssize_t size = PyBytes_GET_SIZE(name);
        const unsigned char *from = (const unsigned char *)PyBytes_AS_STRING(name);
        PyObject *key = PyUnicode_New(size, 127);
        if (key == NULL) goto fail;
        Py_UCS1 *to = PyUnicode_1BYTE_DATA(key);
        for (Py_ssize_t j = 0; j < size; j++) {
            if (from[j] >= 0x80) {  /* str.lower() lowers more than ASCII: leave it to Python */
                Py_DECREF(key);
                goto other;
            }
            to[j] = (Py_UCS1)lower(from[j]);
        }
        PyObject *seen = PyDict_GetItemWithError(headers, key);  /* borrowed */
        if (seen == NULL && PyErr_Occurred()) { Py_DECREF(key); goto fail; }
        if (seen != NULL && !(size == 6 && memcmp(to, "cookie", 6) == 0)) { Py_DECREF(key); continue; }
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
        if (text == NULL) { Py_DECREF(key); goto fail; }
        if (seen != NULL) {
            PyObject *joined = PyUnicode_FromFormat("%U; %U", seen, text);
            Py_DECREF(text);
            if (joined == NULL) { Py_DECREF(key); goto fail; }
            text = joined;
        }
        int failed = PyDict_SetItem(headers, key, text);
        Py_DECREF(key);
        Py_DECREF(text);
        if (failed) goto fail;
    }
    return headers;
other:
    Py_DECREF(headers);
    Py_RETURN_NONE;
fail:
    Py_DECREF(headers);
    return NULL;
}

/* cookie_pairs(cookies, header): the cookies of a Cookie header into the dict ``cookies``,
 * the first of a name winning; the later copies of a name come back as a list of
 * (name, value). cookies._cookie_pairs_py is the same in Python: split on ';', then on a
 * part's first '='; SP and HTAB stripped around the name and the value (RFC 6265 5.2); a
 * value in double quotes unquoted; a part without '=' or with an empty name left out.
 * None, with nothing added, for a header that is not latin-1 text: the caller then takes
 * the Python path, which is defined for every str. */
static int blank(Py_UCS1 c) { return c == ' ' || c == '\t'; }

static PyObject *cookie_pairs(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "cookie_pairs() takes a dict and a str");
        return NULL;
    }
    PyObject *cookies = args[0], *header = args[1];
    if (PyUnicode_KIND(header) != PyUnicode_1BYTE_KIND) Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(header);
    Py_ssize_t len = PyUnicode_GET_LENGTH(header), at = 0;
    PyObject *repeats = PyList_New(0);
    if (repeats == NULL) return NULL;
    while (at <= len) {
        const Py_UCS1 *semi = memchr(s + at, ';', (size_t)(len - at));
        Py_ssize_t end = semi ? semi - s : len;
        const Py_UCS1 *equals = memchr(s + at, '=', (size_t)(end - at));
        if (equals != NULL) {
            Py_ssize_t name_start = at, name_end = equals - s, value_start = name_end + 1, value_end = end;
            while (name_start < name_end && blank(s[name_start])) name_start++;
            while (name_end > name_start && blank(s[name_end - 1])) name_end--;
            while (value_start < value_end && blank(s[value_start])) value_start++;
            while (value_end > value_start && blank(s[value_end - 1])) value_end--;
            if (value_end - value_start >= 2 && s[value_start] == '"' && s[value_end - 1] == '"') {
                value_start++;
                value_end--;
            }
            if (name_end > name_start) {
                PyObject *name = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s + name_start, name_end - name_start);
                if (name == NULL) goto fail;
                PyObject *value = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s + value_start,
                                                            value_end - value_start);
                if (value == NULL) { Py_DECREF(name); goto fail; }
                int seen = PyDict_Contains(cookies, name), failed;
                if (seen < 0) failed = -1;
                else if (seen) {
                    PyObject *pair = PyTuple_Pack(2, name, value);
                    failed = pair == NULL ? -1 : PyList_Append(repeats, pair);
                    Py_XDECREF(pair);
                } else failed = PyDict_SetItem(cookies, name, value);
                Py_DECREF(name);
                Py_DECREF(value);
                if (failed) goto fail;
            }
        }
        if (semi == NULL) break;
        at = end + 1;
    }
    return repeats;
fail:
    Py_DECREF(repeats);
    return NULL;
}

/* A random UUID's string from 16 bytes, its version (4) and variant (RFC 4122) bits set, as
 * uuid.UUID(bytes=..., version=4) writes it; touchpoints.record._uuid4_strings_py is the same
 * in Python (five slices an id, about 0.5 µs: this writes the 36 characters). */
static PyObject *uuid4_string(const unsigned char *from) {
    static const char digits[] = "0123456789abcdef";
    PyObject *id = PyUnicode_New(36, 127);
    if (id == NULL) return NULL;
    Py_UCS1 *to = PyUnicode_1BYTE_DATA(id);
    for (int j = 0, k = 0; j < 16; j++) {
        unsigned char b = from[j];
        if (j == 6) b = (unsigned char)((b & 0x0F) | 0x40);
        else if (j == 8) b = (unsigned char)((b & 0x3F) | 0x80);
        if (j == 4 || j == 6 || j == 8 || j == 10) to[k++] = '-';
        to[k++] = (Py_UCS1)digits[b >> 4];
        to[k++] = (Py_UCS1)digits[b & 0x0F];
    }
    return id;
}

/* stamp_records(records, raw, stamp): touchpoints.record._stamp_records_py in one pass, for
 * a batch of record dicts in the sink's thread (on the request loop's GIL, so every record's
 * Python steps count against the pages being served). A record without an id gets the next
 * 16 bytes of raw as its UUID; its "_t" (the request's epoch seconds) is removed and, where
 * it has no "ts", becomes stamp(_t), asked once for a run of records with the same _t (a
 * page's records share the very float). False, touching nothing, unless every record is
 * exactly a dict: the caller makes its lazy records and asks again; what still declines is
 * stamped in Python. */
static PyObject *id_key, *ts_key, *time_key;

static PyObject *stamp_records(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyBytes_CheckExact(args[1]) || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "stamp_records() takes a list, bytes and a callable");
        return NULL;
    }
    PyObject *records = args[0], *stamp = args[2];
    Py_ssize_t count = PyList_GET_SIZE(records);
    if (PyBytes_GET_SIZE(args[1]) < 16 * count) {
        PyErr_SetString(PyExc_ValueError, "stamp_records() needs 16 random bytes for each record");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++)
        if (!PyDict_CheckExact(PyList_GET_ITEM(records, i))) Py_RETURN_FALSE;
    const unsigned char *from = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    PyObject *last_t = NULL, *last_ts = NULL, *record = NULL, *t = NULL;
    for (Py_ssize_t i = 0; i < count && i < PyList_GET_SIZE(records); i++) {
        record = PyList_GET_ITEM(records, i);
        Py_INCREF(record);  /* stamp() is Python: nothing it does may free the record under us */
        if (!PyDict_CheckExact(record)) {  /* only if stamp() changed the list */
            PyErr_SetString(PyExc_TypeError, "stamp_records(): the list changed while it was stamped");
            goto error;
        }
        PyObject *id = PyDict_GetItemWithError(record, id_key);
        if (id == NULL && PyErr_Occurred()) goto error;
        if (id == NULL || id == Py_None) {
            PyObject *fresh = uuid4_string(from);
            from += 16;
            if (fresh == NULL) goto error;
            int failed = PyDict_SetItem(record, id_key, fresh);
            Py_DECREF(fresh);
            if (failed) goto error;
        }
        t = PyDict_GetItemWithError(record, time_key);
        if (t == NULL && PyErr_Occurred()) goto error;
        if (t != NULL) {
            Py_INCREF(t);
            if (PyDict_DelItem(record, time_key) < 0) goto error;
        }
        PyObject *ts = PyDict_GetItemWithError(record, ts_key);
        if (ts == NULL && PyErr_Occurred()) goto error;
        if (ts == NULL || ts == Py_None) {
            int timed = t != NULL && t != Py_None;  /* no _t: the clock's time, asked for each record */
            if (!timed || t != last_t) {
                PyObject *made = PyObject_CallOneArg(stamp, timed ? t : Py_None);
                if (made == NULL) goto error;
                Py_XSETREF(last_ts, made);
                Py_XSETREF(last_t, timed ? Py_NewRef(t) : NULL);
            }
            if (PyDict_SetItem(record, ts_key, last_ts) < 0) goto error;
        }
        Py_CLEAR(t);
        Py_CLEAR(record);
    }
    Py_XDECREF(last_t);
    Py_XDECREF(last_ts);
    Py_RETURN_TRUE;
error:
    Py_XDECREF(t);
    Py_XDECREF(record);
    Py_XDECREF(last_t);
    Py_XDECREF(last_ts);
    return NULL;
}

/* untrack_records(records): takes each record dict off the garbage collector's list
 * when nothing it holds can lead back to it: every value is an atom (str, int, float,
 * None, bool) or a dict or tuple the collector does not track either, which holds
 * atoms only. That is CPython's own rule for dicts of atoms (it never tracks
 * {"a": 1}), one level deeper: a record holds its UTM and consent dicts of atoms.
 * Queued records wait for the sink's thread for thousands of requests; tracked, each
 * young-generation collection walks them all and promotes them, and the promoted
 * ones set off full collections (about 3 µs per page, see docs/performance.md).
 * Safe by construction: a record that later gets a container value is tracked again
 * by CPython itself (dict insertion re-tracks), and an untracked object can only be
 * kept alive by the collector, never freed by it. Records that hold anything else
 * (a props dict of lists) stay as they are. */
static int atomic_value(PyObject *value) {
    if (!PyObject_IS_GC(value)) return 1;
    return (PyDict_CheckExact(value) || PyTuple_CheckExact(value)) && !PyObject_GC_IsTracked(value);
}

static PyObject *untrack_records(PyObject *Py_UNUSED(self), PyObject *records) {
    if (!PyList_CheckExact(records)) {
        PyErr_SetString(PyExc_TypeError, "untrack_records() takes a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *record = PyList_GET_ITEM(records, i), *key, *value;
        if (!PyDict_CheckExact(record) || !PyObject_GC_IsTracked(record)) continue;
        Py_ssize_t pos = 0;
        int atoms = 1;
        while (atoms && PyDict_Next(record, &pos, &key, &value)) atoms = atomic_value(key) && atomic_value(value);
        if (atoms) PyObject_GC_UnTrack(record);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "Every marker comment outside comments and raw-text elements: (closing, name, start, end)."},
    {"blocks", (PyCFunction)(void (*)(void))blocks, METH_FASTCALL,
     "blocks(body, Block, MarkerError): the marked blocks in page order, paired; MarkerError when malformed."},
    {"request_headers", request_headers, METH_O,
     "request_headers(raw): ASGI headers as {lower-case name: value}; None when only the Python path will do."},
    {"cookie_pairs", (PyCFunction)(void (*)(void))cookie_pairs, METH_FASTCALL,
     "cookie_pairs(cookies, header): a Cookie header into the dict, first of a name wins; the later copies returned."},
    {"stamp_records", (PyCFunction)(void (*)(void))stamp_records, METH_FASTCALL,
     "stamp_records(records, raw, stamp): ids and ts stamped on record dicts; False unless all are dicts."},
    {"untrack_records", untrack_records, METH_O,
     "untrack_records(records): record dicts of atoms (and untracked dicts of atoms) off the collector's list."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) {
    id_key = PyUnicode_InternFromString("id");
    ts_key = PyUnicode_InternFromString("ts");
    time_key = PyUnicode_InternFromString("_t");
    if (id_key == NULL || ts_key == NULL || time_key == NULL) return NULL;
    return PyModule_Create(&module);
}
