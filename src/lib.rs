//! tapstream library facade.
