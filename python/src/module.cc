// mxq._core: the nanobind binding of mxq's C++ API. Thin: argument checks that name the
// offending array, then calls into the library. The Python package (python/mxq/) allocates
// outputs and adds the convenience layer; nothing numeric is reimplemented here.
#include "core.h"
#include "mxq/version.h"

NB_MODULE(_core, m) {
  using namespace mxq;
  using namespace mxq::py;
  m.doc() = "mxq C++ core (nanobind). Use the `mxq` package, not this module directly.";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const mxq::Error& e) {
      const std::string msg = e.what();
      switch (e.status().code()) {
        case StatusCode::kInvalidArgument:
        case StatusCode::kDataLoss: PyErr_SetString(PyExc_ValueError, msg.c_str()); break;
        case StatusCode::kNotFound: PyErr_SetString(PyExc_LookupError, msg.c_str()); break;
        case StatusCode::kUnimplemented: PyErr_SetString(PyExc_NotImplementedError, msg.c_str()); break;
        // Allocation failures (host or device): MemoryError, so callers can free and retry;
        // mxq.torch re-raises it as torch.OutOfMemoryError inside the torch ops.
        case StatusCode::kResourceExhausted: PyErr_SetString(PyExc_MemoryError, msg.c_str()); break;
        default: PyErr_SetString(PyExc_RuntimeError, msg.c_str()); break;
      }
    }
  });

#if defined(MXQ_PY_WITH_CUDA)
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif

  // The version of the CMake project (the one source) and the build's git commit ("" outside
  // a checkout); mxq.__version__ / mxq.__commit__.
  m.attr("__version__") = mxq::version();
  m.attr("__commit__") = mxq::build_commit();

  bind_numerics(m);
  bind_tensors(m);
  bind_oracle(m);
  bind_layers(m);
  bind_shard(m);
  bind_checkpoints(m);
}
