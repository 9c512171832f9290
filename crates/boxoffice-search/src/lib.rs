//! The search service (under construction).
