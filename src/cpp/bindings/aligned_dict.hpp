// Finding params' keys in another dict by walking it alongside params.
#pragma once

#include <pybind11/pybind11.h>

namespace fastopt::bindings {

namespace py = pybind11;

// Finds params' keys in another dict (grads, a state dict) by walking it alongside params.
// Those dicts almost always hold the same keys in the same order (states are inserted in params'
// order; networks build grads in it), so the entry at the same position usually has the key: a
// pointer or string compare instead of a hash lookup (~60 instead of ~145 instructions; a third of
// the cost of a 22-array update was lookups). At the first mismatch it falls back to real lookups
// for the rest of the call. Either way the value found is dict[key], since keys are unique.
class AlignedDict {
 public:
  AlignedDict() = default;
  explicit AlignedDict(PyObject* dict) : dict_(dict) {}

  // dict[key], or nullptr (with no Python error set) when absent; raises on a lookup error.
  PyObject* find(PyObject* key) {
    if (aligned_) {
      PyObject* k;
      PyObject* v;
      if (PyDict_Next(dict_, &position_, &k, &v) && same_key(k, key)) return v;
      aligned_ = false;
    }
    PyObject* found = PyDict_GetItemWithError(dict_, key);
    if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
    return found;
  }

 private:
  // Equal keys that can be compared without running Python code: the same object, or equal
  // exact str (the usual 'W1'). Anything else counts as a mismatch, answered by a real lookup.
  static bool same_key(PyObject* a, PyObject* b) {
    if (a == b) return true;
    return PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b) &&
           PyObject_Hash(a) == PyObject_Hash(b) && PyUnicode_Compare(a, b) == 0;
  }

  PyObject* dict_ = nullptr;
  Py_ssize_t position_ = 0;
  bool aligned_ = true;
};

}  // namespace fastopt::bindings
