//! The edge service (under construction).
