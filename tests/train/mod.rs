//! The trainer: its numerics (`numerics`, with the GPU parity suite in `numerics::cuda`), the CUDA
//! kernels' compile check, its tracking pieces, and `mlwf train` end to end.

mod cli;
mod kernels_compile;
mod numerics;
mod tracking;
