// _core.Search: the flat vectors of a line-search method (L-BFGS, nonlinear CG) and the passes over
// them, each one call over every key, threaded.
//
// The params of all keys are one vector, as in torch.optim.LBFGS: key k's elements are
// [offsets[k], offsets[k+1]) of it, in the param's memory order. Search owns numbered slots, each
// a flat vector of that length in the compute type, allocated when first written: gradients,
// directions, a start point, and the curvature pairs (s, y) of the history. Which slot plays which
// role is the Python class's bookkeeping (fastopt/optim/_search.py), so that a step that fails
// can be undone by forgetting its new slots: nothing here is ever copied to be restored.
//
// Every dot product is summed in pieces fixed by the data (kPiece elements of the flat vector,
// further cut where a key ends), each piece in lanes (kernels/search.hpp), and the pieces in
// order: the same bits for every thread count and SIMD level.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "bindings/active_level.hpp"
#include "bindings/predicates.hpp"
#include "bindings/without_gil.hpp"
#include "runtime/executor.hpp"
#include "runtime/thread_pool.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

// Elements per piece: 64 KiB of float64, so a piece's vectors stay in L2 while it runs, and enough
// pieces for two threads from ~20k elements on.
constexpr std::int64_t kPiece = 8192;
// ~0.25 ns an element and stream: a pass streams 2 to 5 vectors.
constexpr double kNsPerElement = 1.0;

struct Free {
  void operator()(void* p) const { std::free(p); }
};

class Search {
 public:
  Search(const std::string& dtype, const std::vector<std::int64_t>& sizes) {
    if (dtype != "float32" && dtype != "float64")
      throw py::value_error("Search: dtype must be 'float32' or 'float64', not '" + dtype + "'");
    compute_ = dtype == "float32" ? Dtype::kFloat32 : Dtype::kFloat64;
    offsets_.push_back(0);
    for (const std::int64_t size : sizes) {
      if (size < 0) throw py::value_error("Search: sizes must be >= 0");
      offsets_.push_back(offsets_.back() + size);
    }
  }

  std::int64_t size() const { return offsets_.back(); }
  std::string dtype() const { return compute_ == Dtype::kFloat32 ? "float32" : "float64"; }
  int slots() const { return static_cast<int>(slots_.size()); }
  std::int64_t allocated_bytes() const {
    std::int64_t held = 0;
    for (const auto& slot : slots_) held += slot ? size() * bytes_of(compute_) : 0;
    return held;
  }

  // The passes. Each returns (dot with[0], dot with[1], square, magnitude, largest).
  py::tuple gather(int dst, const py::sequence& arrays, const std::vector<int>& with) {
    SearchPass pass = flat(SearchOp::kGather, {dst}, {}, with);
    return result(run_io(pass, views(arrays, false)));
  }
  void place(const py::sequence& arrays, int base, double alpha, int direction) {
    if (base < 0 && direction < 0)
      throw py::value_error("Search.place: give a base slot, a direction slot or both");
    std::vector<int> read;  // a and b: -1 is "absent" here, and only here
    for (const int index : {base, direction})
      if (index >= 0) read.push_back(index);
    SearchPass pass = flat(SearchOp::kPlace, {}, read, {});
    pass.a = base < 0 ? nullptr : slot(base, true);
    pass.b = direction < 0 ? nullptr : slot(direction, true);
    pass.c = nullptr;
    pass.alpha = alpha;
    run_io(pass, views(arrays, true));
  }
  py::tuple pair(int y, int s, int grad, int prev_grad, int direction, double step) {
    SearchPass pass = flat(SearchOp::kPair, {y, s}, {grad, prev_grad, direction}, {});
    pass.with[0] = pass.out2;  // y . s, and y . y as the square
    pass.num_with = 1;
    pass.alpha = step;
    return result(run_flat(pass));
  }
  py::tuple direction(int dst, int grad, double beta, int prev, const std::vector<int>& with) {
    SearchPass pass = prev < 0 ? flat(SearchOp::kNegate, {dst}, {grad}, with)
                               : flat(SearchOp::kNegatePlus, {dst}, {grad, prev}, with);
    pass.beta = beta;
    return result(run_flat(pass));
  }
  py::tuple two_loop(int dst, int grad, const std::vector<int>& s, const std::vector<int>& y,
                     const std::vector<double>& rho, double h_diag);

  py::list read(int slot) const;
  void write(int slot, const py::sequence& arrays);

 private:
  struct View {
    void* data;
    Dtype dtype;
  };

