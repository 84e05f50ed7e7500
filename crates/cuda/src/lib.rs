//! CUDA decoder of wcodec: kernels built by nvcc, run with cudarc
