// mxq run MODEL: every MX layer of a model on the chosen backend, with seeded random
// activations, compared with cpu-reference; prints error and throughput per layer.
// --dump DIR writes each layer's input and the backend's output, so that other front ends (the
// Python package's tests) can check that they compute the same bits.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "commands.h"
#include "mxq/layers.h"
#include "mxq/numerics.h"
#include "mxq/pipeline.h"
#include "mxq/select.h"

namespace mxq::cli {
namespace {

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();
}

double out_value(const std::vector<uint8_t>& y, DType d, size_t i) {
  return num::load_dense(y.data(), d, int64_t(i));
}

// Runs `l` on `b` (prepared once, run `iters` times, timed) and returns its output.
template <typename Prep, typename Run>
std::vector<uint8_t> timed(const Problem& p, int64_t out_cols, int iters, Prep prep, Run run,
                           double* seconds) {
  auto w = prep();
  std::vector<uint8_t> y(size_t(p.m * out_cols * dtype_bytes(p.out)));
  throw_if_error(run(*w, y));  // warm-up, also the result
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) throw_if_error(run(*w, y));
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
  return y;
}

// Raw little-endian row-major bytes to `path`.
void write_raw(const std::string& path, const void* data, size_t bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), std::streamsize(bytes));
  if (!f) throw Error(Status(StatusCode::kInternal, "cannot write " + path));
}

