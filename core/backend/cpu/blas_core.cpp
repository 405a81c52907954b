// Which OpenBLAS kernels the CPU backend's GEMMs run on.
//
// A DYNAMIC_ARCH OpenBLAS picks its kernel set while it loads, from the CPU models it knows. A CPU
// newer than the library falls back to the oldest set: Debian 12's OpenBLAS 0.3.21 takes a 2023
// Xeon (family 6, model 207, AVX-512 and AMX) for a Pentium 4, "Prescott", whose SSE3 kernels run
// our GEMMs at a quarter of the AVX-512 ones' speed (docs/BENCHMARKS.md, 2026-11-28). The library's
// own remedy is OPENBLAS_CORETYPE, read by gotoblas_dynamic_init() when it loads; the first CPU
// backend sets it from the CPU's features (AVX-512 F/BW/DQ/VL -> SkylakeX, else AVX2 with FMA ->
// Haswell: the sets OpenBLAS itself uses for every later CPU of those features, Cooper Lake, Sapphire
// Rapids and Zen 4 the SkylakeX GEMM kernels, Zen 1-3 the Haswell ones) and runs that choice again,
// before any GEMM. A value the user has set is left alone; a build of OpenBLAS for one CPU (no
// DYNAMIC_ARCH, so no gotoblas_dynamic_init) keeps the kernels it was built for.
#include <cblas.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "core/backend/cpu/cpu_kernels.h"

extern "C" {
char* openblas_get_corename(void);
// DYNAMIC_ARCH builds only: weak, so that a single-target OpenBLAS links too.
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace vmla::cpu {

const char* blas_core_for_this_cpu() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

std::string blas_core() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

bool blas_core_below_cpu() {
  const char* want = blas_core_for_this_cpu();
  if (!want) return false;
  const std::string core = blas_core();
  const bool avx512 = core == "SkylakeX" || core == "Cooperlake" || core == "SapphireRapids";
  const bool avx2 = avx512 || core == "Haswell" || core == "Zen";
  return std::string(want) == "SkylakeX" ? !avx512 : !avx2;
}

void choose_blas_core() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!blas_core_below_cpu() || std::getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit)
      return;
    setenv("OPENBLAS_CORETYPE", blas_core_for_this_cpu(), 0);
    gotoblas_dynamic_quit();  // forgets the load-time choice; init reads the variable and sets up the kernels
    gotoblas_dynamic_init();
  });
}

}  // namespace vmla::cpu
