#include "memory/rope.h"

#include <cmath>

namespace endless {

Rope::Rope(const RopeConfig& config) : cfg_(config) {
  inv_freq_.resize(cfg_.n_rot / 2);
  for (int i = 0; i < cfg_.n_rot / 2; ++i)
    inv_freq_[i] = cfg_.freq_scale * std::pow(cfg_.freq_base, -2.0 * i / cfg_.n_rot);
}

// angles() writes c[0, half) and s[0, half) before rotate() reads them; GCC 12 cannot see it
// through the two calls and warns that the arrays may be used uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void Rope::apply(float* x, int n_heads, double pos) const {
  // cos/sin once per frequency, shared by every head.
  const int half = cfg_.n_rot / 2;
  float cs[512], sn[512];
  std::vector<float> big;
  float* c = cs;
  float* s = sn;
  if (half > 512) {
    big.resize(2 * half);
    c = big.data();
    s = c + half;
  }
  angles(pos, c, s);
  rotate(x, n_heads, c, s);
}
#pragma GCC diagnostic pop

void Rope::angles(double pos, float* c, float* s) const {
  for (int i = 0; i < cfg_.n_rot / 2; ++i) {
    const double angle = pos * inv_freq_[i];
    c[i] = static_cast<float>(std::cos(angle));
    s[i] = static_cast<float>(std::sin(angle));
  }
}

void Rope::rotate(float* x, int n_heads, const float* c, const float* s) const {
  const int half = cfg_.n_rot / 2;
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
}

}  // namespace endless
