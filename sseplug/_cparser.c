/* sseplug._cparser: the parser's bulk path in C (optional; EventParser falls back to its regex).

   bulk(text, pos, end, events, decode, last_id, other, response_type, error_type) -> last_id

   Dispatches the complete blocks of text[pos:end] (which ends with a blank line) exactly as
   sseplug.parser's _BLOCK regex and its loop do: a block of the common shape (an optional
   "id" line without NUL, an optional "event" line, a "data" line, then "data: " lines) becomes
   an SSEResponse appended to events, its data passed through decode (a DataDecodeError naming
   the last event id when decode raises); any other block is handed to other(block, last_id),
   the spec path, which returns the new last event id. Only 1-byte-kind strings are handled:
   for any other kind it returns None at once and the caller uses the regex. */

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
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    if ((pos == -1 || end == -1) && PyErr_Occurred())
        return NULL;
    if (pos < 0 || end > PyUnicode_GET_LENGTH(text) || pos > end) {
        PyErr_SetString(PyExc_ValueError, "bulk(): pos and end out of range");
        return NULL;
    }
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t data_starts[MAX_LINES], data_ends[MAX_LINES];
    Py_INCREF(last);
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
            event = PyUnicode_Substring(text, ev_start, ev_end);
            if (event == NULL)
                goto fail;
        } else {
            event = Py_NewRef(MESSAGE);
        }
        PyObject *data = join_data(text, s, data_starts, data_ends, lines);
        if (data == NULL) {
            Py_DECREF(event);
            goto fail;
        }
        if (decode != Py_None) {
            PyObject *value = PyObject_CallOneArg(decode, data);
            if (value == NULL) {
                Py_DECREF(event);
                Py_DECREF(data);
                decode_error(error_type, last);
                goto fail;
            }
            if (value == Py_None)
                Py_DECREF(value);
            else
                Py_SETREF(data, value);
        }
        PyObject *raw = PyUnicode_Substring(text, p, bend);
        if (raw == NULL) {
            Py_DECREF(event);
            Py_DECREF(data);
            goto fail;
        }
        PyObject *response = response_type->tp_alloc(response_type, 6);
        if (response == NULL) {
            Py_DECREF(event);
            Py_DECREF(data);
            Py_DECREF(raw);
            goto fail;
        }
        PyTuple_SET_ITEM(response, 0, Py_NewRef(last));
        PyTuple_SET_ITEM(response, 1, event);
        PyTuple_SET_ITEM(response, 2, data);
        PyTuple_SET_ITEM(response, 3, Py_NewRef(EMPTY));
        PyTuple_SET_ITEM(response, 4, raw);
        PyTuple_SET_ITEM(response, 5, Py_NewRef(Py_None));
        int appended = PyList_Append(events, response);
        Py_DECREF(response);
        if (appended < 0)
            goto fail;
        p = next;
    }
    return last;
fail:
    Py_DECREF(last);
    return NULL;
}

static PyMethodDef methods[] = {
    {"bulk", (PyCFunction)(void (*)(void))bulk, METH_FASTCALL, "Dispatch the complete blocks of a chunk."},
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
