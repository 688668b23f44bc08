// LR_HD marks small functions that run on the host and, under nvcc, on the device too.
#pragma once

#if defined(__CUDACC__)
#define LR_HD __host__ __device__ __forceinline__
#else
#define LR_HD inline
#endif
