//! Entry point: parse the command line, dispatch, exit with the command's code.
/// The static (musl) build allocates with mimalloc: with musl's own allocator a webhook review
/// cost 1.7x the CPU of the glibc build and an idle K=1000 sidecar made ~270 mmap/munmap calls
/// a second (docs/benchmarks.md). scripts/build-static.sh sets how its arenas are committed.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    #[cfg(target_env = "musl")]
    purge_at_once();
    std::process::exit(secretdrop::cmd::main());
}

/// mimalloc returns the pages that frees empty to the system a second later, and only when the
/// process allocates again: an idle webhook kept the ~37 MiB of its last large reviews resident.
/// At once instead: the peak of those reviews halves and an idle webhook drops to ~10 MiB, at no
/// measurable CPU cost (docs/benchmarks.md).
#[cfg(target_env = "musl")]
fn purge_at_once() {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay` in include/mimalloc.h of the mimalloc 3 that Cargo.lock pins
    /// (libmimalloc-sys 0.1.49, whose Rust bindings lack it); tests/static_binary.rs checks
    /// the effect.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: mimalloc's options are plain integers, safe to set at any time; no other thread
    // runs yet.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}
