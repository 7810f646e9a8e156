//! Support for perch's end-to-end tests and benchmarks: where the shared weights and
//! datasets live, and where cargo put the built binaries.
