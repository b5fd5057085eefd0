/* sseplug._cparser: the parser's bulk path in C (optional; EventParser falls back to its regex).

   bulk(text, pos, end, events, decode, last_id, other, response_type, error_type) -> last_id

   Dispatches the complete blocks of text[pos:end] (which ends with a blank line) exactly as
   sseplug.parser's _BLOCK regex and its loop do: a block of the common shape (an optional
   "id" line without NUL, an optional "event" line, a "data" line, then "data: " lines) becomes
   an SSEResponse appended to events, its data passed through decode (a DataDecodeError naming
   the last event id when decode raises); any other block is handed to other(block, last_id),
   the spec path, which returns the new last event id. Only 1-byte-kind strings are handled:
   for any other kind it returns None at once and the caller uses the regex.

   decode may also be a tuple (loads, error): the json plugin's decoder (sseplug.builtin.json's
   make_decoder) done here, without a Python frame per event: the same exact checks of numbers
   and literals (json_worth), then loads(data), an exception of type error meaning "not JSON"
   (the text stays), like a None answer.

   An event whose data cannot hold a reference (text, a number) is created untracked by the
   garbage collector, as the collector itself would untrack it at its first pass (a tuple of
   atomic values): the young generation is then not walked event by event. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *MESSAGE; /* "message", the default event type */
static PyObject *EMPTY;   /* "" */

static int
starts(const Py_UCS1 *s, Py_ssize_t at, Py_ssize_t end, const char *prefix, Py_ssize_t n)
{
    return end - at >= n && memcmp(s + at, prefix, (size_t)n) == 0;
}

static Py_ssize_t
line_end(const Py_UCS1 *s, Py_ssize_t at, Py_ssize_t end)
{
    const Py_UCS1 *nl = memchr(s + at, '\n', (size_t)(end - at));
    return nl ? nl - s : end;
}

/* data = the data lines' values joined by LF: one copy, in the smallest kind that holds it */
static PyObject *
join_data(PyObject *text, const Py_UCS1 *s, Py_ssize_t *starts_, Py_ssize_t *ends, Py_ssize_t count)
{
    if (count == 1)
        return PyUnicode_Substring(text, starts_[0], ends[0]);
    Py_ssize_t length = count - 1;
    Py_UCS1 high = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        length += ends[i] - starts_[i];
        if (!PyUnicode_IS_ASCII(text))
            for (Py_ssize_t k = starts_[i]; k < ends[i]; k++)
                high |= s[k];
    }
    PyObject *data = PyUnicode_New(length, high & 0x80 ? 255 : 127);
    if (data == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(data);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i)
            *out++ = '\n';
        memcpy(out, s + starts_[i], (size_t)(ends[i] - starts_[i]));
        out += ends[i] - starts_[i];
    }
    return data;
}

static PyObject *
decode_error(PyObject *error_type, PyObject *last_id)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    PyObject *error = PyObject_CallOneArg(error_type, last_id);
    if (error != NULL && value != NULL) {
        Py_INCREF(value);
        PyException_SetCause(error, value); /* steals */
        PyException_SetContext(error, value); /* steals our original reference */
        value = NULL;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return NULL;
}

/* sseplug.builtin.json's checks, on the text's 1-byte characters: whether data may be JSON
   (else the decoder's answer is "not JSON" without calling it). Mirrors make_decoder's decode:
   empty -> no; the first character after JSON whitespace picks the check: a number (its
   _NUMBER regex in full), a literal (the text stripped is true/false/null), or an object,
   array or string (left to loads). */
static int
json_space(Py_UCS1 c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
json_digit(Py_UCS1 c)
{
    return c >= '0' && c <= '9';
}

static int
json_number(const Py_UCS1 *s, Py_ssize_t n) /* _NUMBER.fullmatch: ws -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? ws */
{
    Py_ssize_t i = 0;
    while (i < n && json_space(s[i]))
        i++;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < n && json_digit(s[i]))
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        if (i + 1 >= n || !json_digit(s[i + 1]))
            return 0;
        i += 2;
        while (i < n && json_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        Py_ssize_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j >= n || !json_digit(s[j]))
            return 0;
        while (j < n && json_digit(s[j]))
            j++;
        i = j;
    }
    while (i < n && json_space(s[i]))
        i++;
    return i == n;
}

