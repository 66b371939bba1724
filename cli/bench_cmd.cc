// mxq bench: times a problem (the flags of `explain`) or each MX layer of a model on every
// backend that can run it on this machine (the oracle's candidate list; one with --backend),
// so a user can check the oracle's choice on their own hardware.
//
// Per backend: prepare once, `--warmup` untimed calls (fewer once `--max-time` is spent), then up to `--iters` timed calls (fewer
// once `--max-time` is spent, never fewer than min(3, iters)); median, min, max and the
// quartiles of the per-call times. Bytes per call are what the layer must move at least: its
// weights (MoE: only the experts the routing selects), x, y, bias and router logits; FLOPs are
// 2*M*N*K (linear) and 6*M*topk*H*I (MoE: gate/up and down). The rate is compared with a copy
// bandwidth measured here (host: a multi-threaded memcpy; GPU: a device-to-device copy; both
// count bytes read + written). CPU backends run on host memory, CUDA backends (names
// "cuda-...") on device buffers timed with CUDA events.
//
// Problem mode uses random weights (codes with realistic E8M0 scales 118..126, no NaN/Inf
// codes; the kernels' speed does not depend on the values) and random activations and router
// logits. --json PATH writes the report (temp name + rename); a progress line goes to stderr
// only when it is a terminal.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "mxq/layers.h"
#include "mxq/numerics.h"
#include "mxq/pipeline.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#include "mxq/version.h"
#if defined(MXQ_CLI_WITH_CUDA)
#include "bench_gpu.h"
#endif

namespace mxq::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();
}

bool is_gpu_backend(const Backend* b) { return b->name().substr(0, 4) == "cuda"; }

// ---- settings --------------------------------------------------------------------------------

struct Settings {
  int warmup = 3, iters = 20;
  double max_time = 2.0;   // seconds of timed calls per backend and case
  int64_t bw_mib = 256;    // copy-bandwidth buffer size
  uint32_t seed = 1;
  std::string backend;     // only this one
  std::vector<std::string> skip;  // not these (e.g. cpu-reference on a large layer)
};

// ---- statistics ------------------------------------------------------------------------------

struct Stats {
  int samples = 0;
  double median = 0, min = 0, max = 0, p25 = 0, p75 = 0;  // seconds
};

double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * double(sorted.size() - 1);
  const size_t i = size_t(pos);
  const double f = pos - double(i);
  return i + 1 < sorted.size() ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

Stats stats_of(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  Stats s;
  s.samples = int(t.size());
  s.min = t.front();
  s.max = t.back();
  s.median = quantile(t, 0.5);
  s.p25 = quantile(t, 0.25);
  s.p75 = quantile(t, 0.75);
  return s;
}

// ---- measured copy bandwidth -----------------------------------------------------------------

// All threads each memcpy their slice of `bytes` (best of 3 after a warm-up): read + written / s.
double host_copy_bandwidth(size_t bytes, int threads) {
  std::vector<uint8_t> a(bytes, 1), b(bytes, 0);  // touched, so no page faults are timed
  const size_t slice = (bytes / size_t(threads) + 63) & ~size_t(63);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int i = 0; i < threads; ++i)
      ts.emplace_back([&, i] {
        const size_t lo = std::min(bytes, size_t(i) * slice), hi = std::min(bytes, lo + slice);
        std::memcpy(b.data() + lo, a.data() + lo, hi - lo);
      });
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && s > 0) best = std::max(best, 2.0 * double(bytes) / s);
  }
  if (b[bytes / 2] != 1) throw Error(Status(StatusCode::kInternal, "host copy bandwidth: bad copy"));
  return best;
}

// ---- synthetic inputs ------------------------------------------------------------------------

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
};

// Random element codes without NaN / Inf (E4M3: S.1111.111; E5M2: exponent 11111).
void fill_codes(ElemType e, uint8_t* p, size_t n, Rng& r) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = r.next();
    for (size_t j = i; j < std::min(n, i + 8); ++j, v >>= 8) {
      uint8_t c = uint8_t(v);
      if (e == ElemType::kE4M3 && (c & 0x7F) == 0x7F) c ^= 1;
      if (e == ElemType::kE5M2 && (c & 0x7C) == 0x7C) c &= uint8_t(~0x40);
      p[j] = c;
    }
  }
}

