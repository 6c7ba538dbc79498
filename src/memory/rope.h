// Rotary position embedding. Angles are computed in double precision from the position, so a key
// rotated at position 1,000,000 is as exact as one at position 10 — no drift on endless streams.
#pragma once

#include <cstdint>
#include <vector>

namespace endless {

struct RopeConfig {
  int head_dim = 0;
  int n_rot = 0;             // leading dimensions of each head that rotate (<= head_dim)
  double freq_base = 10000;  // theta base
  double freq_scale = 1;     // linear scaling: positions are multiplied by this (1 / factor)
  bool neox = false;         // pairs (i, i + n_rot/2) instead of (2i, 2i+1): qwen2 and others
};

class Rope {
 public:
  Rope() = default;
  explicit Rope(const RopeConfig& config);
  const RopeConfig& config() const { return cfg_; }

  // Rotates n_heads consecutive heads of x in place as if at position pos.
  void apply(float* x, int n_heads, double pos) const;
  // The same in two steps, so a position's angles can serve many calls: cos and sin of each of
  // the n_rot / 2 frequencies at pos, then the rotation by them.
  void angles(double pos, float* cos_out, float* sin_out) const;
  void rotate(float* x, int n_heads, const float* cos_in, const float* sin_in) const;

 private:
  RopeConfig cfg_;
  std::vector<double> inv_freq_;  // freq_scale * base^(-2i/n_rot)
};

}  // namespace endless
