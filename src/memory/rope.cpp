#include "memory/rope.h"

#include <cmath>

namespace endless {

Rope::Rope(const RopeConfig& config) : cfg_(config) {
  inv_freq_.resize(cfg_.n_rot / 2);
  for (int i = 0; i < cfg_.n_rot / 2; ++i)
    inv_freq_[i] = cfg_.freq_scale * std::pow(cfg_.freq_base, -2.0 * i / cfg_.n_rot);
}

void Rope::apply(float* x, int n_heads, double pos) const {
  const int half = cfg_.n_rot / 2;
  // cos/sin once per frequency, shared by every head.
  float cs[512], sn[512];
  float* c = half <= 512 ? cs : new float[half];
  float* s = half <= 512 ? sn : new float[half];
  for (int i = 0; i < half; ++i) {
    const double angle = pos * inv_freq_[i];
    c[i] = static_cast<float>(std::cos(angle));
    s[i] = static_cast<float>(std::sin(angle));
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * cfg_.head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = cfg_.neox ? i : 2 * i;
      const int b = cfg_.neox ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c[i] - x1 * s[i];
      v[b] = x0 * s[i] + x1 * c[i];
    }
  }
  if (c != cs) {
    delete[] c;
    delete[] s;
  }
}

}  // namespace endless
