//! Entry point: parse the command line, dispatch, exit with the command's code.
/// The static (musl) build allocates with mimalloc: with musl's own allocator a webhook review
/// cost 1.7x the CPU of the glibc build and an idle K=1000 sidecar made ~270 mmap/munmap calls
/// a second (docs/benchmarks.md). scripts/build-static.sh sets how its arenas are committed.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(secretdrop::cli::main());
}