  // Slot `index`: a read one (must_exist) holds values; a written one is made if missing.
  void* slot(int index, bool must_exist) {
    if (index < 0) throw py::value_error("Search: slot " + std::to_string(index) + " is < 0");
    if (index >= (1 << 24)) throw py::value_error("Search: slot index out of range");
    if (index >= slots()) {
      if (must_exist) throw py::value_error("Search: slot " + std::to_string(index) + " is empty");
      slots_.resize(static_cast<std::size_t>(index) + 1);
    }
    auto& held = slots_[static_cast<std::size_t>(index)];
    if (!held) {
      if (must_exist) throw py::value_error("Search: slot " + std::to_string(index) + " is empty");
      const std::size_t bytes =
          static_cast<std::size_t>(std::max<std::int64_t>(size(), 1) * bytes_of(compute_));
      held.reset(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
      if (!held) throw std::bad_alloc();
    }
    return held.get();
  }

  // A pass over slots: `written` are made if missing; `read` and `with` must hold values. Every
  // slot is resolved before the pass runs, so a bad index or a failed allocation writes nothing.
  SearchPass flat(SearchOp op, std::vector<int> written, std::vector<int> read,
                  const std::vector<int>& with) {
    if (with.size() > 2) throw py::value_error("Search: at most two dot products a pass");
    // The kernels read and write through __restrict pointers: a written slot is never read too.
    for (const int w : written) {
      if (w < 0) throw py::value_error("Search: a written slot must be >= 0");
      for (const int r : read)
        if (r == w) throw py::value_error("Search: a pass cannot read the slot it writes");
      for (const int r : with)
        if (r == w) throw py::value_error("Search: a pass cannot read the slot it writes");
    }
    if (written.size() == 2 && written[0] == written[1])
      throw py::value_error("Search: a pair needs two slots");
    SearchPass pass{};
    pass.op = op;
    const void* reads[3] = {};
    for (std::size_t i = 0; i < read.size(); ++i) reads[i] = slot(read[i], true);
    for (std::size_t i = 0; i < with.size(); ++i) pass.with[i] = slot(with[i], true);
    pass.num_with = static_cast<int>(with.size());
    pass.out = written.size() > 0 ? slot(written[0], false) : nullptr;
    pass.out2 = written.size() > 1 ? slot(written[1], false) : nullptr;
    pass.a = reads[0];
    pass.b = reads[1];
    pass.c = reads[2];
    return pass;
  }

  std::vector<View> views(const py::sequence& arrays, bool writeable) const;
  SearchSums run_flat(const SearchPass& pass);
  SearchSums run_io(SearchPass pass, const std::vector<View>& arrays);
  SearchSums run_pieces(const std::vector<std::int64_t>& starts, std::int64_t chunks,
                        const SearchPass& pass, const std::vector<View>* arrays);

  // A NaN's sign and payload depend on the instructions that made it (x86 makes negative NaNs,
  // and which operand a vector add propagates differs between levels): every NaN sum is shown as
  // the one quiet NaN, so that sums have the same bits on every level.
  static double canonical(double x) { return x == x ? x : std::numeric_limits<double>::quiet_NaN(); }
  static py::tuple result(const SearchSums& s) {
    return py::make_tuple(canonical(s.dot[0]), canonical(s.dot[1]), canonical(s.square),
                          canonical(s.magnitude), canonical(s.largest));
  }

  Dtype compute_;
  std::vector<std::int64_t> offsets_;
  std::vector<std::unique_ptr<void, Free>> slots_;
};

std::vector<Search::View> Search::views(const py::sequence& arrays, bool writeable) const {
  const std::size_t keys = offsets_.size() - 1;
  if (arrays.size() != keys)
    throw py::value_error("Search: expected " + std::to_string(keys) + " arrays");
  std::vector<View> out;
  out.reserve(keys);
  for (std::size_t k = 0; k < keys; ++k) {
    ArrayView view;
    const py::handle item = arrays[k];
    if (!usable_view(item.ptr(), writeable ? kWriteable : 0, &view) || is_half(view.dtype) ||
        view.size != offsets_[k + 1] - offsets_[k])
      throw py::value_error("Search: array " + std::to_string(k) +
                            " is not a contiguous float32/float64 array of its key's size" +
                            (writeable ? ", writeable" : ""));
    if (compute_ == Dtype::kFloat32 && view.dtype == Dtype::kFloat64)
      throw py::value_error("Search: a float64 array in a float32 search");
    out.push_back({view.data, view.dtype});
  }
  return out;
}

// Runs `pass` over the pieces of `chunks` chunks of kPiece elements, cut where `starts` says
// (a key's start) when `arrays` is given, and returns the chunks' sums added in order.
SearchSums Search::run_pieces(const std::vector<std::int64_t>& starts, std::int64_t chunks,
                              const SearchPass& pass, const std::vector<View>* arrays) {
  const std::int64_t total = size();
  const std::int64_t element = bytes_of(compute_);
  std::vector<SearchSums> sums(static_cast<std::size_t>(chunks));
  const SearchFn fn = active_level().table().search[static_cast<int>(compute_)];
  auto run_chunk = [&](std::int64_t c) {
    runtime::pieces_of_chunk(starts, total, kPiece, c, [&](const runtime::Piece& piece) {
      const std::int64_t at = starts[piece.task] + piece.from;  // in the flat vectors
      auto shift = [&](const void* p, std::int64_t bytes, std::int64_t index) -> const void* {
        return p == nullptr ? nullptr : static_cast<const char*>(p) + index * bytes;
      };
      SearchPass here = pass;
      here.a = shift(pass.a, element, at);
      here.b = shift(pass.b, element, at);
      here.c = shift(pass.c, element, at);
      here.with[0] = shift(pass.with[0], element, at);
      here.with[1] = shift(pass.with[1], element, at);
      here.out = const_cast<void*>(shift(pass.out, element, at));
      here.out2 = const_cast<void*>(shift(pass.out2, element, at));
      if (arrays != nullptr) {  // the io array is read or written from the key's own start
        const View& view = (*arrays)[piece.task];
        void* io = const_cast<void*>(shift(view.data, bytes_of(view.dtype), piece.from));
        here.io = view.dtype;
        if (pass.op == SearchOp::kGather) {
          here.a = io;
        } else {
          here.out = io;
        }
      }
      fn(here, piece.to - piece.from, &sums[static_cast<std::size_t>(c)]);
    });
  };
  if (chunks == 0) return SearchSums{};
  const double work_ns = static_cast<double>(total) * kNsPerElement;
  run_released_if_large(work_ns, [&] {
    const int threads = runtime::threads_for(work_ns, runtime::num_threads());
    runtime::parallel_for(chunks, threads, runtime::ChunkFn(run_chunk), work_ns,
                          runtime::kJobSearch);
  });
  SearchSums total_sums;
  for (const SearchSums& s : sums) {  // in order: the same bits every time
    total_sums.dot[0] = total_sums.dot[0] + s.dot[0];
    total_sums.dot[1] = total_sums.dot[1] + s.dot[1];
    total_sums.square = total_sums.square + s.square;
    total_sums.magnitude = total_sums.magnitude + s.magnitude;
    total_sums.largest = (total_sums.largest != total_sums.largest || s.largest <= total_sums.largest)
                             ? total_sums.largest
                             : s.largest;
  }
  return total_sums;
}

SearchSums Search::run_flat(const SearchPass& pass) {
  const std::vector<std::int64_t> starts = {0, size()};
  return run_pieces(starts, (size() + kPiece - 1) / kPiece, pass, nullptr);
}

SearchSums Search::run_io(SearchPass pass, const std::vector<View>& arrays) {
  if (pass.op == SearchOp::kPlace) {  // a: the base slot, b: the direction; the param is out
    pass.out = nullptr;
  }
  return run_pieces(offsets_, (size() + kPiece - 1) / kPiece, pass, &arrays);
}

// The two-loop recursion (Nocedal & Wright, Algorithm 7.4) in the order of torch.optim.LBFGS:
// pairs oldest first in s and y, rho[i] = 1 / (y_i . s_i). dst = -H g; each pass is one formula of
// the recursion and, fused into it, the dot product the next formula needs. Returns the last
// pass's sums: dot[0] = g . d (the directional derivative), largest = |d|_inf.
py::tuple Search::two_loop(int dst, int grad, const std::vector<int>& s, const std::vector<int>& y,
                           const std::vector<double>& rho, double h_diag) {
  const std::size_t k = s.size();
  if (y.size() != k || rho.size() != k)
    throw py::value_error("two_loop: s, y and rho must be of one length");
  // Every slot checked before anything is written: the pairs and the gradient hold values, and
  // none of them is the destination.
  slot(grad, true);
  for (std::size_t i = 0; i < k; ++i) {
    slot(s[i], true), slot(y[i], true);
    if (s[i] == dst || y[i] == dst)
      throw py::value_error("two_loop: a pair's slot cannot be the destination");
  }
  if (grad == dst) throw py::value_error("Search: a pass cannot read the slot it writes");
  auto with = [&](int one) { return std::vector<int>{one}; };
  SearchSums sums = run_flat(flat(SearchOp::kNegate, {dst}, {grad}, with(k ? s[k - 1] : grad)));
  std::vector<double> alpha(k);
  for (std::size_t j = k; j-- > 0;) {
    alpha[j] = sums.dot[0] * rho[j];
    SearchPass pass = flat(SearchOp::kAxpy, {dst}, {y[j]}, j ? with(s[j - 1]) : std::vector<int>{});
    pass.alpha = -alpha[j];
    sums = run_flat(pass);
  }
  // When k == 0 the scale is torch's q * 1, and d = -g exactly.
  SearchPass scale = flat(SearchOp::kScale, {dst}, {}, with(k ? y[0] : grad));
  scale.alpha = h_diag;
  sums = run_flat(scale);
  for (std::size_t i = 0; i < k; ++i) {
    const double beta = sums.dot[0] * rho[i];
    SearchPass pass = flat(SearchOp::kAxpy, {dst}, {s[i]}, with(i + 1 < k ? y[i + 1] : grad));
    pass.alpha = alpha[i] - beta;
    sums = run_flat(pass);
  }
  return result(sums);
}

py::list Search::read(int index) const {
  if (index < 0 || index >= slots() || !slots_[static_cast<std::size_t>(index)])
    throw py::value_error("Search: slot " + std::to_string(index) + " is empty");
  const char* data = static_cast<const char*>(slots_[static_cast<std::size_t>(index)].get());
  const std::int64_t element = bytes_of(compute_);
  const char* name = compute_ == Dtype::kFloat32 ? "float32" : "float64";
  py::list out;
  for (std::size_t k = 0; k + 1 < offsets_.size(); ++k) {
    const std::int64_t n = offsets_[k + 1] - offsets_[k];
    py::array array = numpy().attr("empty")(n, name);
    std::copy(data + offsets_[k] * element, data + offsets_[k + 1] * element,
              static_cast<char*>(array.mutable_data()));
    out.append(array);
  }
  return out;
}

void Search::write(int index, const py::sequence& arrays) {
  const std::vector<View> in = views(arrays, false);
  for (std::size_t k = 0; k < in.size(); ++k) {
    if (in[k].dtype != compute_)
      throw py::value_error("Search.write: arrays must be of the search's dtype");
  }
  char* data = static_cast<char*>(slot(index, false));
  const std::int64_t element = bytes_of(compute_);
  for (std::size_t k = 0; k < in.size(); ++k) {
    const char* from = static_cast<const char*>(in[k].data);
    std::copy(from, from + (offsets_[k + 1] - offsets_[k]) * element,
              data + offsets_[k] * element);
  }
}

}  // namespace

