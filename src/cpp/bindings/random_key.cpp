#include "bindings/random_key.hpp"

#include <string>

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

// splitmix64's finalizer (Steele et al.): a bijection of 64 bits with full avalanche.
std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

// FNV-1a of the repr's UTF-8, mixed with the step and the seed. python/fastopt/_reference_half.py
// computes the same.
std::uint32_t random_key(std::uint64_t seed, std::uint64_t step, PyObject* key) {
  const std::string text = py::repr(key);
  std::uint64_t fnv = 0xCBF29CE484222325ull;
  for (const char c : text) fnv = (fnv ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  return static_cast<std::uint32_t>(splitmix64(seed ^ splitmix64(step ^ splitmix64(fnv))));
}

}  // namespace fastopt::bindings
