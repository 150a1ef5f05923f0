//! Flavor layer (being written).
