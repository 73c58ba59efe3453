//! Model inference for tapstream.
