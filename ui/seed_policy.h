#pragma once
#include <cstdint>
#include <random>

namespace vmla::ui {

// Seeds for new chunks: the same seed every time, a fresh random one, or counting up.
class SeedPolicy {
 public:
  enum class Mode { Fixed, Random, Increment };

  Mode mode() const { return mode_; }
  void set_mode(Mode m) { mode_ = m; }
  uint64_t value() const { return value_; }  // the seed the next chunk gets (Random: the last one drawn)
  void set_value(uint64_t v) { value_ = v; }

  uint64_t take() {
    switch (mode_) {
      case Mode::Fixed: return value_;
      case Mode::Increment: return value_++;
      case Mode::Random: return value_ = random();
    }
    return value_;
  }

  // 32-bit random seeds: easy to read, type and share.
  static uint64_t random() {
    static std::mt19937_64 rng{std::random_device{}()};
    return rng() & 0xffffffffull;
  }

  static const char* name(Mode m) {
    return m == Mode::Fixed ? "fixed" : m == Mode::Random ? "random" : "increment";
  }
  static Mode parse(const std::string& s) {
    return s == "fixed" ? Mode::Fixed : s == "random" ? Mode::Random : Mode::Increment;
  }

 private:
  Mode mode_ = Mode::Increment;
  uint64_t value_ = 0;
};

}  // namespace vmla::ui