static int
json_worth(PyObject *data)
{
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(data);
    Py_ssize_t n = PyUnicode_GET_LENGTH(data), i = 0, e = n;
    while (i < n && json_space(s[i]))
        i++;
    if (i == n)
        return 0;
    switch (s[i]) {
    case '{': case '[': case '"':
        return 1;
    case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
        return json_number(s, n);
    case 't': case 'f': case 'n':
        while (e > i && json_space(s[e - 1]))
            e--;
        return (e - i == 4 && (memcmp(s + i, "true", 4) == 0 || memcmp(s + i, "null", 4) == 0))
            || (e - i == 5 && memcmp(s + i, "false", 5) == 0);
    default:
        return 0;
    }
}

/* data decoded: a new reference to the value, or to data itself when the answer is "keep the
   text" (None, or not JSON); NULL with an exception when the decoder raised otherwise */
static PyObject *
decoded(PyObject *decode, PyObject *data)
{
    PyObject *value;
    if (PyTuple_CheckExact(decode)) { /* (loads, error): the json plugin's decoder */
        if (!json_worth(data))
            return Py_NewRef(data);
        value = PyObject_CallOneArg(PyTuple_GET_ITEM(decode, 0), data);
        if (value == NULL) {
            if (!PyErr_ExceptionMatches(PyTuple_GET_ITEM(decode, 1)))
                return NULL;
            PyErr_Clear();
            return Py_NewRef(data);
        }
    } else {
        value = PyObject_CallOneArg(decode, data);
        if (value == NULL)
            return NULL;
    }
    if (value == Py_None) {
        Py_DECREF(value);
        return Py_NewRef(data);
    }
    return value;
}

/* Batched JSON decoding (decode = (loads, error)): consecutive events whose data is one line
   holding exactly one JSON object, array or string by its brackets and quotes (json_single)
   wait in a batch of up to BATCH; the batch is decoded with one loads("[d1,d2,...]"). For a
   strict JSON decoder that list, when it parses and has one item per event, holds exactly the
   values loads(d1), loads(d2)... would give: each di is one bracket-balanced value and the
   grammar parses it the same inside the array; anything else (an exception of any type, another
   length, another type) sends the batch through decoded() one event at a time, the per-event
   path with its exact answers and errors. The batch is decoded before any other block is handled
   (the spec path, an event decoded alone) and at the end: events and errors stay in stream order. */
#define BATCH 1024 /* a 64 KiB read holds ~700 small events: one loads per read (1.17x over 64, parser alone) */

typedef struct {
    PyObject *id, *event, *raw; /* new references */
    Py_ssize_t start, end;      /* the data: text[start:end] */
} Pending;

static int
json_single(const Py_UCS1 *s, Py_ssize_t i, Py_ssize_t n)
{
    while (i < n && json_space(s[i]))
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '"') {
        for (i++; i < n && s[i] != '"'; i++)
            if (s[i] == '\\')
                i++;
        if (i >= n)
            return 0;
        i++;
    } else if (s[i] == '{' || s[i] == '[') {
        Py_ssize_t depth = 0;
        int string = 0, closed = 0;
        for (; i < n; i++) {
            Py_UCS1 c = s[i];
            if (string) {
                if (c == '\\')
                    i++;
                else if (c == '"')
                    string = 0;
            } else if (c == '"') {
                string = 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                closed = 1;
                i++;
                break;
            }
        }
        if (!closed)
            return 0;
    } else {
        return 0;
    }
    while (i < n && json_space(s[i]))
        i++;
    return i == n;
}

static void
pending_clear(Pending *pending, Py_ssize_t from, Py_ssize_t count)
{
    for (Py_ssize_t i = from; i < count; i++) {
        Py_DECREF(pending[i].id);
        Py_DECREF(pending[i].event);
        Py_DECREF(pending[i].raw);
    }
}

static int
append_event(PyObject *events, PyTypeObject *response_type, PyObject *id, PyObject *event, PyObject *data,
             PyObject *raw) /* steals event, data and raw */
{
    PyObject *response = response_type->tp_alloc(response_type, 6);
    if (response == NULL) {
        Py_DECREF(event);
        Py_DECREF(data);
        Py_DECREF(raw);
        return -1;
    }
    PyTuple_SET_ITEM(response, 0, Py_NewRef(id));
    PyTuple_SET_ITEM(response, 1, event);
    PyTuple_SET_ITEM(response, 2, data);
    PyTuple_SET_ITEM(response, 3, Py_NewRef(EMPTY));
    PyTuple_SET_ITEM(response, 4, raw);
    PyTuple_SET_ITEM(response, 5, Py_NewRef(Py_None));
    if (!PyObject_IS_GC(data))
        PyObject_GC_UnTrack(response); /* atomic values only: no cycle can pass through it */
    int appended = PyList_Append(events, response);
    Py_DECREF(response);
    return appended;
}