int run_model(const std::string& path, int64_t tokens, const std::string& backend, int iters,
              uint32_t seed, const std::vector<std::string>& only, const std::string& dump,
              bool keep_going) {
  const io::Checkpoint ck = get(io::Checkpoint::open(path));
  const io::ModelInfo info = get(io::read_model(ck));
  const Backend* ref = find_backend("cpu-reference");
  SelectOptions o;
  o.override_backend = backend;
  std::printf("run %s: %zu MX weights, %lld tokens, seed %u\n", path.c_str(), info.weights.size(),
              (long long)tokens, seed);
  std::printf("%-40s %-6s %-14s %11s %10s %10s\n", "layer", "op", "backend", "rel.err", "us/call",
              "weight GB/s");
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  int bad = 0, refused = 0, ran = 0;
  const std::vector<LayerSpec> layers = get(model_layers(ck, info, tokens));
  for (const std::string& name : only)
    if (std::none_of(layers.begin(), layers.end(), [&](const LayerSpec& l) { return l.name == name; }))
      throw Error(Status(StatusCode::kNotFound, "--layer " + name + ": no such MX layer in " + path));
  for (const LayerSpec& l : layers) {
    // The random stream advances only for the layers run, so a layer's x depends on --layer.
    if (!only.empty() && std::find(only.begin(), only.end(), l.name) == only.end()) continue;
    const Problem& p = l.problem;
    auto sel = select_backend(p, this_device(), o);
    if (!sel.ok() && keep_going) {  // the forced backend cannot run this layer: say why, go on
      ++refused;
      std::printf("%-40s %-6s %-14s refused: %s\n", l.name.c_str(), op_name(p.op), backend.c_str(),
                  sel.status().message().c_str());
      // (the random stream still advances: the next layers get the x they get without it)
      for (int64_t i = 0; i < p.m * (p.op == Op::kMoE ? p.n : p.k); ++i) (void)nd(rng);
      continue;
    }
    const Backend* b = get(std::move(sel)).backend;
    const int64_t in_cols = p.op == Op::kMoE ? p.n : p.k;
    const int64_t out_cols = p.n;
    std::vector<uint16_t> x(size_t(p.m * in_cols));
    for (auto& v : x) v = num::f32_to_bf16(nd(rng));
    const DenseView xv{x.data(), DType::kBF16, p.m, in_cols};
    double secs = 0, ref_secs = 0;
    std::vector<uint8_t> got, want;
    uint64_t weight_bytes = l.w->bytes() + (l.w2 ? l.w2->bytes() : 0);
    if (p.op == Op::kLinear) {
      const LinearWeights lw = get(linear_weights(ck, l));
      auto prep_for = [&](const Backend* be) {
        return [&, be] { return get(be->prepare_linear(p, lw)); };
      };
      auto run_for = [&](const Backend* be) {
        return [&, be](const PreparedWeights& w, std::vector<uint8_t>& y) {
          return be->run_linear(p, w, xv, {y.data(), p.out, p.m, out_cols});
        };
      };
      got = timed(p, out_cols, iters, prep_for(b), run_for(b), &secs);
      want = timed(p, out_cols, 0, prep_for(ref), run_for(ref), &ref_secs);
    } else {
      const MoEWeights mw = get(moe_weights(ck, l));
      weight_bytes = l.w->bytes() + l.w2->bytes() + (l.w3 ? l.w3->bytes() : 0);  // assembled: now filled
      const std::vector<float> logits = get(router_logits(ck, l, x));
      const std::vector<float> cbias = get(correction_bias(ck, l));
      const MoERouting rt{{logits.data(), DType::kF32, p.m, p.moe.experts}, f32_view(cbias),
                          nullptr};
      auto prep_for = [&](const Backend* be) {
        return [&, be] { return get(be->prepare_moe(p, mw)); };
      };
      auto run_for = [&](const Backend* be) {
        return [&, be](const PreparedWeights& w, std::vector<uint8_t>& y) {
          return be->run_moe(p, w, xv, rt, {y.data(), p.out, p.m, out_cols});
        };
      };
      got = timed(p, out_cols, iters, prep_for(b), run_for(b), &secs);
      want = timed(p, out_cols, 0, prep_for(ref), run_for(ref), &ref_secs);
    }
    double se = 0, ss = 0;
    for (size_t i = 0; i < size_t(p.m * out_cols); ++i) {
      const double a = out_value(got, p.out, i), r = out_value(want, p.out, i);
      se += (a - r) * (a - r);
      ss += r * r;
    }
    const double rel = std::sqrt(se / std::max(ss, 1e-300));
    if (!dump.empty()) {  // x: BF16 [M, in_cols]; y: the backend's output, p.out [M, N]
      write_raw(dump + "/" + l.name + ".x.bf16", x.data(), x.size() * sizeof(uint16_t));
      write_raw(dump + "/" + l.name + ".y." + dtype_name(p.out), got.data(), got.size());
    }
    ++ran;
    if (!(rel <= 2e-2)) ++bad;
    std::printf("%-40s %-6s %-14s %11.2e %10.1f %10.2f\n", l.name.c_str(), op_name(p.op),
                std::string(b->name()).c_str(), rel, secs * 1e6,
                secs > 0 ? double(weight_bytes) / secs / 1e9 : 0.0);
  }
  if (bad > 0) {
    std::printf("%d layer(s) differ from cpu-reference by more than 2e-2 (norm-wise)\n", bad);
    return 2;
  }
  if (refused > 0 && ran == 0) {
    std::printf("no layer ran: %s refused all %d (--keep-going)\n", backend.c_str(), refused);
    return 3;
  }
  if (refused > 0) {
    std::printf("ok: every layer run matches cpu-reference within 2e-2 (norm-wise relative); %d "
                "refused by %s (--keep-going)\n", refused, backend.c_str());
    return 0;
  }
  std::printf("ok: every layer matches cpu-reference within 2e-2 (norm-wise relative)\n");
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app) {
  static std::string model, backend;
  static int64_t tokens = 1;
  static int iters = 5;
  static uint32_t seed = 1;
  static std::vector<std::string> only;
  static std::string dump;
  static bool keep_going = false;
  auto* c = app.add_subcommand("run", "Run every MX layer of a model on the selected backend "
                                      "and compare with cpu-reference");
  c->add_option("model", model, "quantized model directory or safetensors file")->required();
  c->add_option("--tokens", tokens, "tokens (M) per call")->check(CLI::PositiveNumber);
  c->add_option("--backend", backend, "force a backend (default: the oracle's choice)");
  c->add_option("--iters", iters, "timed calls per layer")->check(CLI::Range(1, 100000));
  c->add_option("--seed", seed, "seed of the random activations");
  c->add_option("--layer", only, "run only this layer (repeatable; default: every MX layer)");
  c->add_option("--dump", dump, "write each layer's input and output to DIR/<layer>.x.bf16 and "
                                "DIR/<layer>.y.<dtype> (raw row-major bytes)")
      ->check(CLI::ExistingDirectory);
  c->add_flag("--keep-going", keep_going,
              "with --backend: list the layers that backend cannot run as 'refused: <reason>' "
              "and run the others (default: stop at the first)");
  c->callback([] {
    exit_code() = run_model(model, tokens, backend, iters, seed, only, dump, keep_going);
  });
}

}  // namespace mxq::cli
