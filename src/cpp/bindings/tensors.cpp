#include "bindings/tensors.hpp"

namespace fastopt::bindings {
namespace {

// fastopt._tensors, imported on first use: a Python module of the package, so that this file
// needs no torch header and the package never imports torch.
const py::object& helpers() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
  return storage.call_once_and_store_result([] { return py::module_::import("fastopt._tensors"); })
      .get_stored();
}

// Python's float and int are never tensors: a scalar param or grad skips the helper's call.
bool surely_not_a_tensor(py::handle value) {
  return PyFloat_Check(value.ptr()) || PyLong_Check(value.ptr());
}

}  // namespace

py::object tensor_view(py::handle value, const char* dict_name, py::handle key, bool writes) {
  if (surely_not_a_tensor(value)) return py::object();
  py::object view = helpers().attr("as_array")(value, dict_name, key, writes);
  if (view.is_none()) return py::object();
  return view;
}

void mark_written(const std::vector<py::object>& tensors) {
  if (tensors.empty()) return;
  py::list list(0);
  for (const py::object& tensor : tensors) list.append(tensor);
  helpers().attr("written")(list);
}

}  // namespace fastopt::bindings
