//! The accounts service (under construction).