void register_search(py::module_& m) {
  // The plain type metaclass, as Updater's: the stub (_core.pyi) can then spell the class.
  py::class_<Search>(m, "Search", py::metaclass(reinterpret_cast<PyObject*>(&PyType_Type)),
                     "The flat vectors of a line-search method over every key of a params dict, "
                     "in numbered slots, and the fused passes over them (fastopt.optim.LBFGS).")
      .def(py::init<const std::string&, const std::vector<std::int64_t>&>(), py::arg("dtype"),
           py::arg("sizes"))
      .def_property_readonly("size", &Search::size)
      .def_property_readonly("dtype", &Search::dtype)
      .def_property_readonly("slots", &Search::slots)
      .def_property_readonly("allocated_bytes", &Search::allocated_bytes)
      .def("gather", &Search::gather, py::arg("dst"), py::arg("arrays"), py::arg("with_") = std::vector<int>{},
           "dst = the arrays (each key's, flat, float32/float64) in the compute type; returns "
           "(dot with with_[0], dot with with_[1], sum of squares, sum of |.|, max |.|).")
      .def("place", &Search::place, py::arg("arrays"), py::arg("base"), py::arg("alpha"),
           py::arg("direction"),
           "arrays = base + alpha * direction, in the compute type; base -1: the arrays "
           "themselves; direction -1: arrays = base.")
      .def("pair", &Search::pair, py::arg("y"), py::arg("s"), py::arg("grad"),
           py::arg("prev_grad"), py::arg("direction"), py::arg("step"),
           "y = grad - prev_grad, s = step * direction; returns (y.s, 0, y.y, sum |y|, max |y|).")
      .def("direction", &Search::direction, py::arg("dst"), py::arg("grad"), py::arg("beta"),
           py::arg("prev"), py::arg("with_") = std::vector<int>{},
           "dst = -grad + beta * prev (prev -1: -grad); returns its sums.")
      .def("two_loop", &Search::two_loop, py::arg("dst"), py::arg("grad"), py::arg("s"),
           py::arg("y"), py::arg("rho"), py::arg("h_diag"),
           "dst = -H grad by the two-loop recursion over the pairs (oldest first); returns "
           "(grad.dst, 0, dst.dst, sum |dst|, max |dst|).")
      .def("read", &Search::read, py::arg("slot"), "A copy of a slot: one flat array per key.")
      .def("write", &Search::write, py::arg("slot"), py::arg("arrays"),
           "The arrays (one flat array per key, of the compute type) into a slot.");
}

}  // namespace fastopt::bindings
