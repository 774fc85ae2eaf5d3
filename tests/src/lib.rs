//! End-to-end tests live in `tests/`; they drive the built `trainer`,
//! `slowfast` and `libgstslowfast.so` from the workspace's target directory,
//! the way a user chains them.
