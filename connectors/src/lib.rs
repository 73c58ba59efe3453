//! Alert output for tapstream.
