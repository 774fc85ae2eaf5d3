// A C face for the parts of libtorch's c10d (the engine under
// torch.distributed) that data-parallel training needs: the TCPStore
// rendezvous, process groups (Gloo on CPU, NCCL on CUDA when built with
// SLOWFAST_NCCL), the collectives, DDP's own gradient Reducer, and an
// all-reduce that autograd differentiates (for sync-BN).
//
// Every function catches what libtorch throws and hands the message back
// through `err` (free it with sf_free_string): no exception crosses into
// Rust. Tensors are passed as `at::Tensor*`, which is what tch's `C_tensor`
// pointers are.

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef SLOWFAST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using c10::intrusive_ptr;

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
  }
  return out;
}

template <typename F>
auto guard(char** err, F&& f) -> decltype(f()) {
  *err = nullptr;
  try {
    return f();
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
  } catch (...) {
    *err = copy_string("unknown C++ exception in c10d");
  }
  return decltype(f())();
}

std::vector<at::Tensor> tensors_of(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

// c10d's timeout for one collective: the Work is waited on with it, so a
// peer that hangs (not only one that died) ends in an error.
void wait_for(const intrusive_ptr<c10d::Work>& work) { work->wait(); }

}  // namespace

struct sf_store {
  intrusive_ptr<c10d::Store> store;
};

struct sf_group {
  intrusive_ptr<c10d::ProcessGroup> pg;
};

struct sf_reducer {
  std::shared_ptr<c10d::Reducer> reducer;
};

// Sum over the group forward; the gradient of every rank's copy of the sum
// with respect to one rank's input is the sum of their upstream gradients,
// so backward is the same all-reduce. This is what SyncBatchNorm's
// statistics need.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t group) {
    ctx->saved_data["group"] = group;
    auto* g = reinterpret_cast<sf_group*>(group);
    std::vector<at::Tensor> ts{x.clone()};
    wait_for(g->pg->allreduce(ts));
    return ts[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* g = reinterpret_cast<sf_group*>(ctx->saved_data["group"].toInt());
    std::vector<at::Tensor> ts{grads[0].contiguous().clone()};
    wait_for(g->pg->allreduce(ts));
    return {ts[0], at::Tensor()};
  }
};

extern "C" {

void sf_free_string(char* s) { std::free(s); }

void sf_free_bytes(uint8_t* b) { std::free(b); }

// A TCPStore: the server (with `is_server`) or a client of host:port,
// seen through `prefix` when it is not empty (torchrun's agent store is
// shared by restarts, each under /worker/attempt_N).
sf_store* sf_store_new(const char* host, uint16_t port, bool is_server, int64_t world_size, int64_t timeout_ms,
                       const char* prefix, char** err) {
  return guard(err, [&]() -> sf_store* {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    if (world_size > 0) opts.numWorkers = static_cast<size_t>(world_size);
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    return new sf_store{store};
  });
}

int sf_store_set(sf_store* s, const char* key, const uint8_t* value, size_t len, char** err) {
  return guard(err, [&]() -> int {
    s->store->set(std::string(key), std::vector<uint8_t>(value, value + len));
    return 1;
  });
}

// Waits for `key` up to the store's timeout.
uint8_t* sf_store_get(sf_store* s, const char* key, size_t* len, char** err) {
  return guard(err, [&]() -> uint8_t* {
    auto v = s->store->get(std::string(key));
    auto* out = static_cast<uint8_t*>(std::malloc(v.empty() ? 1 : v.size()));
    if (out == nullptr) throw std::runtime_error("out of memory");
    if (!v.empty()) std::memcpy(out, v.data(), v.size());
    *len = v.size();
    return out;
  });
}

// 1 when `key` is set, 0 when not; no waiting.
int sf_store_check(sf_store* s, const char* key, char** err) {
  return guard(err, [&]() -> int { return s->store->check({std::string(key)}) ? 1 : 0; });
}

int64_t sf_store_add(sf_store* s, const char* key, int64_t delta, char** err) {
  return guard(err, [&]() -> int64_t { return s->store->add(std::string(key), delta); });
}

void sf_store_free(sf_store* s) { delete s; }

// A process group of `size` ranks over `store` under `prefix`. Backend 0 is
// Gloo (CPU tensors); 1 is NCCL (CUDA tensors of device `cuda_device`).
sf_group* sf_group_new(sf_store* s, const char* prefix, int rank, int size, int backend, int64_t timeout_ms,
                       int cuda_device, char** err) {
  return guard(err, [&]() -> sf_group* {
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), s->store);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
    if (backend == 0) {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && ifname[0] != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
      pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    } else if (backend == 1) {
#ifdef SLOWFAST_NCCL
      (void)cuda_device;
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
#else
      (void)cuda_device;
      throw std::runtime_error(
          "this trainer was built without NCCL (cargo feature `nccl`); use dist_backend: gloo or rebuild");
#endif
    } else {
      throw std::runtime_error("unknown backend " + std::to_string(backend));
    }
    return new sf_group{pg};
  });
}

