//! Memory measurement and the emulated memory limit of one container.
//!
//! How `max_memory_usage_in_bytes` is measured (an honest figure, not an estimate from the
//! request): the library installs a counting global allocator ([`alloc`]) that keeps the
//! process's live heap bytes in an atomic counter. Each request watches the high-water mark
//! of that counter while it runs ([`alloc::PeakWatch`]). The reply reports
//! `resident baseline + peak live heap`, where the resident baseline is the process's RSS at
//! start-up minus the heap live at that moment (code, stacks, runtime: what is resident but
//! not heap). The figure is container-wide, as a cgroup's peak would be: requests running at
//! the same time see each other's allocations.
//!
//! [`budget`] emulates the container's memory limit for the process runtime (which has no
//! cgroup); [`rss`] reads the process's resident set size from `/proc`.

pub mod alloc;
pub mod budget;
pub mod rss;
