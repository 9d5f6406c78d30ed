//! (phase module: being written)