/* the batch decoded and its events appended, in order; -1 with an exception (a decode error as
   DataDecodeError of its event's id, the events before it appended) */
static int
flush(PyObject *text, Pending *pending, Py_ssize_t *count, PyObject *decode, PyObject *events,
      PyTypeObject *response_type, PyObject *error_type)
{
    Py_ssize_t n = *count, i;
    *count = 0;
    if (n == 0)
        return 0;
    PyObject *values = NULL;
    if (n > 1) {
        const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
        Py_ssize_t length = n + 1;
        Py_UCS1 high = 0;
        for (i = 0; i < n; i++) {
            length += pending[i].end - pending[i].start;
            if (!PyUnicode_IS_ASCII(text))
                for (Py_ssize_t k = pending[i].start; k < pending[i].end; k++)
                    high |= s[k];
        }
        PyObject *batch = PyUnicode_New(length, high & 0x80 ? 255 : 127);
        if (batch == NULL) {
            pending_clear(pending, 0, n);
            return -1;
        }
        Py_UCS1 *out = PyUnicode_1BYTE_DATA(batch);
        *out++ = '[';
        for (i = 0; i < n; i++) {
            if (i)
                *out++ = ',';
            memcpy(out, s + pending[i].start, (size_t)(pending[i].end - pending[i].start));
            out += pending[i].end - pending[i].start;
        }
        *out = ']';
        values = PyObject_CallOneArg(PyTuple_GET_ITEM(decode, 0), batch);
        Py_DECREF(batch);
        if (values == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                pending_clear(pending, 0, n);
                return -1;
            }
            PyErr_Clear(); /* not all JSON, or more than the decoder takes: one by one */
        } else if (!PyList_CheckExact(values) || PyList_GET_SIZE(values) != n) {
            Py_CLEAR(values);
        }
    }
    for (i = 0; i < n; i++) {
        Pending *p = &pending[i];
        PyObject *data;
        if (values != NULL && PyList_GET_ITEM(values, i) != Py_None) {
            data = Py_NewRef(PyList_GET_ITEM(values, i));
        } else {
            PyObject *string = PyUnicode_Substring(text, p->start, p->end);
            if (string == NULL)
                goto fail;
            data = values != NULL ? Py_NewRef(string) : decoded(decode, string);
            Py_DECREF(string);
            if (data == NULL) {
                decode_error(error_type, p->id);
                goto fail;
            }
        }
        PyObject *id = p->id;
        int appended = append_event(events, response_type, id, p->event, data, p->raw);
        Py_DECREF(id);
        if (appended < 0) {
            i++;
            goto fail;
        }
    }
    Py_XDECREF(values);
    return 0;
fail:
    pending_clear(pending, i, n);
    Py_XDECREF(values);
    return -1;
}

#define MAX_LINES 64 /* data lines of a common block handled here; more go to the spec path */