void sf_group_free(sf_group* g) { delete g; }

int sf_group_allreduce(sf_group* g, at::Tensor** ts, size_t n, char** err) {
  return guard(err, [&]() -> int {
    auto tensors = tensors_of(ts, n);
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      wait_for(g->pg->allreduce(one));
    }
    return 1;
  });
}

int sf_group_broadcast(sf_group* g, at::Tensor** ts, size_t n, int root, char** err) {
  return guard(err, [&]() -> int {
    auto tensors = tensors_of(ts, n);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      wait_for(g->pg->broadcast(one, opts));
    }
    return 1;
  });
}

int sf_group_barrier(sf_group* g, char** err) {
  return guard(err, [&]() -> int {
    wait_for(g->pg->barrier());
    return 1;
  });
}

// The sum of `x` over the group, differentiable (see AllReduceSum).
at::Tensor* sf_allreduce_autograd(sf_group* g, at::Tensor* x, char** err) {
  return guard(err, [&]() -> at::Tensor* {
    return new at::Tensor(AllReduceSum::apply(*x, reinterpret_cast<int64_t>(g)));
  });
}

// PyTorch DDP's Reducer over `params`, with DDP's bucketing: a first bucket
// of `first_bucket_bytes`, then buckets of `bucket_bytes`, in reverse
// parameter order (roughly the order backward produces gradients).
sf_reducer* sf_reducer_new(sf_group* g, at::Tensor** ps, size_t n, int64_t first_bucket_bytes, int64_t bucket_bytes,
                           char** err) {
  return guard(err, [&]() -> sf_reducer* {
    auto params = tensors_of(ps, n);
    std::vector<size_t> limits{static_cast<size_t>(first_bucket_bytes), static_cast<size_t>(bucket_bytes)};
    std::vector<bool> sparse(params.size(), false);
    auto [indices, per_bucket] = c10d::compute_bucket_assignment_by_size(params, limits, sparse);
    std::reverse(indices.begin(), indices.end());
    std::reverse(per_bucket.begin(), per_bucket.end());
    std::vector<int64_t> per_bucket_caps(per_bucket.begin(), per_bucket.end());
    std::unordered_map<size_t, std::string> names;
    auto reducer = std::make_shared<c10d::Reducer>(params, indices, g->pg, sparse, bucket_bytes,
                                                   /*find_unused_parameters=*/false,
                                                   /*gradient_as_bucket_view=*/false, names, first_bucket_bytes,
                                                   /*skip_all_reduce_unused_params=*/false,
                                                   /*use_python_reducer=*/false, per_bucket_caps);
    return new sf_reducer{reducer};
  });
}

// What DDP's forward does around the module: rebuild the buckets in the
// order gradients arrived (after the first step; a collective), then arm
// the autograd hooks for the coming backward.
int sf_reducer_prepare(sf_reducer* r, char** err) {
  return guard(err, [&]() -> int {
    r->reducer->rebuild_buckets();
    r->reducer->prepare_for_forward();
    r->reducer->prepare_for_backward({});
    return 1;
  });
}

void sf_reducer_free(sf_reducer* r) { delete r; }

// Autocast on `device_type` (0 CPU, 1 CUDA) to `dtype` (0 fp16, 1 bf16).
int sf_autocast_set(int device_type, bool enabled, int dtype, char** err) {
  return guard(err, [&]() -> int {
    auto dev = device_type == 1 ? at::kCUDA : at::kCPU;
    auto prev = at::autocast::is_autocast_enabled(dev);
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(dev, enabled);
    if (enabled) {
      at::autocast::increment_nesting();
    } else if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    return prev ? 1 : 0;
  });
}

}  // extern "C"
