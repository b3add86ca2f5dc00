// Rows built on the caller's thread are freed on the file-stream writer's; mimalloc handles that
// cross-thread traffic far better than the system allocator (see `mlwf bench log`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mlwf::cli::main()
}