static PyObject *
bulk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "bulk() takes 9 arguments");
        return NULL;
    }
    PyObject *text = args[0], *events = args[3], *decode = args[4], *last = args[5], *other = args[6];
    PyTypeObject *response_type = (PyTypeObject *)args[7];
    PyObject *error_type = args[8];
    if (!PyUnicode_Check(text) || PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND || !PyList_Check(events))
        Py_RETURN_NONE;
    if (PyTuple_CheckExact(decode) && PyTuple_GET_SIZE(decode) != 2) {
        PyErr_SetString(PyExc_TypeError, "bulk(): decode as a tuple is (loads, error)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    if ((pos == -1 || end == -1) && PyErr_Occurred())
        return NULL;
    if (pos < 0 || end > PyUnicode_GET_LENGTH(text) || pos > end) {
        PyErr_SetString(PyExc_ValueError, "bulk(): pos and end out of range");
        return NULL;
    }
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t data_starts[MAX_LINES], data_ends[MAX_LINES];
    Pending *pending = NULL; /* BATCH entries, allocated at the first event to batch */
    Py_ssize_t npending = 0;
    int batching = PyTuple_CheckExact(decode); /* the json plugin's decoder: one loads per batch */
    Py_INCREF(last);
    PyObject *last_event = NULL; /* the previous event type: a stream repeats a few, shared */
    Py_ssize_t p = pos;
    while (p < end) {
        if (s[p] == '\n') { /* a blank line between blocks: nothing to dispatch */
            p++;
            continue;
        }
        /* the block: up to the first blank line (text[pos:end] ends with one) */
        Py_ssize_t bend = p;
        for (;;) {
            bend = line_end(s, bend, end);
            if (bend + 1 >= end || s[bend + 1] == '\n')
                break;
            bend++;
        }
        Py_ssize_t next = bend + 2 <= end ? bend + 2 : end;
        /* the common shape? */
        Py_ssize_t at = p, e, id_start = -1, id_end = -1, ev_start = -1, ev_end = -1, lines = 0;
        int common = 0;
        if (starts(s, at, bend, "id:", 3)) {
            e = line_end(s, at, bend);
            id_start = at + 3 + (at + 3 < e && s[at + 3] == ' ');
            id_end = e;
            if (memchr(s + id_start, '\0', (size_t)(id_end - id_start)) == NULL && e < bend)
                at = e + 1;
            else
                at = -1;
        }
        if (at >= 0 && starts(s, at, bend, "event:", 6)) {
            e = line_end(s, at, bend);
            ev_start = at + 6 + (at + 6 < e && s[at + 6] == ' ');
            ev_end = e;
            at = e < bend ? e + 1 : -1;
        }
        if (at >= 0 && starts(s, at, bend, "data:", 5)) {
            e = line_end(s, at, bend);
            data_starts[0] = at + 5 + (at + 5 < e && s[at + 5] == ' ');
            data_ends[0] = e;
            lines = 1;
            common = 1;
            at = e;
            while (at < bend) { /* at is a line end: more "data: " lines, or not the common shape */
                at++;
                if (lines == MAX_LINES || !starts(s, at, bend, "data: ", 6)) {
                    common = 0;
                    break;
                }
                e = line_end(s, at, bend);
                data_starts[lines] = at + 6;
                data_ends[lines] = e;
                lines++;
                at = e;
            }
        }
        if (!common) { /* the spec path, line by line, in Python */
            if (flush(text, pending, &npending, decode, events, response_type, error_type) < 0)
                goto fail;
            PyObject *block = PyUnicode_Substring(text, p, bend);
            if (block == NULL)
                goto fail;
            PyObject *result = PyObject_CallFunctionObjArgs(other, block, last, NULL);
            Py_DECREF(block);
            if (result == NULL)
                goto fail;
            Py_SETREF(last, result);
            p = next;
            continue;
        }
        if (id_start >= 0) {
            PyObject *id = PyUnicode_Substring(text, id_start, id_end);
            if (id == NULL)
                goto fail;
            Py_SETREF(last, id);
        }
        PyObject *event;
        if (ev_start >= 0 && ev_end > ev_start) {
            Py_ssize_t length = ev_end - ev_start;
            if (last_event != NULL && PyUnicode_GET_LENGTH(last_event) == length
                && memcmp(PyUnicode_1BYTE_DATA(last_event), s + ev_start, (size_t)length) == 0) {
                event = Py_NewRef(last_event);
            } else {
                event = PyUnicode_Substring(text, ev_start, ev_end);
                if (event == NULL)
                    goto fail;
                Py_XSETREF(last_event, Py_NewRef(event));
            }
        } else {
            event = Py_NewRef(MESSAGE);
        }
        if (batching && lines == 1 && json_single(s, data_starts[0], data_ends[0])) { /* decoded with its batch */
            if (pending == NULL && (pending = PyMem_Malloc(BATCH * sizeof(Pending))) == NULL) {
                PyErr_NoMemory();
                Py_DECREF(event);
                goto fail;
            }
            PyObject *raw = PyUnicode_Substring(text, p, bend);
            if (raw == NULL) {
                Py_DECREF(event);
                goto fail;
            }
            pending[npending] = (Pending){Py_NewRef(last), event, raw, data_starts[0], data_ends[0]};
            if (++npending == BATCH && flush(text, pending, &npending, decode, events, response_type, error_type) < 0)
                goto fail;
            p = next;
            continue;
        }
        if (npending && flush(text, pending, &npending, decode, events, response_type, error_type) < 0) {
            Py_DECREF(event);
            goto fail;
        }
        PyObject *data = join_data(text, s, data_starts, data_ends, lines);
        if (data == NULL) {
            Py_DECREF(event);
            goto fail;
        }
        if (decode != Py_None) {
            PyObject *value = decoded(decode, data);
            if (value == NULL) {
                Py_DECREF(event);
                Py_DECREF(data);
                decode_error(error_type, last);
                goto fail;
            }
            Py_SETREF(data, value);
        }
        PyObject *raw = PyUnicode_Substring(text, p, bend);
        if (raw == NULL) {
            Py_DECREF(event);
            Py_DECREF(data);
            goto fail;
        }
        if (append_event(events, response_type, last, event, data, raw) < 0)
            goto fail;
        p = next;
    }
    if (flush(text, pending, &npending, decode, events, response_type, error_type) < 0)
        goto fail;
    PyMem_Free(pending);
    Py_XDECREF(last_event);
    return last;
fail:
    pending_clear(pending, 0, npending);
    PyMem_Free(pending);
    Py_XDECREF(last_event);
    Py_DECREF(last);
    return NULL;
}

/* whole_chunks(buffer, pos, out) -> pos: sseplug._chunked.ChunkedDecoder._whole_chunks in C (the
   same stops, the same pieces): the complete "SIZE CRLF data CRLF" chunks at pos, SIZE plain hex
   digits within 18 bytes of the chunk's start (its CRLF included) and not "0", each chunk's data
   appended to out; returns where it stopped, for the decoder's state machine to go on there. */
static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static PyObject *
whole_chunks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "whole_chunks(buffer: bytes, pos: int, out: list)");
        return NULL;
    }
    PyObject *buffer = args[0], *out = args[2];
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buffer);
    Py_ssize_t size = PyBytes_GET_SIZE(buffer);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "whole_chunks(): pos out of range");
        return NULL;
    }
    for (;;) {
        /* buffer.find(b"\r\n", pos, pos + 18): the CRLF must lie within the window */
        Py_ssize_t window = size - pos < 18 ? size - pos : 18, line_end = -1;
        for (Py_ssize_t i = pos; i + 1 < pos + window; i++)
            if (b[i] == '\r' && b[i + 1] == '\n') {
                line_end = i;
                break;
            }
        if (line_end <= pos) /* none, or no digits */
            break;
        unsigned long long length = 0; /* at most 16 hex digits: no overflow */
        int plain = 1;
        for (Py_ssize_t i = pos; i < line_end; i++) {
            int digit = hex_value(b[i]);
            if (digit < 0) {
                plain = 0;
                break;
            }
            length = length * 16 + (unsigned long long)digit;
        }
        if (!plain || (line_end - pos == 1 && b[pos] == '0'))
            break; /* an extension, spaces, a bad line; or the last chunk */
        Py_ssize_t start = line_end + 2;
        if (length > (unsigned long long)(size - start) || size - start - (Py_ssize_t)length < 2)
            break; /* incomplete */
        Py_ssize_t end = start + (Py_ssize_t)length;
        if (b[end] != '\r' || b[end + 1] != '\n')
            break; /* bad framing: the state machine reports it */
        PyObject *piece = PyBytes_FromStringAndSize((const char *)b + start, end - start);
        if (piece == NULL)
            return NULL;
        int appended = PyList_Append(out, piece);
        Py_DECREF(piece);
        if (appended < 0)
            return NULL;
        pos = end + 2;
    }
    return PyLong_FromSsize_t(pos);
}

static PyMethodDef methods[] = {
    {"bulk", (PyCFunction)(void (*)(void))bulk, METH_FASTCALL, "Dispatch the complete blocks of a chunk."},
    {"whole_chunks", (PyCFunction)(void (*)(void))whole_chunks, METH_FASTCALL,
     "The complete chunks of a chunked body at pos, appended to out; where it stopped."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cparser", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__cparser(void)
{
    MESSAGE = PyUnicode_InternFromString("message");
    EMPTY = PyUnicode_New(0, 0);
    if (MESSAGE == NULL || EMPTY == NULL)
        return NULL;
    return PyModule_Create(&module);
}
