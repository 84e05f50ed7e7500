//! Process-wide settings for programs built on wcodec (the CLI, benchmarks).

/// Turns transparent huge pages off for this process. Allocators fault their arenas in 2 MiB at
/// a time under huge pages: compressing a 23 MB model then touched 84 MB instead of 48 MB, and
/// the kernel's clearing of those pages took about a third of the run. wcodec's work streams
/// through buffers and gains nothing from huge pages. Call it first thing in `main`; it affects
/// the whole process. A no-op off Linux or on kernels without the setting.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours; a
        // failure (an old kernel) leaves the default in place.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// Lets a write to a closed pipe end the process quietly, as it does other command-line tools
/// (`wcodec info big.wcz | head`): Rust programs ignore SIGPIPE, so such a write fails with an
/// error that printing macros turn into a panic. Call it first thing in `main` of a program
/// whose standard output may be a pipe; it affects the whole process. A no-op off Unix.
pub fn default_sigpipe() {
    #[cfg(unix)]
    {
        // SAFETY: restoring the default disposition of a signal touches no memory of ours.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}