struct MXStore {
  std::vector<uint8_t> packed, scales;
  MXWeightView view;
};

// Problem mode: the synthetic weights' rows must be whole 32-blocks (checked before measuring).
void check_weight_dims(const Problem& p) {
  throw_if_error(p.validate());
  auto need = [&](int64_t k, const char* what) {
    if (k % 32 != 0)
      throw Error(invalid_argument(p.to_string() + ": " + what + " = " + std::to_string(k) +
                                   " is not a multiple of 32 (MX weights are 32-blocks along it)"));
  };
  if (p.op == Op::kLinear) {
    need(p.k, "K");
  } else {
    need(p.n, "H (--n)");
    need(p.k, "I (--k)");
  }
}

MXStore random_mx(ElemType e, int64_t batch, int64_t n, int64_t k, Rng& r) {
  MXStore m;
  m.packed.resize(size_t(batch * n * packed_bytes(e, k)));
  m.scales.resize(size_t(batch * n * (k / 32)));
  fill_codes(e, m.packed.data(), m.packed.size(), r);
  for (auto& s : m.scales) s = uint8_t(118 + r.next() % 9);
  m.view = {e, batch, n, k, m.packed.data(), m.scales.data()};
  return m;
}

std::vector<float> random_normal(size_t n, std::mt19937& g, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

std::vector<uint8_t> to_dense(const std::vector<float>& v, DType d) {
  std::vector<uint8_t> out(v.size() * size_t(dtype_bytes(d)));
  for (size_t i = 0; i < v.size(); ++i) {
    if (d == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = d == DType::kBF16 ? num::f32_to_bf16(v[i]) : num::f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// ---- one case: a problem with its weights and per-call inputs --------------------------------

struct Case {
  std::string name;
  Problem p;
  LinearWeights lw;
  MoEWeights mw;
  std::vector<MXStore> mx;                   // synthetic weights (problem mode)
  std::vector<std::vector<uint8_t>> dense;   // synthetic biases (problem mode)
  LayerSpec layer;                           // model mode: keeps assembled experts alive
  std::vector<uint8_t> x;                    // [M, in] in act_input_dtype(p.act)
  std::vector<float> logits;                 // MoE [M, E]
  std::vector<float> correction_bias;        // MoE [E] F32, or empty
  uint64_t bytes = 0;
  bool bytes_exact = true;
  double flops = 0;
};

uint64_t mx_bytes(const MXWeightView& w) {
  return w.packed == nullptr ? 0
                             : uint64_t(w.batch * w.n) * uint64_t(packed_bytes(w.elem, w.k) + w.k / 32);
}
uint64_t dense_bytes(const DenseView& v) {
  return v.data == nullptr ? 0 : uint64_t(v.rows * v.cols) * uint64_t(dtype_bytes(v.dtype));
}

// Bytes and FLOPs of one call (see the file comment).
void account(Case& c) {
  const Problem& p = c.p;
  const uint64_t io = c.x.size() + uint64_t(p.m * p.n) * uint64_t(dtype_bytes(p.out));
  if (p.op == Op::kLinear) {
    c.bytes = mx_bytes(c.lw.w) + dense_bytes(c.lw.bias) + io;
    c.flops = 2.0 * double(p.m) * double(p.n) * double(p.k);
    return;
  }
  const MoEWeights& w = c.mw;
  const int64_t e = p.moe.experts;
  const uint64_t all = mx_bytes(w.w13) + mx_bytes(w.w1) + mx_bytes(w.w3) + mx_bytes(w.w2) +
                       dense_bytes(w.bias13) + dense_bytes(w.bias1) + dense_bytes(w.bias3) +
                       dense_bytes(w.bias2);
  const uint64_t per_expert = all / uint64_t(e);
  int64_t used = std::min(e, p.m * p.moe.topk);  // an upper bound for grouped routing
  if (p.moe.routing != Routing::kSigmoidGroupedTopK) {
    // Softmax-then-top-k and top-k-then-softmax select the k largest logits of each token.
    std::vector<char> hit(size_t(e), 0);
    std::vector<int64_t> idx(static_cast<size_t>(e));
    for (int64_t t = 0; t < p.m; ++t) {
      const float* l = c.logits.data() + t * e;
      for (int64_t i = 0; i < e; ++i) idx[size_t(i)] = i;
      std::partial_sort(idx.begin(), idx.begin() + p.moe.topk, idx.end(),
                        [l](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
      for (int64_t j = 0; j < p.moe.topk; ++j) hit[size_t(idx[size_t(j)])] = 1;
    }
    used = std::count(hit.begin(), hit.end(), 1);
  } else {
    c.bytes_exact = false;
  }
  c.bytes = per_expert * uint64_t(used) + io + c.logits.size() * 4 + c.correction_bias.size() * sizeof(float);
  c.flops = 6.0 * double(p.m) * double(p.moe.topk) * double(p.n) * double(p.k);
}

Case synthetic_case(const Problem& p, const Settings& s) {
  check_weight_dims(p);
  Case c;
  c.name = "problem";
  c.p = p;
  Rng r(s.seed);
  std::mt19937 g(s.seed);
  if (p.op == Op::kLinear) {
    c.mx.push_back(random_mx(p.weight, 1, p.n, p.k, r));
    c.lw.w = c.mx.back().view;
    if (p.bias) {
      c.dense.push_back(to_dense(random_normal(size_t(p.n), g), DType::kF32));
      c.lw.bias = {c.dense.back().data(), DType::kF32, 1, p.n};
    }
    c.x = to_dense(random_normal(size_t(p.m * p.k), g), act_input_dtype(p.act));
  } else {
    const int64_t e = p.moe.experts, h = p.n, i = p.k;
    c.mx.reserve(3);
    if (p.moe.layout == io::GateUpLayout::kSeparate) {
      c.mx.push_back(random_mx(p.weight, e, i, h, r));
      c.mw.w1 = c.mx.back().view;
      c.mx.push_back(random_mx(p.weight, e, i, h, r));
      c.mw.w3 = c.mx.back().view;
    } else {
      c.mx.push_back(random_mx(p.weight, e, 2 * i, h, r));
      c.mw.w13 = c.mx.back().view;
    }
    c.mx.push_back(random_mx(p.weight, e, h, i, r));
    c.mw.w2 = c.mx.back().view;
    if (p.bias) {
      c.dense.reserve(3);
      auto bias = [&](int64_t rows, int64_t cols) {
        c.dense.push_back(to_dense(random_normal(size_t(rows * cols), g, 0.1f), DType::kF32));
        return DenseView{c.dense.back().data(), DType::kF32, rows, cols};
      };
      if (p.moe.layout == io::GateUpLayout::kSeparate) {
        c.mw.bias1 = bias(e, i);
        c.mw.bias3 = bias(e, i);
      } else {
        c.mw.bias13 = bias(e, 2 * i);
      }
      c.mw.bias2 = bias(e, h);
    }
    c.x = to_dense(random_normal(size_t(p.m * h), g), act_input_dtype(p.act));
    c.logits = random_normal(size_t(p.m * e), g);
  }
  account(c);
  return c;
}

Case layer_case(const io::Checkpoint& ck, const LayerSpec& l, const Settings& s, uint32_t salt) {
  Case c;
  c.name = l.name;
  c.p = l.problem;
  c.layer = l;
  std::mt19937 g(s.seed + salt);
  const int64_t in_cols = c.p.op == Op::kMoE ? c.p.n : c.p.k;
  const std::vector<float> xf = random_normal(size_t(c.p.m * in_cols), g);
  c.x = to_dense(xf, act_input_dtype(c.p.act));
  if (c.p.op == Op::kLinear) {
    c.lw = get(linear_weights(ck, c.layer));
  } else {
    c.mw = get(moe_weights(ck, c.layer));
    std::vector<uint16_t> xb(xf.size());
    for (size_t i = 0; i < xf.size(); ++i) xb[i] = num::f32_to_bf16(xf[i]);
    c.logits = get(router_logits(ck, c.layer, xb));
    c.correction_bias = get(correction_bias(ck, c.layer));
  }
  account(c);
  return c;
}

// ---- timing one backend ----------------------------------------------------------------------

struct Progress {
  bool on = isatty(fileno(stderr)) != 0;
  int total = 0, done = 0;
  void show(const std::string& what) const {
    if (on) std::fprintf(stderr, "\r\033[K[%d/%d] %s", done + 1, total, what.c_str());
  }
  void clear() const {
    if (on) std::fprintf(stderr, "\r\033[K");
  }
};

struct Result {
  const Backend* backend = nullptr;
  std::string where;    // "host" or the GPU
  double prepare_s = 0;
  Stats t;
  std::string error;    // the backend accepted the problem but failed
};

Result time_backend(const Case& c, const Backend* b, const Settings& s, const Progress& prog) {
  Result res;
  res.backend = b;
  const Problem& p = c.p;
  const bool gpu = is_gpu_backend(b);
  res.where = "host";
  const std::string label = c.name + " on " + std::string(b->name());
  try {
    prog.show(label + ": prepare");
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<PreparedWeights> w =
        get(p.op == Op::kLinear ? b->prepare_linear(p, c.lw) : b->prepare_moe(p, c.mw));
    res.prepare_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t ybytes = size_t(p.m * p.n * dtype_bytes(p.out));
    std::vector<uint8_t> y_host(ybytes);
    const void* xp = c.x.data();
    const void* lp = c.logits.data();
    const void* cp = c.correction_bias.empty() ? nullptr : c.correction_bias.data();
    void* yp = y_host.data();
#if defined(MXQ_CLI_WITH_CUDA)
    gpu::Buffer dx, dl, dc, dy;
    if (gpu) {
      res.where = gpu::current_device_name();
      dx = gpu::Buffer(c.x.data(), c.x.size());
      xp = dx.get();
      if (p.op == Op::kMoE) {
        dl = gpu::Buffer(c.logits.data(), c.logits.size() * sizeof(float));
        lp = dl.get();
        if (cp != nullptr) {
          dc = gpu::Buffer(cp, c.correction_bias.size() * sizeof(float));
          cp = dc.get();
        }
      }
      dy = gpu::Buffer(ybytes);
      yp = dy.get();
      gpu::synchronize();
    }
    // Only for a CUDA backend: a CUDA build on a machine without a GPU has no context to make
    // events in, and its CPU backends must still be timed.
    std::optional<gpu::Timer> timer;
    if (gpu) timer.emplace();
#else
    if (gpu) throw Error(Status(StatusCode::kInternal, "a CUDA backend in a CLI built without CUDA"));
#endif
    const DenseView xv{xp, act_input_dtype(p.act), p.m, p.op == Op::kMoE ? p.n : p.k};
    const DenseMutView yv{yp, p.out, p.m, p.n};
    MoERouting rt;
    rt.router_logits = {lp, DType::kF32, p.m, p.moe.experts};
    rt.correction_bias = f32_view(c.correction_bias);
    rt.correction_bias.data = cp;
    auto call = [&] {
      throw_if_error(p.op == Op::kLinear ? b->run_linear(p, *w, xv, yv)
                                         : b->run_moe(p, *w, xv, rt, yv));
    };
    prog.show(label + ": warm-up");
    // Warm-up calls stop early too once they took --max-time (at least one runs).
    const auto w0 = std::chrono::steady_clock::now();
    for (int i = 0; i < s.warmup; ++i) {
      call();
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count() > s.max_time) break;
    }
#if defined(MXQ_CLI_WITH_CUDA)
    if (gpu) gpu::synchronize();
#endif
    std::vector<double> t;
    double spent = 0;
    const int at_least = std::min(3, s.iters);
    for (int i = 0; i < s.iters; ++i) {
      double secs = 0;
#if defined(MXQ_CLI_WITH_CUDA)
      if (gpu) {
        timer->start();
        call();
        secs = timer->stop();
      } else
#endif
      {
        const auto a = std::chrono::steady_clock::now();
        call();
        secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
      }
      t.push_back(secs);
      spent += secs;
      if (spent > s.max_time && int(t.size()) >= at_least) break;
      if (i % 4 == 3) prog.show(label + ": " + std::to_string(i + 1) + "/" + std::to_string(s.iters));
    }
    res.t = stats_of(t);
  } catch (const Error& e) {
    res.error = e.what();
  }
  return res;
}

// ---- reporting -------------------------------------------------------------------------------

struct Bandwidth {
  double host = 0;   // bytes / s
  double gpu = 0;
  std::string gpu_name;
};

json result_json(const Case& c, const Result& r, const Bandwidth& bw) {
  json j = {{"backend", std::string(r.backend->name())}, {"where", r.where}};
  if (!r.error.empty()) {
    j["error"] = r.error;
    return j;
  }
  const double peak = is_gpu_backend(r.backend) ? bw.gpu : bw.host;
  const double rate = double(c.bytes) / r.t.median;
  j.update({{"samples", r.t.samples},
            {"prepare_ms", r.prepare_s * 1e3},
            {"median_us", r.t.median * 1e6},
            {"min_us", r.t.min * 1e6},
            {"max_us", r.t.max * 1e6},
            {"p25_us", r.t.p25 * 1e6},
            {"p75_us", r.t.p75 * 1e6},
            {"spread_pct", 100.0 * (r.t.p75 - r.t.p25) / r.t.median},
            {"gb_per_s", rate / 1e9},
            {"pct_of_bandwidth", peak > 0 ? 100.0 * rate / peak : 0.0},
            {"tflop_per_s", c.flops / r.t.median / 1e12}});
  return j;
}

void print_result(const Case& c, const Result& r, const Bandwidth& bw, const std::string& mark) {
  if (!r.error.empty()) {
    std::printf("  %-14s error: %s\n", std::string(r.backend->name()).c_str(), r.error.c_str());
    return;
  }
  const double peak = is_gpu_backend(r.backend) ? bw.gpu : bw.host;
  const double rate = double(c.bytes) / r.t.median;
  std::printf("  %-14s %11.1f %10.1f %10.1f %6.1f%% %10.2f %6.1f%% %9.4f %4d%s\n",
              std::string(r.backend->name()).c_str(), r.t.median * 1e6, r.t.min * 1e6,
              r.t.max * 1e6, 100.0 * (r.t.p75 - r.t.p25) / r.t.median, rate / 1e9,
              peak > 0 ? 100.0 * rate / peak : 0.0, c.flops / r.t.median / 1e12, r.t.samples,
              mark.c_str());
}

// Writes `text` to `path` through "<path>.tmp-<pid>" + rename, creating missing parents.
void write_file_atomic(const std::string& path, const std::string& text) {
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw Error(invalid_argument("--json " + path + ": cannot create its directory: " + ec.message()));
  }
  const fs::path tmp = path + ".tmp-" + std::to_string(getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) {
      fs::remove(tmp, ec);
      throw Error(invalid_argument("--json " + path + ": cannot write " + tmp.string()));
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error(invalid_argument("--json " + path + ": cannot rename into place: " + ec.message()));
  }
}

// ---- the command -----------------------------------------------------------------------------

struct Plan {
  std::vector<Problem> problems;   // problem mode: one
  std::string model;               // model mode
  int64_t tokens = 1;
  std::string act;                 // model mode: --act override ("" = the checkpoint's)
  std::vector<std::string> only;   // model mode: --layer
};

int run_bench(const Plan& plan, const Settings& s, const std::string& json_path) {
  const Device& dev = this_device();
  // The cases (model mode: the layers, opened now so that a bad path fails before measuring).
  // The layers point into the checkpoint and its model info: both live until the end.
  std::unique_ptr<io::Checkpoint> ck;
  std::unique_ptr<io::ModelInfo> info;
  std::vector<LayerSpec> layers;
  std::string model_desc;
  if (!plan.model.empty()) {
    ck = std::make_unique<io::Checkpoint>(get(io::Checkpoint::open(plan.model)));
    info = std::make_unique<io::ModelInfo>(get(io::read_model(*ck)));
    model_desc = info->format + ", " + info->scheme;
    for (LayerSpec l : get(model_layers(*ck, *info, plan.tokens))) {
      if (!plan.only.empty() && std::find(plan.only.begin(), plan.only.end(), l.name) == plan.only.end())
        continue;
      if (!plan.act.empty()) {
        l.problem.act = get(parse_act_key(plan.act));
        l.problem.out = act_input_dtype(l.problem.act);
      }
      layers.push_back(std::move(l));
    }
    for (const std::string& name : plan.only)
      if (std::none_of(layers.begin(), layers.end(), [&](const LayerSpec& l) { return l.name == name; }))
        throw Error(Status(StatusCode::kNotFound, "--layer " + name + ": no such MX layer in " + plan.model));
    if (layers.empty()) throw Error(Status(StatusCode::kNotFound, "no MX layers in " + plan.model));
  }
  const size_t n_cases = plan.model.empty() ? plan.problems.size() : layers.size();

  // Which backends run each case: the oracle's candidates that are eligible (or --backend).
  struct Choice {
    std::vector<const Backend*> run;
    std::vector<Candidate> skipped;
    std::string oracle, how, error;
  };
  auto choose = [&](const Problem& p) {
    Choice ch;
    SelectOptions all;
    all.use_env = false;
    all.warn = false;
    const StatusOr<Selection> sel = select_backend(p, dev, all);
    if (!sel.ok()) {
      ch.error = sel.status().message();
      return ch;
    }
    SelectOptions dflt;  // what a caller gets: env overrides included
    dflt.warn = false;
    const StatusOr<Selection> o = select_backend(p, dev, dflt);
    ch.oracle = o.ok() ? std::string(o.value().backend->name()) : "";
    ch.how = o.ok() ? o.value().how : o.status().message();
    if (!s.backend.empty()) {
      SelectOptions forced = all;
      forced.override_backend = s.backend;
      ch.run.push_back(get(select_backend(p, dev, forced)).backend);  // cannot run: an error
      return ch;
    }
    for (const Candidate& c : sel.value().candidates) {
      if (std::find(s.skip.begin(), s.skip.end(), c.backend->name()) != s.skip.end()) {
        ch.skipped.push_back({c.backend, false, "--skip"});
        continue;
      }
      if (c.eligible)
        ch.run.push_back(c.backend);
      else
        ch.skipped.push_back(c);
    }
    return ch;
  };
  // Fail on a bad --backend / --skip before measuring anything.
  std::string names;
  for (const Backend* b : backends()) names += (names.empty() ? "" : ", ") + std::string(b->name());
  for (const std::string& k : s.skip)
    if (find_backend(k) == nullptr)
      throw Error(invalid_argument("--skip " + k + ": unknown backend (built-in: " + names + ")"));
  if (!s.backend.empty()) {
    if (find_backend(s.backend) == nullptr)
      throw Error(invalid_argument("--backend " + s.backend + ": unknown backend (built-in: " + names + ")"));
    for (size_t i = 0; i < n_cases; ++i) choose(plan.model.empty() ? plan.problems[i] : layers[i].problem);
  }
  std::vector<Choice> choices;
  bool need_host = false, need_gpu = false;
  int total_runs = 0;
  for (size_t i = 0; i < n_cases; ++i) {
    choices.push_back(choose(plan.model.empty() ? plan.problems[i] : layers[i].problem));
    for (const Backend* b : choices.back().run) {
      (is_gpu_backend(b) ? need_gpu : need_host) = true;
      ++total_runs;
    }
  }

  (void)need_gpu;  // used with the CUDA part only
  Bandwidth bw;
  const size_t bw_bytes = size_t(s.bw_mib) << 20;
  json bw_json = json::array();
  std::printf("mxq %s bench\ndevice   ", mxq::version());
  {
    std::string d = dev.to_string();
    for (size_t i = d.find('\n'); i != std::string::npos && i + 1 < d.size(); i = d.find('\n', i + 1))
      d.insert(i + 1, "         ");
    std::printf("%s", d.c_str());
  }
  if (need_host) {
    bw.host = host_copy_bandwidth(bw_bytes, dev.cpu_threads);
    std::printf("copy     host: %.1f GB/s (memcpy %lld MiB, %d threads, read + write)\n", bw.host / 1e9,
                (long long)s.bw_mib, dev.cpu_threads);
    bw_json.push_back({{"where", "host"}, {"method", "memcpy, all threads, read + write bytes"},
                       {"bytes", bw_bytes}, {"threads", dev.cpu_threads}, {"gb_per_s", bw.host / 1e9}});
  }
#if defined(MXQ_CLI_WITH_CUDA)
  if (need_gpu) {
    bw.gpu = gpu::copy_bandwidth(bw_bytes, 5);
    bw.gpu_name = gpu::current_device_name();
    std::printf("copy     %s: %.1f GB/s (device-to-device %lld MiB, read + write)\n", bw.gpu_name.c_str(),
                bw.gpu / 1e9, (long long)s.bw_mib);
    bw_json.push_back({{"where", bw.gpu_name}, {"method", "cudaMemcpy device-to-device, read + write bytes"},
                       {"bytes", bw_bytes}, {"gb_per_s", bw.gpu / 1e9}});
  }
#endif
  if (!plan.model.empty())
    std::printf("model    %s (%s), %lld tokens\n", plan.model.c_str(), model_desc.c_str(),
                (long long)plan.tokens);
  std::printf("timing   %d warm-up, up to %d timed calls or %.2g s per backend\n", s.warmup, s.iters,
              s.max_time);

  Progress prog;
  prog.total = total_runs;
  json cases = json::array();
  int rc = 0;
  for (size_t i = 0; i < n_cases; ++i) {
    const Choice& ch = choices[i];
    const Problem& p = plan.model.empty() ? plan.problems[i] : layers[i].problem;
    std::printf("\n%s  %s\n", plan.model.empty() ? "problem" : layers[i].name.c_str(), p.to_string().c_str());
    json cj = {{"name", plan.model.empty() ? std::string("problem") : layers[i].name},
               {"problem", p.to_string()},
               {"op", op_name(p.op)},
               {"m", p.m}, {"n", p.n}, {"k", p.k}};
    if (p.op == Op::kMoE) cj.update({{"experts", p.moe.experts}, {"topk", p.moe.topk}});
    json skipped = json::array();
    for (const Candidate& c : ch.skipped)
      skipped.push_back({{"backend", std::string(c.backend->name())}, {"reason", c.reason}});
    cj["skipped"] = skipped;
    if (!ch.error.empty()) {
      std::printf("  no backend: %s\n", ch.error.c_str());
      cj["error"] = ch.error;
      cases.push_back(cj);
      rc = 1;
      continue;
    }
    Case c = plan.model.empty() ? synthetic_case(p, s) : layer_case(*ck, layers[i], s, uint32_t(i));
    std::printf("  bytes %.3f MB%s, %.4g GFLOP per call; oracle: %s (%s)\n", double(c.bytes) / 1e6,
                c.bytes_exact ? "" : " (upper bound: grouped routing)", c.flops / 1e9,
                ch.oracle.empty() ? "none" : ch.oracle.c_str(), ch.how.c_str());
    std::printf("  %-14s %11s %10s %10s %7s %10s %7s %9s %4s\n", "backend", "median us", "min us",
                "max us", "spread", "GB/s", "%bw", "TFLOP/s", "n");
    std::vector<Result> rs;
    for (const Backend* b : ch.run) {
      rs.push_back(time_backend(c, b, s, prog));
      ++prog.done;
    }
    prog.clear();
    const Result* fastest = nullptr;
    for (const Result& r : rs)
      if (r.error.empty() && (fastest == nullptr || r.t.median < fastest->t.median)) fastest = &r;
    json bj = json::array();
    for (const Result& r : rs) {
      std::string mark;
      if (r.backend->name() == ch.oracle) mark += "oracle";
      if (&r == fastest && rs.size() > 1) mark += mark.empty() ? "fastest" : ", fastest";
      print_result(c, r, bw, mark.empty() ? "" : " " + mark);
      bj.push_back(result_json(c, r, bw));
      if (!r.error.empty()) rc = 1;
    }
    for (const Candidate& k : ch.skipped)
      std::printf("  %-14s not run: %s\n", std::string(k.backend->name()).c_str(), k.reason.c_str());
    if (fastest != nullptr && rs.size() > 1 && !ch.oracle.empty()) {
      if (fastest->backend->name() == ch.oracle) {
        std::printf("  the oracle's choice %s was the fastest\n", ch.oracle.c_str());
      } else {
        const Result* o = nullptr;
        for (const Result& r : rs)
          if (r.backend->name() == ch.oracle) o = &r;
        if (o != nullptr && o->error.empty())
          std::printf("  %s was %.2fx faster than the oracle's choice %s\n",
                      std::string(fastest->backend->name()).c_str(), o->t.median / fastest->t.median,
                      ch.oracle.c_str());
      }
    }
    cj.update({{"bytes", c.bytes},
               {"bytes_exact", c.bytes_exact},
               {"flops", c.flops},
               {"oracle", {{"backend", ch.oracle.empty() ? json() : json(ch.oracle)}, {"how", ch.how}}},
               {"fastest", fastest ? json(std::string(fastest->backend->name())) : json()},
               {"backends", bj}});
    cases.push_back(cj);
  }
  if (!json_path.empty()) {
    json report = {{"mxq_version", mxq::version()},
                   {"commit", mxq::build_commit()},
                   {"device", {{"description", dev.to_string()},
                               {"cpu_threads", dev.cpu_threads},
                               {"gpus", [&] {
                                  json g = json::array();
                                  for (const CudaDeviceInfo& d : dev.gpus)
                                    g.push_back({{"index", d.index}, {"name", d.name},
                                                 {"cc", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)}});
                                  return g;
                                }()}}},
                   {"bandwidth", bw_json},
                   {"settings", {{"warmup", s.warmup}, {"iters", s.iters}, {"max_time_s", s.max_time},
                                 {"seed", s.seed}, {"backend", s.backend.empty() ? json() : json(s.backend)},
                                 {"skip", s.skip}}},
                   {"model", plan.model.empty() ? json() : json(plan.model)},
                   {"cases", cases}};
    write_file_atomic(json_path, report.dump(2) + "\n");
    std::printf("\nwrote %s\n", json_path.c_str());
  }
  return rc;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  static ProblemArgs a;
  static ProblemOptions popts;
  static std::string model, json_path;
  static std::vector<std::string> only;
  static int64_t tokens = 1;
  static Settings s;
  auto* c = app.add_subcommand("bench", "Time a problem (or each layer of a model) on every backend "
                                        "that can run it here, against the measured bandwidth");
  c->add_option("model", model, "model directory or safetensors file (instead of --op ...)");
  popts = add_problem_options(c, a);
  c->add_option("--tokens", tokens, "model mode: tokens (M) per layer call")->check(CLI::PositiveNumber);
  c->add_option("--layer", only, "model mode: only this layer (repeatable)");
  c->add_option("--backend", s.backend, "only this backend (one that cannot run the problem is an error)");
  c->add_option("--skip", s.skip, "do not time this backend (repeatable), e.g. cpu-reference on "
                                  "a large layer");
  c->add_option("--warmup", s.warmup, "untimed calls per backend first")->check(CLI::Range(0, 100000));
  c->add_option("--iters", s.iters, "timed calls per backend (at most)")->check(CLI::Range(1, 1000000));
  c->add_option("--max-time", s.max_time, "seconds of timed calls per backend before stopping early")
      ->check(CLI::PositiveNumber);
  c->add_option("--bw-mib", s.bw_mib, "buffer of the copy-bandwidth measurement, MiB")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  c->add_option("--seed", s.seed, "seed of the random weights and activations");
  c->add_option("--json", json_path, "write the report as JSON to this file");
  c->callback([] {
    Plan plan;
    if (!model.empty()) {
      for (const CLI::Option* o : popts.shape)
        if (o->count() > 0)
          throw Error(invalid_argument(o->get_name() + " describes a problem; with a model the layers "
                                       "come from the checkpoint (use --tokens, --act, --layer)"));
      plan.model = model;
      plan.tokens = tokens;
      plan.act = popts.act->count() > 0 ? a.act : std::string();
      plan.only = only;
    } else {
      if (!only.empty()) throw Error(invalid_argument("--layer needs a model"));
      plan.problems.push_back(make_problem(a));
      check_weight_dims(plan.problems.back());
    }
    exit_code() = run_bench(plan, s, json_path);
  });
}

}  // namespace mxq::cli
